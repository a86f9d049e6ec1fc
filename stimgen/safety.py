"""Guards between protocol text or the file system and what a build writes.

Spreadsheet-formula escaping for CSV/TSV text cells, and the check that no folder a build
writes into is a symbolic link leading out of the build folder.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from stimgen.errors import BuildError

#: First characters that make Excel, LibreOffice and Google Sheets read a cell as a formula
#: (tab and carriage return too: some spreadsheets strip them and look at what follows).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return not math.isnan(value) or text.strip().lower() == "nan"


def spreadsheet_safe(value: Any) -> Any:
    """A CSV/TSV cell that a spreadsheet shows as text, never runs as a formula.

    Text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
    apostrophe (the OWASP recommendation; spreadsheets hide it). Numbers, including negative
    numbers written as text, and non-text values are returned unchanged.

    Parameters
    ----------
    value : any
        One cell.

    Returns
    -------
    any
        ``value``, or ``"'" + value`` for text a spreadsheet would evaluate.

    Examples
    --------
    >>> spreadsheet_safe("=HYPERLINK(\\"http://x\\")"), spreadsheet_safe("-0.5"), spreadsheet_safe(-2)
    ('\\'=HYPERLINK("http://x")', '-0.5', -2)
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def spreadsheet_safe_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with :func:`spreadsheet_safe` applied to every text cell and header.

    Examples
    --------
    >>> spreadsheet_safe_table(pd.DataFrame({"label": ["@SUM(1)", "calm"], "v": [-1.0, 2.0]}))
          label    v
    0  '@SUM(1) -1.0
    1      calm  2.0
    """
    safe = table.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(spreadsheet_safe)
    safe.columns = [spreadsheet_safe(c) for c in safe.columns]
    return safe


def refuse_links(root: Path, relatives: Iterable[str]) -> None:
    """Refuse to build when a path the build writes is a symbolic link.

    A link such as ``stimuli -> /home/me/photos`` inside the build folder would make the
    build write (and clean up stale files) outside it.

    Parameters
    ----------
    root : Path
        The build folder (itself may be a link: the user chose it).
    relatives : iterable of str
        Paths inside ``root`` that the build writes or writes into, e.g. ``"stimuli"``,
        ``".stimgen/identities"``.

    Raises
    ------
    BuildError
        Naming the link, where it points and how to fix it.
    """
    for relative in relatives:
        path = Path(root)
        for part in Path(relative).parts:
            path = path / part
            if path.is_symlink():
                raise BuildError(
                    f"{path} is a symbolic link (to {path.readlink()}); stimgen writes only "
                    "inside the build folder and will not write through links",
                    hint=f"remove the link ({path}) or build into another folder with -o")


def is_inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with links followed, lies inside ``root``.

    >>> is_inside(Path("/tmp/b"), Path("/tmp/b/stimuli/x.png")), is_inside(Path("/tmp/b"), Path("/tmp/b/../c"))
    (True, False)
    """
    return Path(path).resolve().is_relative_to(Path(root).resolve())
