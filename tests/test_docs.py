"""The documentation stays true: generated reference up to date, examples run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from stimgen.protocol.loader import protocol_from_text
from stimgen.protocol.reference import BEGIN, END, render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_reference_is_generated_from_models():
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    committed = text[text.index(BEGIN):text.index(END) + len(END)]
    assert committed == render_reference(), \
        "docs/protocol.md is stale: run python -m stimgen.protocol.reference docs/protocol.md"


def test_protocol_page_example_validates():
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    protocol = protocol_from_text(example)
    from stimgen.plan import plan_targets
    assert len(protocol.identities) * len(plan_targets(protocol.targets)) == 24


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_docs_links_resolve(page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text):
        assert (ROOT / "docs" / target).exists(), f"{page} links to missing {target}"


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:docs/)?[^)#:]+\.md)\)", text):
        assert (ROOT / target).exists(), f"README links to missing {target}"


# --- numbers the code knows: read from the code, compared with the sentence that states them --
# Each check finds the statement in the page by a pattern; when a page is reworded, reword the
# pattern, never copy the number into this file.

def page(path: str) -> str:
    """A page of the repository with its whitespace collapsed, so sentences match across lines."""
    return " ".join((ROOT / path).read_text(encoding="utf-8").split())


def stated(path: str, pattern: str) -> tuple[str, ...]:
    """The groups of the one statement ``pattern`` matches in ``path``; fails if none does."""
    found = re.search(pattern, page(path))
    assert found, f"{path} no longer states /{pattern}/: update the page or this pattern"
    return found.groups()


def default(model, field: str):
    """The default a pydantic model or a dataclass gives ``field``."""
    if hasattr(model, "model_fields"):
        return model.model_fields[field].default
    return model.__dataclass_fields__[field].default


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """tiny.json of a fresh `stimgen models make-tiny` (configs and sizes of its files)."""
    import json
    from stimgen.weights.tiny import TINY_MANIFEST, make_tiny

    folder = tmp_path_factory.mktemp("tiny")
    make_tiny(folder)
    return json.loads((folder / TINY_MANIFEST).read_text(encoding="utf-8"))


@pytest.mark.slow
def test_tiny_models_size_and_resolution_as_documented(tiny):
    from stimgen.backends.emostyle.models import DRY_RUN_RESOLUTION

    models = tiny["models"]
    total_mb = sum(m["size_bytes"] for m in models.values()) / 1e6
    (about,) = stated("docs/models.md", r"about (\d+) MB in all")
    assert abs(int(about) - total_mb) <= 0.15 * total_mb, f"make-tiny writes {total_mb:.0f} MB"
    (limit,) = stated("docs/models.md", r"so those two files are under (\d+) MB each")
    assert max(models[n]["size_bytes"] for n in ("emonet_8", "emostyle_mapping")) < \
        int(limit) * 1e6
    resolution = tiny["resolution"]
    assert resolution == DRY_RUN_RESOLUTION
    assert stated("docs/models.md", r"`ffhq.pkl` \(a (\d+)x(\d+) generator\)") == \
        (str(resolution),) * 2
    assert stated("docs/backends-emostyle.md", r"tiny generator's (\d+) x (\d+) pixels") == \
        (str(resolution),) * 2
    assert stated("docs/backends-emostyle.md", r"make-tiny`, (\d+) pixels\)") == (str(resolution),)


def test_tiny_network_widths_as_documented(tiny):
    import inspect
    from stimgen.nets.emo_mapping import PUBLISHED_HIDDEN
    from stimgen.nets.emonet import EmoNet

    tiny_width = tiny["models"]["emonet_8"]["config"]["width"]
    published_width = inspect.signature(EmoNet).parameters["width"].default
    assert stated("docs/networks.md", r"published networks are (\d+) channels wide") == \
        (str(published_width),)
    assert stated("docs/networks.md", r"make-tiny` has the same key names at `width=(\d+)`") == \
        (str(tiny_width),)
    assert stated("docs/models.md", r"EmoNet is (\d+) channels wide \(published: (\d+)\)") == \
        (str(tiny_width), str(published_width))
    assert stated("docs/backends-emostyle.md",
                  r"tiny EmoNet is (\d+) channels wide, the published one (\d+)") == \
        (str(tiny_width), str(published_width))

    def parameters(**config) -> int:
        return sum(p.numel() for p in EmoNet(**config).parameters())

    config = {k: v for k, v in tiny["models"]["emonet_8"]["config"].items()}
    ratio = parameters(n_expression=8) / parameters(**config)
    (about,) = stated("docs/networks.md", r"about (\d+) times fewer parameters")
    assert abs(int(about) - ratio) <= 0.15 * ratio, f"the ratio is {ratio:.0f}"

    hidden = tiny["models"]["emostyle_mapping"]["config"]["hidden"]
    width, published = stated("docs/models.md",
                              r"mapping's layers are (\d+) wide \(published: ([\d/]+)\)")
    assert set(hidden) == {int(width)}
    assert published == "/".join(str(h) for h in PUBLISHED_HIDDEN)


def default_workers(total: int, backend: str = "schematic", gpus=(), cores: int = 1000) -> int:
    """Local workers `stimgen build` starts without -j, on a machine with ``cores`` cores."""
    from types import SimpleNamespace
    from unittest import mock

    from stimgen.pipeline import _worker_count

    with mock.patch("os.cpu_count", return_value=cores):
        return _worker_count(None, SimpleNamespace(name=backend), total, gpus)


def test_jobs_default_as_documented_and_in_the_help():
    from click.testing import CliRunner

    from stimgen.cli import main
    from stimgen.protocol.execution import ExecutionSpec

    cap = default_workers(10**6)
    smallest = next(n for n in range(1, 10**4) if default_workers(n) > 1)
    assert default_workers(smallest - 1) == 1 and default_workers(10**6, cores=2) == 2
    assert default_workers(10**6, "emostyle") == 1
    assert default_workers(10**6, "emostyle", gpus=("0", "1", "2")) == 3
    statement = (r"for schematic builds of (\d+) faces or more one per core, at most (\d+), else "
                 r"1; for emostyle one per visible GPU, 1 without a GPU")
    help_text = " ".join(CliRunner().invoke(main, ["build", "--help"]).output.split())
    texts = {"docs/commands.md": page("docs/commands.md"), "stimgen build --help": help_text,
             "ExecutionSpec.jobs": " ".join(ExecutionSpec.model_fields["jobs"].description.split()),
             "docs/protocol.md": page("docs/protocol.md")}
    for where, text in texts.items():
        found = re.search(statement, text)
        assert found, f"{where} does not state the -j default as /{statement}/"
        assert found.groups() == (str(smallest), str(cap)), where
    assert stated("docs/cluster.md", r"schematic build of (\d+) faces or more runs one worker "
                                     r"per core, at most (\d+)") == (str(smallest), str(cap))


def test_build_option_defaults_in_the_help_are_the_models():
    from stimgen.cli.build import build
    from stimgen.protocol.execution import ExecutionSpec, SlurmOptions

    sources = {"time_limit": (SlurmOptions, "time"),
               "array_parallelism": (SlurmOptions, "array_parallelism"),
               "cpus_per_job": (SlurmOptions, "cpus_per_job"),
               "max_retries": (ExecutionSpec, "max_retries")}
    for option in build.params:
        found = re.search(r"\(default (\d+)\)", getattr(option, "help", None) or "")
        if found:
            assert option.name in sources, f"--{option.name} states a default: add its source"
            model, field = sources[option.name]
            assert int(found.group(1)) == default(model, field), option.name
    assert stated("docs/cluster.md", r"the default (\d+) GB leaves room") == \
        (f"{default(SlurmOptions, 'mem_gb'):g}",)


def test_emostyle_defaults_and_limits_as_documented():
    import inspect

    from stimgen import photos as photo
    from stimgen.backends.emostyle import align, invert, losses, personalize
    from stimgen.protocol.models import EmoStyleOptions, PersonalizationWeights

    text = page("docs/backends-emostyle.md")
    options = dict(re.findall(r"\| `(\w+)` \| `?([\w.]+)`? \|", text))
    assert {"batch_size", "precision", "device"} <= set(options)
    for name, value in options.items():
        assert value == str(default(EmoStyleOptions, name)), name
    weights = re.findall(r"([\d.]+),? \(?`loss_weights\.(\w+)`", text)
    assert {name for _, name in weights} == set(PersonalizationWeights.model_fields)
    for value, name in weights:
        assert float(value) == default(PersonalizationWeights, name), name
    (lr,) = stated("docs/backends-emostyle.md", r"`personalization_lr` ([\d.e-]+)\)")
    assert float(lr) == default(EmoStyleOptions, "personalization_lr")
    for path, pattern in (("docs/backends-emostyle.md", r"truncation_psi: ([\d.]+) "),
                          ("docs/backends-emostyle.md", r"\(published: ([\d.]+)\)"),
                          ("docs/networks.md", r"drawn with \*\*truncation\*\* ([\d.]+)")):
        assert float(stated(path, pattern)[0]) == default(EmoStyleOptions, "truncation_psi")

    inversion = text[text.index("### 3. Inversion"):text.index("### 4.")]
    rows = dict(re.findall(r"\| ([A-Za-z ]+) \| ([\d.]+) \|", inversion))
    names = {"reconstruction": "reconstruction", "identity": "identity",
             "distance to the average": "w_avg", "pull toward the W code": "w_pull"}
    assert {names[row]: float(value) for row, value in rows.items()} == \
        invert.InversionWeights().as_dict()
    (lr,) = stated("docs/backends-emostyle.md", r"\(learning rate ([\d.]+), warmed up")
    assert float(lr) == inspect.signature(invert.invert).parameters["lr"].default

    settings = personalize.PersonalizeSettings()
    limit = settings.random_va_limit
    assert stated("docs/backends-emostyle.md", r"random valence and arousal in \[(-?[\d.]+), "
                                               r"([\d.]+)\]") == (f"{-limit:g}", f"{limit:g}")
    ordinals = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "tenth": 10}
    (every,) = stated("docs/backends-emostyle.md", r"Every (\w+) step instead")
    assert ordinals[every] == settings.reconstruction_every
    assert stated("docs/backends-emostyle.md", r"(\d+) landmarks expressions do not move") == \
        (str(len(losses.EXPRESSION_STABLE_LANDMARKS)),)
    assert stated("docs/backends-emostyle.md", r"([\d.]+) x \(1 - MS-SSIM\) \+ ([\d.]+) x") == \
        tuple(f"{w:g}" for w in losses.RECONSTRUCTION_MIX)
    assert stated("docs/backends-emostyle.md", r"needs at least (\d+) pixels per side") == \
        (str(losses.MS_SSIM_MIN_SIDE),)
    assert stated("docs/backends-emostyle.md", r"under (\d+) pixels on its shorter side") == \
        (str(photo.MIN_PHOTO_SIDE),)
    assert stated("docs/backends-emostyle.md", r"over (\d+) megapixels") == \
        (f"{photo.MAX_PHOTO_PIXELS / 1e6:g}",)
    assert stated("docs/backends-emostyle.md", r"upscaled more than (\d+) x") == \
        (f"{align.MAX_UPSCALE:g}",)


def test_weak_region_and_published_misses_as_documented():
    from stimgen.circumplex import WEAK_REGION_DEFAULT, in_angle_interval
    from stimgen.report.tables import published_anchors

    region = tuple(f"{a:g}" for a in WEAK_REGION_DEFAULT)
    for path, pattern in (("README.md", r"weak region \(([\d.]+)°–([\d.]+)°"),
                          ("docs/metrics.md", r"\*\*weak region\*\* ([\d.]+)°–([\d.]+)°"),
                          ("docs/report.md", r"weak region \(default ([\d.]+)°–([\d.]+)°")):
        assert stated(path, pattern) == region, path
    anchors = published_anchors()
    from stimgen.circumplex import named_emotions

    exact = {e.name: e.angle for e in named_emotions()}    # 328.6 for Serene, printed 329
    weak = anchors[in_angle_interval(anchors["emotion"].map(exact).to_numpy(),
                                     *WEAK_REGION_DEFAULT)]
    assert list(weak["emotion"])[-1] == "Serene"
    low, high = stated("docs/metrics.md", r"misses by ([\d.]+)–([\d.]+) in VA distance")
    assert (float(low), float(high)) == (weak["dist_mae"].min(), weak["dist_mae"].max())


def test_readme_numbers_are_those_of_the_project():
    from stimgen.plan import plan_targets

    pyproject = page("pyproject.toml")
    (python,) = stated("README.md", r"Python (\d+\.\d+)\+")
    assert f'requires-python = ">={python}"' in pyproject
    (torch,) = stated("README.md", r"any torch ≥ (\d+\.\d+)")
    assert f'"torch>={torch}"' in pyproject
    demo = protocol_from_text((ROOT / "protocols" / "demo.yaml").read_text(encoding="utf-8"))
    targets = plan_targets(demo.targets)
    emotions = {t.emotion for t in targets if t.kind == "named"}
    intensities = {t.intensity for t in targets if t.kind == "named"}
    assert stated("README.md", r"builds (\d+) identities × (\d+) emotions × (\d+) intensities") \
        == (str(len(demo.identities)), str(len(emotions)), str(len(intensities)))
    assert stated("README.md", r"\((\d+) stimuli\)") == \
        (str(len(demo.identities) * len(targets)),)


#: A path inside this repository, cited in prose: not preceded by a path or variable character.
CITED_PATH = re.compile(r"(?<![\w./~$-])((?:[\w.-]+/)+[\w.-]+\.(?:csv|py|yaml|md|npz|json|j2|tsv))")
#: Top-level folders of the repository; docs also cite build-folder paths (experiment/...).
REPOSITORY_FOLDERS = ("benchmarks", "docs", "protocols", "stimgen", "templates", "tests")


@pytest.mark.parametrize("path", ["README.md", *sorted(f"docs/{p.name}" for p in
                                                       (ROOT / "docs").glob("*.md"))])
def test_repository_paths_cited_in_docs_exist(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    for cited in CITED_PATH.findall(text):
        if cited.split("/")[0] in REPOSITORY_FOLDERS:
            assert (ROOT / cited).exists(), f"{path} cites {cited}, which does not exist"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT))
                                        for p in (ROOT / "protocols").rglob("*.yaml")))
def test_files_cited_in_shipped_protocols_exist(path):
    for cited in CITED_PATH.findall((ROOT / path).read_text(encoding="utf-8")):
        assert (ROOT / cited).exists() or (ROOT / path).parent.joinpath(cited).exists(), \
            f"{path} cites {cited}, which does not exist"


def default_value(model, field: str):
    """What a pydantic model puts in ``field`` when the protocol leaves it out, as plain data."""
    info = model.model_fields[field]
    value = info.default_factory() if info.default_factory is not None else info.default
    if hasattr(value, "model_dump"):
        value = {k: v for k, v in value.model_dump().items() if v is not None}
    return value


def documented_defaults(text: str, heading: str) -> dict[str, object]:
    """key -> default of the first `| key | default | meaning |` table after ``heading``,
    for rows whose default is one literal (`2000`, `[valence, arousal]`, "a text")."""
    import yaml

    start = text.index(heading)
    table = text[text.index("| key | default | meaning |", start):]
    table = table[:table.index("\n\n")] if "\n\n" in table else table
    rows = {}
    for key, cell in re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", table, re.M):
        literal = re.fullmatch(r'`([^`]+)`|("[^"]+")', cell.strip())
        if literal:
            rows[key] = yaml.safe_load(literal.group(1) or literal.group(2))
    return rows


def test_experiment_defaults_as_documented():
    from stimgen.protocol import experiment as spec

    text = (ROOT / "docs" / "experiment-design.md").read_text(encoding="utf-8")
    tables = {"### `rating`": spec.RatingTask, "Each slider": spec.RatingScale,
              "### `categorization`": spec.CategorizationTask, "## Timing": spec.Timing,
              "## Text": spec.Text, "## Practice": spec.Practice, "## Breaks": spec.Breaks,
              "## Display": spec.Display, "## Stimuli": spec.StimulusSelection,
              "All designs share": spec.RandomDesign, "### `random`": spec.RandomDesign,
              "### `blocked`": spec.BlockedDesign, "### `latin-square`": spec.LatinSquareDesign}
    checked = 0
    for heading, model in tables.items():
        for key, value in documented_defaults(text, heading).items():
            if key in model.model_fields and model.model_fields[key].is_required():
                continue
            assert key in model.model_fields, f"{heading}: {key} is not a field of {model.__name__}"
            assert value == default_value(model, key), f"{heading}: {key}"
            checked += 1
    assert checked >= 20, "the default tables of experiment-design.md were not found"
    catch = dict(re.findall(r"`(\w+)` \((?:default )?`([^`]+)`", page("docs/experiment-design.md")))
    assert int(catch["response_ms"]) == default_value(spec.CatchTrials, "response_ms")
    assert int(catch["trials"]) == default_value(spec.CatchTrials, "trials")
    assert catch["key"] == default_value(spec.CatchTrials, "key")


def test_protocol_loader_limits_as_documented():
    from stimgen.protocol import yaml_source as loader

    (nodes,) = stated("docs/reliability.md", r"alias bombs \(more than ([\d,]+) values\)")
    assert int(nodes.replace(",", "")) == loader.MAX_NODES
    assert stated("docs/reliability.md", r"files over (\d+) MB") == \
        (f"{loader.MAX_PROTOCOL_BYTES / 1e6:g}",)
    assert stated("docs/reliability.md", r"nesting deeper than (\d+) levels") == \
        (str(loader.MAX_DEPTH),)
