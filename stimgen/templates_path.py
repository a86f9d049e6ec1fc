"""Where stimgen's Jinja2 templates are: the installed copy, else the checkout's templates/.

The report and the experiment bundle both render templates from this one folder.
"""
from __future__ import annotations

from pathlib import Path


def templates_dir(required: str = "report.html.j2") -> Path:
    """The folder holding ``required``: ``stimgen/templates`` when installed, else the
    repository's top-level ``templates/`` (editable installs and checkouts)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / required).is_file():
            return candidate
    raise FileNotFoundError(f"{required} is in neither {package / 'templates'} nor "
                            f"{package.parent / 'templates'}; the stimgen installation is "
                            "incomplete")
