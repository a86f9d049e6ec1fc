"""Packaging: every subpackage and data file ships in the wheel."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "stimgen").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
    assert config["package-dir"]["stimgen.templates"] == "templates"


def test_every_data_file_is_package_data():
    """Every file under stimgen/data ships in the wheel (the MTCNN weights in data/mtcnn/
    included): a listed package holding it has a package-data pattern for it."""
    from fnmatch import fnmatch

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = ROOT / "stimgen" / "data"
    files = [p.relative_to(ROOT).as_posix() for p in data.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert {f"stimgen/data/mtcnn/{name}" for name in
            ("pnet.pt", "rnet.pt", "onet.pt", "ATTRIBUTION.md")} <= set(files)

    def shipped(path: str) -> bool:
        for package, patterns in config["package-data"].items():
            folder = package.replace(".", "/") + "/"
            inside = path.removeprefix(folder)
            if package in config["packages"] and path.startswith(folder) and any(
                    fnmatch(inside, pattern) and inside.count("/") == pattern.count("/")
                    for pattern in patterns):
                return True
        return False

    unshipped = [path for path in files if not shipped(path)]
    assert not unshipped, f"add to pyproject.toml package-data: {unshipped}"


def test_claimed_python_has_what_the_code_uses():
    """requires-python says 3.11 or later: these tests read TOML with tomllib, new in 3.11, and
    that is the oldest Python the suite runs on. Claiming 3.10 again needs a 3.10 CI job."""
    claim = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", claim)
    assert match and int(match[1]) >= 11, f"requires-python = {claim!r}"
    assert sys.version_info >= (3, int(match[1]))


def test_templates_are_found():
    from stimgen.templates_path import templates_dir

    assert (templates_dir("report.html.j2") / "report.html.j2").is_file()
    assert (templates_dir("experiment_readme.md.j2") / "experiment_readme.md.j2").is_file()


# -- installing: the README's commands work from nothing -------------------------------------
def _requirement_names(lines) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if line:
            names.add(_normal(re.split(r"[\s\[<>=!~]", line, maxsplit=1)[0]))
    return names


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names: set[str]) -> set[str]:
    """``names`` and every distribution they require (installed metadata, no extras)."""
    from importlib import metadata

    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_names(r for r in requires if "extra ==" not in r))
    return seen


def test_license_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"     # a TOML table is deprecated by setuptools >= 77
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert any(r.replace(" ", "") == "setuptools>=77" for r in build["requires"])


def test_psychopy_install_command_is_the_readme_one():
    from stimgen.export.psychopy_bundle import PSYCHOPY_INSTALL

    assert PSYCHOPY_INSTALL in (ROOT / "README.md").read_text(encoding="utf-8")
    assert PSYCHOPY_INSTALL in (ROOT / "docs" / "psychopy.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--no-deps -r requirements-psychopy.txt" in makefile


def test_psychopy_runs_with_only_what_the_readme_installs():
    """Every distribution PsychoPy's experiment compiler imports comes with stimgen's own
    dependencies or requirements-psychopy.txt, never only with the test extras (PsychoPy
    imports scipy, which once came only with the tests, so `make demo` failed)."""
    pytest.importorskip("psychopy")
    from importlib import metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _closure(_requirement_names(project["dependencies"]))
    # installed with --no-deps: each line counts, their own requirements do not
    psychopy_file = _requirement_names(
        (ROOT / "requirements-psychopy.txt").read_text(encoding="utf-8").splitlines())
    provided = core | psychopy_file | {"pip", "setuptools"}
    code = ("import sys, psychopy.experiment, psychopy.iohub, psychopy.data, psychopy.monitors;"
            "print('\\n'.join(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "DISPLAY": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    top = {name.split(".")[0] for name in result.stdout.split()}
    owners = metadata.packages_distributions()
    needed = {_normal(dist) for module in top for dist in owners.get(module, [])}
    missing = sorted(needed - provided)
    assert not missing, (f"PsychoPy imports {missing}, which neither stimgen's dependencies nor "
                         "requirements-psychopy.txt install: add them to requirements-psychopy.txt")
