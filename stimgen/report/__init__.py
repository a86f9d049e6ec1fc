"""The HTML report of a build: the page a lab reads to decide which stimuli to use.

:func:`write_report` reads only the build folder (stimuli.tsv, metrics tables, manifest.json,
stimuli/, experiment/design.csv) and writes ``report.html`` plus ``report_assets/`` atomically.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jinja2

from stimgen.circumplex import PUBLISHED_TABLE_CITATION, PUBLISHED_TABLE_RATER, WEAK_REGION_BACKEND
from stimgen.version import __version__
from stimgen.ledger import Ledger
from stimgen.build_folder import (REPORT_ASSETS_DIR, REPORT_HTML, SELECTION_KEY, THUMBNAILS_DIR,
                                  BuildFolder, BuildFolderError, as_bool, read_build_folder)
from stimgen.raters.limits import emotion_limit
from stimgen.report.agreement import agreement_section, build_raters
from stimgen.report.norms import norms_context, norms_figure
from stimgen.report.clips import FILMSTRIPS, clips_context, write_filmstrips
from stimgen.report.correction import correction_context
from stimgen.report.low_level import low_level_context
from stimgen.report.contact_sheets import contact_sheets, write_thumbnails
from stimgen.report.figures import (ReportFigure, backend_measures_figure, circumplex_figure,
                                    distance_heatmap_figure)
from stimgen.report.tables import (AGREEMENT_METRICS, DESIGN_HEADINGS, ERROR_METRICS,
                                   design_summary, emotion_rows, flagged_stimuli, format_mean_sd,
                                   format_number, intensity_rows, mae_sd_columns, overall_row,
                                   published_anchors, published_comparable, stimulus_counts)
from stimgen.templates_path import templates_dir
from stimgen.wording import plural, quantity

__all__ = ["write_report", "render_report", "templates_dir", "BuildFolderError"]

ASSETS_DIR = REPORT_ASSETS_DIR
TEMPLATE = "report.html.j2"
EMOSTYLE_CITATION = ("Azari, B. & Lim, A. (2024). EmoStyle: One-Shot Facial Expression Editing "
                     "Using Continuous Emotion Parameters. WACV 2024.")


def write_report(build_dir, *, command: str | None = None, manifest: dict | None = None) -> Path:
    """Write ``report.html`` and ``report_assets/`` into a build folder; return the page's path.

    Parameters
    ----------
    build_dir : str or Path
        A folder written by ``stimgen build``.
    command : str, optional
        The command line that asked for this report, shown beside the build's own command.
    manifest : dict, optional
        The build's manifest, for a build that writes the report before ``manifest.json``
        (which marks completion and is written last). Without it ``manifest.json`` must exist
        and say ``"complete": true``.

    Raises
    ------
    BuildFolderError
        When the folder is not a complete build or a file the report needs is missing.

    Examples
    --------
    >>> write_report("build/demo")  # doctest: +SKIP
    PosixPath('build/demo/report.html')
    """
    folder = read_build_folder(build_dir, manifest=manifest)
    staging = Path(tempfile.mkdtemp(prefix=f".{ASSETS_DIR}-", dir=folder.root))
    staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be shared
    try:
        thumbnails = write_thumbnails(folder.stimuli, folder.root, staging / "thumbs",
                                      reuse=(folder.root / ASSETS_DIR / "thumbs",
                                             folder.root / THUMBNAILS_DIR))
        figures = report_figures(folder)
        write_filmstrips(folder, staging / FILMSTRIPS)      # builds with output.dynamic only
        (staging / "figures").mkdir()
        for figure in figures.values():
            (staging / "figures" / f"{figure.name}.svg").write_text(figure.svg, encoding="utf-8")
        html = render_report(folder, figures=figures, thumbnails=thumbnails, command=command)
        ledger = Ledger.load(folder.root)     # replaces stimgen's own files only
        ledger.install(staging, ASSETS_DIR)
        ledger.write_bytes(REPORT_HTML, html.encode("utf-8"))
        page = folder.root / REPORT_HTML
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return page


def report_figures(folder: BuildFolder) -> dict[str, ReportFigure]:
    """The report's figures by name; figures without data (e.g. no backend measures) are absent."""
    marked = marked_weak_region(folder)
    figures = (
        circumplex_figure(folder.stimuli, marked),
        distance_heatmap_figure(folder.stimuli, marked,
                                str((folder.manifest.get("backend") or {}).get("name") or "")),
        backend_measures_figure(folder.stimuli),
        norms_figure(folder.root, marked),
    )
    return {figure.name: figure for figure in figures if figure is not None}


def marked_weak_region(folder: BuildFolder) -> tuple[float, float] | None:
    """The weak region the report marks on figures and tables, or None where it is not flagged.

    The published region is a property of EmoStyle: on other backends (``flag_weak_region:
    auto``) it is recorded in stimuli.tsv but not shown as a reason to look.
    """
    return folder.weak_region if folder.weak_region_flagged else None


def render_report(folder: BuildFolder, *, figures: dict[str, ReportFigure],
                  thumbnails: dict[str, str], command: str | None = None) -> str:
    """The report page as HTML text; every protocol-derived string is escaped by the template."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir(TEMPLATE)), autoescape=True,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True)
    environment.filters["num"] = format_number
    environment.filters["mean_sd"] = format_mean_sd   # {{ mae | mean_sd(sd, 2) }} -> 0.12 ± 0.05
    environment.filters["plural"] = plural        # {{ n | plural("identity") }} -> identities
    environment.filters["quantity"] = quantity    # {{ n | quantity("identity") }} -> 1 identity
    return environment.get_template(TEMPLATE).render(
        report_context(folder, figures=figures, thumbnails=thumbnails, command=command))


def report_context(folder: BuildFolder, *, figures: dict[str, ReportFigure],
                   thumbnails: dict[str, str], command: str | None) -> dict:
    """Everything the template shows, gathered from the build folder."""
    manifest, protocol = folder.manifest, folder.protocol
    study = protocol.get("study") or {}
    comparable = published_comparable(folder.metrics_by_intensity)
    anchors = published_anchors()
    rows = emotion_rows(folder.metrics_by_emotion, anchors if comparable else anchors.iloc[0:0])
    flagged = flagged_stimuli(folder.stimuli, tolerance=folder.tolerance,
                              weak_region=folder.weak_region,
                              others=tuple(r.name for r in build_raters(manifest)[1:]))
    backend_name = str((manifest.get("backend") or {}).get("name") or "")
    for stimulus in flagged:
        stimulus["thumbnail"] = thumbnails[stimulus["stimulus_id"]]
    # named basic emotions the primary rater reads poorly (stimgen/raters/limits.py)
    primary = str((manifest.get("rater") or {}).get("name") or "")
    for stimulus in flagged:
        limit = emotion_limit(primary, stimulus["emotion"], backend_name)
        if limit is not None:
            stimulus["reasons"].append(limit.note())
    rater_limits = {row.label: limit.note() for row in rows
                    if (limit := emotion_limit(primary, row.label, backend_name))}
    return {
        "study": {
            "name": str(study.get("name") or folder.root.name),
            "description": str(study.get("description") or ""),
            "authors": [a.get("name", "") if isinstance(a, dict) else str(a)
                        for a in study.get("authors") or []],
        },
        "created": str(manifest.get("created") or ""),
        "build_command": str(manifest.get("command") or ""),
        "report_command": command if command and command != manifest.get("command") else "",
        "backend": manifest.get("backend") or {},
        "backend_options": json.dumps((manifest.get("backend") or {}).get("options") or {},
                                      indent=1, sort_keys=True),
        "rater": manifest.get("rater") or {},
        "dry_run": bool(manifest.get("dry_run")),
        "selection": manifest.get(SELECTION_KEY) or None,     # a subset (stimgen select)
        "raters": sorted(set(folder.stimuli["rater"]) - {""}),
        "counts": stimulus_counts(folder.stimuli, manifest),
        "weak_region": folder.weak_region,
        "weak_region_flagged": folder.weak_region_flagged,
        # Published EmoStyle figures beside another generator's: say they are not like for like.
        "published_other_generator": backend_name != WEAK_REGION_BACKEND,
        "published_rater": PUBLISHED_TABLE_RATER,
        "tolerance": folder.tolerance,
        "figures": figures,
        "assets": ASSETS_DIR,
        "error_metrics": [(stem, heading, decimals, *mae_sd_columns(stem))
                          for stem, heading, decimals in ERROR_METRICS],
        "agreement_metrics": AGREEMENT_METRICS,
        "emotion_rows": rows,
        "rater_limits": rater_limits,
        "published_count": sum(row.published is not None for row in rows),
        "published_withheld": not comparable,
        "intensity_rows": intensity_rows(folder.metrics_by_intensity),
        "overall": overall_row(folder.stimuli),
        "flagged": flagged,
        "agreement": agreement_section(folder.stimuli, manifest),
        "reference_faces": reference_rows(folder.stimuli, manifest, thumbnails),
        "sheets": contact_sheets(folder.stimuli, thumbnails, marked_weak_region(folder)),
        "design": design_summary(folder.design),
        "norms": norms_context(folder.root),
        "clips": clips_context(folder, ASSETS_DIR),
        "correction": correction_context(folder),
        "low_level": low_level_context(folder.stimuli, protocol.get("output")),  # issue 17
        "confusable": confusable_warnings(folder.design, manifest),
        "au_profile": au_profile(folder.stimuli),
        "design_headings": DESIGN_HEADINGS,
        "reproducibility": reproducibility(manifest),
        "citation": PUBLISHED_TABLE_CITATION,
        "emostyle_citation": EMOSTYLE_CITATION,
        "report_version": __version__,
    }


def au_profile(stimuli) -> dict | None:
    """Mean FACS action-unit intensity per emotion at its strongest intensity (schematic
    builds, whose stimuli.tsv has ``AU01`` ... columns); None when there are none."""
    from stimgen.facs import AU_NAMES

    columns = [au for au in AU_NAMES if au in stimuli and stimuli[au].fillna(0).gt(0).any()]
    if not columns:
        return None
    named = stimuli[stimuli["target_kind"] != "neutral"]
    strongest = named[named["intensity"] == named.groupby("emotion")["intensity"].transform("max")]
    means = strongest.groupby("emotion", sort=False)[columns].mean()
    return {"columns": columns, "intensity_note": "each emotion at its strongest intensity",
            "rows": [(emotion, [f"{v:.2f}" if v >= 0.005 else "" for v in values])
                     for emotion, values in zip(means.index, means.to_numpy())]}


def confusable_warnings(design, manifest: dict) -> list[str]:
    """The build's confusable-choices warnings (:mod:`stimgen.design.confusability`), repeated
    in the experiment section: answer choices whose schematic faces look alike."""
    backend = (manifest.get("backend") or {}).get("name")
    if design is None or backend != "schematic" or "correct_label" not in design:
        return []
    from stimgen.design.confusability import confusable_choices

    main = design[~design["is_practice"].map(as_bool).astype(bool)]
    return [problem.message for problem in confusable_choices(main)]


def reference_rows(stimuli, manifest: dict, thumbnails: dict[str, str]) -> list[dict]:
    """Each reference face of ``targets.from_images`` with the stimuli made to show its emotion."""
    rows = []
    for reference in manifest.get("reference_faces") or []:
        made = stimuli[(stimuli["target_kind"] == "point")
                       & (stimuli["emotion"] == reference.get("label"))]
        rows.append(dict(reference, stimuli=[
            dict(s, thumbnail=thumbnails[s["stimulus_id"]]) for s in made.to_dict("records")]))
    return rows


def reproducibility(manifest: dict) -> dict:
    """What another lab needs to rebuild the same stimuli: protocol hash, seed, versions."""
    protocol = manifest.get("protocol") or {}
    return {
        "protocol_path": str(protocol.get("path") or ""),
        "protocol_sha256": str(protocol.get("sha256") or ""),
        "seed": manifest.get("seed", ""),
        "stimgen_version": str(manifest.get("stimgen_version") or ""),
        "versions": manifest.get("versions") or {},
        "timings": manifest.get("timings") or {},
        "identity_seeds": manifest.get("identity_seeds") or {},
        "files": len(manifest.get("files") or {}),
    }


