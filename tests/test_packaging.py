"""Packaging: every subpackage and data file ships in the wheel."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "stimgen").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
    assert config["package-dir"]["stimgen.templates"] == "templates"


def test_templates_are_found():
    from stimgen.templates_path import templates_dir

    assert (templates_dir("report.html.j2") / "report.html.j2").is_file()
    assert (templates_dir("experiment_readme.md.j2") / "experiment_readme.md.j2").is_file()
