"""Reading human ratings: PsychoPy's data files of a build's experiment (local or downloaded
from Pavlovia) and the tidy ratings CSV, checked cell by cell into one table of responses.

Files are only read, never changed; cells are text until checked, and a formula-like cell
(``=cmd|...``) is reported and treated as text, never evaluated. Unusable input raises
:class:`NormsError` (exit status 2); usable-with-losses input becomes warnings and exclusions.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from stimgen.build_folder import as_bool
from stimgen.errors import StimgenError
from stimgen.safety import FORMULA_STARTS
from stimgen.wording import quantity

#: Columns of the tidy ratings CSV (docs/norms.md); ``label``, ``rt`` and ``intensity`` are
#: optional, and so is any other column.
TIDY_REQUIRED = ("participant", "stimulus", "valence", "arousal")
TIDY_OPTIONAL = ("label", "rt", "intensity")
#: Columns of the responses table that reading produces (one row per rating trial).
RESPONSE_COLUMNS = ("participant", "stimulus_id", "valence", "arousal", "intensity", "label",
                    "rt", "source")
SCALES = ("valence", "arousal", "intensity")


class NormsError(StimgenError):
    """Ratings that cannot be used: no data, data of another experiment or build, bad options."""


@dataclass(frozen=True)
class Experiment:
    """What reading needs to know about the build's experiment."""

    name: str | None                      # expName of its data files; None: no bundle
    stimulus_ids: frozenset[str]          # stimuli.tsv stimulus_id
    file_names: dict[str, str]            # image file name (with and without stimuli/) -> id
    scales: dict[str, tuple[float, float]]  # scale -> (low, high) of its raw values
    label_keys: dict[str, str]            # forced-choice key -> label
    catch_key: str | None                 # key an attention check asks for
    trials_per_group: dict[str, int]      # main trials a complete session has, per group
    stimulus_lists: dict[str, int] = field(default_factory=dict)  # id -> its list (design.lists)


@dataclass
class Responses:
    """Every usable rating, with what was dropped or excluded on the way."""

    table: pd.DataFrame                           # RESPONSE_COLUMNS
    warnings: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)   # participant, file, reason
    sessions: list[dict] = field(default_factory=list)   # participant, file, trials kept
    files: list[str] = field(default_factory=list)
    # cells summarised into one warning each once every file is read (a subset normed with
    # the full study's data, or a whole file on another scale, would give hundreds of lines)
    unknown_stimuli: list[str] = field(default_factory=list)      # "file:line 'stimulus'"
    scale_cells: dict = field(default_factory=dict)   # (low, high) -> [values, outside (where)]


def is_formula_like(text: str) -> bool:
    """Whether a cell would run as a formula in a spreadsheet (and is not a number).

    >>> is_formula_like("=cmd|' /C calc'!A0"), is_formula_like("-3"), is_formula_like("calm")
    (True, False, False)
    """
    if not text.startswith(FORMULA_STARTS):
        return False
    try:
        float(text)
    except ValueError:
        return True
    return False


def read_responses(paths, experiment: Experiment, *, max_missed_checks: int = 0) -> Responses:
    """Read data files into one :class:`Responses`.

    Parameters
    ----------
    paths : sequence of Path
        PsychoPy data CSVs of the build's experiment and/or tidy ratings CSVs; a folder stands
        for the ``*.csv`` files directly inside it.
    experiment : Experiment
        The build's stimuli and experiment settings.
    max_missed_checks : int
        A participant who misses more attention checks than this is excluded.

    Raises
    ------
    NormsError
        No file, an unreadable file, a file of another experiment or build, or no usable
        rating at all.
    """
    files = _expand(paths)
    out = Responses(table=pd.DataFrame(columns=RESPONSE_COLUMNS), files=[str(f) for f in files])
    sessions = []
    for path in files:
        cells = _read_cells(path, out)
        if cells is None:
            out.warnings.append(f"{path}: empty file, skipped")
            continue
        if "stim_id" in cells.columns:
            session = _psychopy_session(path, cells, experiment, out, max_missed_checks)
            if session is not None:
                sessions.append(session)
        elif all(c in cells.columns for c in TIDY_REQUIRED):
            sessions.extend(_tidy_sessions(path, cells, experiment, out))
        else:
            raise NormsError(
                f"{path}: neither a PsychoPy data file of this experiment (no stim_id column) "
                f"nor a tidy ratings CSV (needs columns {', '.join(TIDY_REQUIRED)})",
                hint="pass the CSVs in experiment/data/ (or downloaded from Pavlovia), or a "
                     "tidy CSV as described in docs/norms.md")
    _summarise_cells(out, experiment)
    kept = _drop_duplicate_participants(sessions, out)
    frames = [s["rows"] for s in kept if len(s["rows"])]
    if not frames:
        why = out.warnings + [f"{e['file']}: participant {e['participant']} excluded: "
                              f"{e['reason']}" for e in out.excluded]
        raise NormsError("no usable rating in " + ", ".join(str(f) for f in files)
                         + "".join(f"\n  {line}" for line in why[:10]),
                         hint="pass the data files of this build's experiment; the lines "
                              "above say what was dropped and why")
    out.table = pd.concat(frames, ignore_index=True)[list(RESPONSE_COLUMNS)]
    out.sessions = [{"participant": s["participant"], "file": s["file"],
                     "trials": int(len(s["rows"]))} for s in kept]
    return out


def _summarise_cells(out: Responses, experiment: Experiment) -> None:
    """One warning for the rows naming stimuli not in the build and one per scale for the
    values outside it; refuse when most valence or arousal values lie outside their scale
    (the data was collected on another scale), naming the range the values span."""
    if out.unknown_stimuli:
        n = len(out.unknown_stimuli)
        out.warnings.append(
            f"{n} {'row names a stimulus' if n == 1 else 'rows name stimuli'} not in this "
            f"build; not used (first: {out.unknown_stimuli[0]})")
    rating_scales = {experiment.scales.get(name) for name in ("valence", "arousal")}
    for (low, high), (values, outside) in out.scale_cells.items():
        if not outside:
            continue
        if (low, high) in rating_scales and len(outside) > len(values) / 2:
            raise NormsError(
                f"{len(outside)} of {len(values)} rating values lie outside the scale "
                f"{low:g}-{high:g} (first: {outside[0]}); the values span "
                f"{min(values):g}-{max(values):g}",
                hint=f"give the scale the data was collected on: --scale {min(values):g} "
                     f"{max(values):g} if those are the slider's two ends")
        out.warnings.append(
            f"{quantity(len(outside), 'value')} outside the scale {low:g}-{high:g}; not used "
            f"(first: {outside[0]})")


# -- files ------------------------------------------------------------------------------------
def _expand(paths) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files += sorted(p for p in path.glob("*.csv") if not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise NormsError(f"{path}: no such file or folder",
                             hint="pass PsychoPy data files, e.g. BUILD/experiment/data/")
    if not files:
        raise NormsError("no data file given (the folders hold no .csv file)",
                         hint="run the experiment first; PsychoPy writes data/*.csv")
    return list(dict.fromkeys(files))


#: How to save a ratings table so that any tool reads it (docs/norms.md).
SAVE_AS_CSV = ("pass the data file as PsychoPy or Pavlovia wrote it, or save your table as "
               "\"CSV UTF-8 (comma delimited)\" (Excel: File > Save As)")
#: Field separators a data file may use: commas (PsychoPy, Pavlovia), semicolons (Excel's
#: "CSV" where the comma is the decimal mark), tabs (text exports).
DELIMITERS = {",": "commas", ";": "semicolons", "\t": "tabs"}
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


def _read_cells(path: Path, out: Responses) -> pd.DataFrame | None:
    """Every cell as text (``""`` when empty); None for a file without rows.

    Reads what spreadsheets save as well as what PsychoPy writes: UTF-8 (with or without a
    byte-order mark), UTF-16 with a byte-order mark, else Windows-1252 (Latin-1 letters, what
    Excel on Windows saves as "CSV"); fields separated by commas, semicolons (with decimal
    commas, as Excel saves CSV in much of Europe) or tabs. Anything but UTF-8 and commas is
    noted in ``out.warnings``, so that a reading is never silently reinterpreted.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NormsError(f"{path}: cannot be read ({error.strerror or error})",
                         hint="check the path and that the file is readable") from None
    if not data.strip():
        return None
    text, encoding = _decode(path, data)
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    delimiter = max(DELIMITERS, key=lambda d: (header.count(d), d == ","))
    try:
        cells = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str,
                            keep_default_na=False)
    except pd.errors.EmptyDataError:
        return None
    except pd.errors.ParserError as error:
        raise NormsError(f"{path}: cannot be read as a table of fields separated by "
                         f"{DELIMITERS[delimiter]} ({str(error).strip()})",
                         hint=SAVE_AS_CSV) from None
    if encoding:
        out.warnings.append(f"{path}: read as {encoding} text, not UTF-8 (how Excel saves "
                            "\"CSV\" on Windows); check that names with accents look right")
    if delimiter != ",":
        out.warnings.append(f"{path}: fields separated by {DELIMITERS[delimiter]}, not commas"
                            + ("; decimal commas read as points (7,5 = 7.5)"
                               if delimiter == ";" else ""))
        if delimiter == ";":
            cells = cells.apply(lambda column: column.map(
                lambda cell: cell.replace(",", ".") if _DECIMAL_COMMA.match(cell) else cell))
    return None if cells.empty else cells


def _decode(path: Path, data: bytes) -> tuple[str, str | None]:
    """The file's text and, when it is not UTF-8, the encoding it was read as."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        try:
            return data.decode("cp1252"), "Windows-1252 (Latin-1)"
        except UnicodeDecodeError:
            raise NormsError(f"{path}: neither UTF-8 nor Windows-1252 (Latin-1) text (byte "
                             f"{error.start}); it may not be a CSV file at all",
                             hint=SAVE_AS_CSV) from None


def _row(path: Path, index: int) -> str:
    return f"{path}:{index + 2}"            # line in the file: the header is line 1


def _number(text: str, where: str, column: str, bounds, out: Responses) -> float:
    """A rating cell as a number in ``bounds``; NaN (and a warning) when it is not one."""
    text = text.strip()
    if text == "":
        return math.nan
    if is_formula_like(text):
        out.warnings.append(f"{where}: column {column} holds formula-like text {text[:40]!r}; "
                            "treated as text (not evaluated) and not used")
        return math.nan
    try:
        value = float(text)
    except ValueError:
        out.warnings.append(f"{where}: column {column} is not a number ({text[:40]!r}); "
                            "not used")
        return math.nan
    if math.isnan(value) or math.isinf(value):
        out.warnings.append(f"{where}: column {column} is not a finite number ({text!r}); "
                            "not used")
        return math.nan
    if bounds is not None:
        values, outside = out.scale_cells.setdefault(tuple(bounds), ([], []))
        values.append(value)
        if not bounds[0] <= value <= bounds[1]:
            outside.append(f"{where} column {column} value {text}")
            return math.nan
    return value


def _text(text: str, where: str, column: str, out: Responses) -> str:
    text = text.strip()
    if is_formula_like(text):
        out.warnings.append(f"{where}: column {column} holds formula-like text {text[:40]!r}; "
                            "kept as text, never evaluated")
    return text


# -- PsychoPy data files ------------------------------------------------------------------------
def _psychopy_session(path: Path, cells: pd.DataFrame, experiment: Experiment, out: Responses,
                      max_missed_checks: int) -> dict | None:
    names = {v for v in cells.get("expName", pd.Series(dtype=str)) if v}
    if experiment.name and names and names != {experiment.name}:
        raise NormsError(
            f"{path}: data of experiment {', '.join(sorted(names))!r}, not of this build's "
            f"experiment {experiment.name!r}",
            hint="pass the data files of the experiment in this build folder")
    participants = sorted({v.strip() for v in cells.get("participant", pd.Series(dtype=str))
                           if v.strip()})
    participant = participants[0] if participants else path.stem
    if len(participants) > 1:
        raise NormsError(f"{path}: one PsychoPy data file with several participants "
                         f"({', '.join(participants[:5])})",
                         hint="pass each session's own data file as PsychoPy wrote it")
    participant = _text(participant, _row(path, 0), "participant", out)
    trials = cells[cells["stim_id"].str.strip() != ""]
    if "is_practice" in trials:
        trials = trials[~trials["is_practice"].map(as_bool)]
    unknown = sorted(set(trials["stim_id"].str.strip()) - experiment.stimulus_ids)
    if unknown and len(unknown) == trials["stim_id"].nunique():
        raise NormsError(f"{path}: none of its stimuli ({', '.join(unknown[:3])}, ...) is in "
                         "this build", hint="pass the data files of this build's experiment")
    session = {"participant": participant, "file": str(path),
               "date": (cells["date"].iloc[0] if "date" in cells else ""),
               "rows": pd.DataFrame(columns=RESPONSE_COLUMNS)}
    rows, seen, missed, checks = [], set(), 0, 0
    for index, trial in trials.iterrows():
        where = _row(path, index)
        sid = trial["stim_id"].strip()
        if sid not in experiment.stimulus_ids:
            out.unknown_stimuli.append(f"{where} {sid!r}")
            continue
        position = (trial.get("position", ""), sid)
        if position in seen:
            out.warnings.append(f"{where}: trial {position[0]} ({sid}) appears twice; the "
                                "repeat is not used")
            continue
        seen.add(position)
        if as_bool(trial.get("is_catch", "")):
            checks += 1
            pressed = trial.get("catch_keys.keys", "").strip().strip("'\"[]")
            if experiment.catch_key and pressed != experiment.catch_key:
                missed += 1
        label = trial.get("label_keys.keys", "").strip().strip("'\"[]")
        rows.append({
            "participant": participant, "stimulus_id": sid,
            **{scale: _number(trial.get(f"{scale}_slider.response", ""), where,
                              f"{scale}_slider.response", experiment.scales.get(scale), out)
               for scale in SCALES},
            "label": experiment.label_keys.get(label, label) if label else None,
            "rt": _number(trial.get("valence_slider.rt", ""), where, "valence_slider.rt",
                          None, out),
            "source": where})
    frame = pd.DataFrame(rows, columns=RESPONSE_COLUMNS)
    group = trials["group"].iloc[0] if "group" in trials and len(trials) else \
        (cells["group"].iloc[0] if "group" in cells else "")
    expected = experiment.trials_per_group.get(str(group).strip())
    reason = None
    if checks and missed > max_missed_checks:
        reason = f"missed {missed} of {checks} attention checks"
    elif expected is not None and len(seen) < expected:
        reason = f"incomplete session: {len(seen)} of {expected} trials"
    elif frame[["valence", "arousal"]].notna().any(axis=1).sum() == 0:
        reason = "no valid trial"
    if reason:
        out.excluded.append({"participant": participant, "file": str(path), "reason": reason})
        return None
    session["rows"] = frame
    return session


# -- tidy CSV --------------------------------------------------------------------------------------
def _tidy_sessions(path: Path, cells: pd.DataFrame, experiment: Experiment,
                   out: Responses) -> list[dict]:
    rows, seen = [], set()
    for index, row in cells.iterrows():
        where = _row(path, index)
        key = tuple(row.get(c, "") for c in (*TIDY_REQUIRED, *TIDY_OPTIONAL))
        if key in seen:
            out.warnings.append(f"{where}: the same row appears twice; the repeat is not used")
            continue
        seen.add(key)
        participant = _text(row["participant"], where, "participant", out)
        stimulus = row["stimulus"].strip()
        sid = stimulus if stimulus in experiment.stimulus_ids else \
            experiment.file_names.get(stimulus)
        if not participant:
            out.warnings.append(f"{where}: no participant; row not used")
            continue
        if sid is None:
            out.unknown_stimuli.append(f"{where} {stimulus[:60]!r}")
            continue
        label = _text(row.get("label", ""), where, "label", out)
        rows.append({
            "participant": participant, "stimulus_id": sid,
            **{scale: _number(row.get(scale, ""), where, scale, experiment.scales.get(scale),
                              out) for scale in SCALES},
            "label": label or None,
            "rt": _number(row.get("rt", ""), where, "rt", None, out),
            "source": where})
    frame = pd.DataFrame(rows, columns=RESPONSE_COLUMNS)
    if frame.empty and len(cells):
        raise NormsError(f"{path}: no row names a stimulus of this build",
                         hint="the stimulus column takes stimulus_id values of stimuli.tsv "
                              "or image file names")
    sessions = []
    for participant in dict.fromkeys(cells["participant"].str.strip()):
        if not participant:
            continue
        mine = frame[frame["participant"] == participant]
        if mine[["valence", "arousal"]].notna().any(axis=1).sum() == 0:
            out.excluded.append({"participant": participant, "file": str(path),
                                 "reason": "no valid trial"})
            continue
        sessions.append({"participant": participant, "file": str(path), "date": "",
                         "rows": mine, "tidy": True})
    return sessions


def _drop_duplicate_participants(sessions: list[dict], out: Responses) -> list[dict]:
    """One session per participant id: the earliest PsychoPy session (by its ``date``) is kept,
    later ones are excluded, since a second session is not naive."""
    kept: dict[str, dict] = {}
    for session in sorted(sessions, key=lambda s: (s["date"], s["file"])):
        first = kept.get(session["participant"])
        if first is None:
            kept[session["participant"]] = session
            continue
        out.excluded.append({"participant": session["participant"], "file": session["file"],
                             "reason": f"duplicate participant id (already in {first['file']})"})
    return list(kept.values())


def stimulus_file_names(stimuli: pd.DataFrame) -> dict[str, str]:
    """Image file name -> stimulus_id, under both ``stimuli/x.png`` and ``x.png``.

    >>> stimulus_file_names(pd.DataFrame({"stimulus_id": ["a"], "file": ["stimuli/a.png"]}))
    {'stimuli/a.png': 'a', 'a.png': 'a'}
    """
    names = {}
    for sid, file in zip(stimuli["stimulus_id"], stimuli["file"]):
        names[str(file)] = str(sid)
        names[PurePosixPath(str(file).replace("\\", "/")).name] = str(sid)
    return names
