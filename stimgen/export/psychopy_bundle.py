"""Writes the PsychoPy bundle of a build: `experiment/` with the .psyexp, its compiled script,
per-group conditions files, design.csv, a simulated-participant launcher and a README.

The folder is assembled next to the build and renamed into place, so it is complete or absent.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from stimgen.errors import BackendUnavailableError, BuildError
from stimgen.export import psyexp
from stimgen.export.psyexp import MAIN_LOOP, PRACTICE_LOOP, conditions_filename
from stimgen.safety import spreadsheet_safe_table
from stimgen.storage import replace_folder

BUNDLE_DIR = "experiment"
LAUNCHER = "run_simulated.py"
#: Stimulus paths in conditions files are relative to the experiment folder.
STIMULI_PREFIX = "../"
_BOOLEAN_COLUMNS = ("is_practice", "break_after", "is_catch")


def write_bundle(build_dir: Path, protocol, stimuli: pd.DataFrame, design) -> dict[str, Path]:
    """Write ``<build_dir>/experiment/`` for the protocol's experiment and a planned design.

    Parameters
    ----------
    build_dir : Path
        The build folder; its ``stimuli/`` holds the images named in ``stimuli``.
    protocol : stimgen.protocol.Protocol
        The validated protocol; ``protocol.experiment`` must be set.
    stimuli : pandas.DataFrame
        The build's stimuli.tsv (used for the README's stimulus count).
    design : stimgen.design.Design
        The planned groups and trial tables (:func:`stimgen.design.plan_design`).

    Returns
    -------
    dict of str to Path
        ``psyexp``, ``script``, ``launcher``, ``readme``, ``design`` and one
        ``conditions/<file>`` entry per conditions file, all inside ``build_dir/experiment``.

    Raises
    ------
    BackendUnavailableError
        PsychoPy is not installed.
    BuildError
        A protocol value would be read as code by PsychoPy's conditions reader.
    """
    psychopy_experiment_module()
    build_dir = Path(build_dir)
    name = experiment_name(protocol.study.name)
    spec = protocol.experiment
    tables = {g: conditions_table(design.trials[g]) for g in design.groups}
    layout = psyexp.layout_from_spec(spec, design.groups, answers=choice_answers(design))
    exp = psyexp.build_experiment(layout, name)

    staging = Path(tempfile.mkdtemp(prefix=".experiment-", dir=build_dir))
    try:
        files = _write_files(staging, exp, name, layout, tables, protocol, stimuli, design)
        final = build_dir / BUNDLE_DIR
        replace_folder(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {key: final / rel for key, rel in files.items()}


def _write_files(folder: Path, exp, name, layout, tables, protocol, stimuli,
                 design) -> dict[str, Path]:
    files: dict[str, Path] = {}
    (folder / "conditions").mkdir()
    for group, table in tables.items():
        for loop, rows in ((PRACTICE_LOOP, table[table["is_practice"] == 1]),
                           (MAIN_LOOP, table[table["is_practice"] == 0])):
            if loop == PRACTICE_LOOP and not layout.has_practice:
                continue
            rel = Path(conditions_filename(group, loop))
            spreadsheet_safe_table(rows).to_csv(folder / rel, index=False, lineterminator="\n")
            files[rel.as_posix()] = rel
    design_table = design.table.copy()
    design_table["stim_file"] = design_table["stim_file"].map(lambda f: STIMULI_PREFIX + str(f))
    spreadsheet_safe_table(design_table).to_csv(folder / "design.csv", index=False,
                                                lineterminator="\n")
    files["design"] = Path("design.csv")

    psyexp_path = folder / f"{name}.psyexp"
    exp.saveToXML(str(psyexp_path), makeLegacy=False)
    script = exp.writeScript(expPath=str(psyexp_path), target="PsychoPy")
    script = portable_script(script, folder / f"{name}.py")
    (folder / f"{name}.py").write_text(script, encoding="utf-8")
    (folder / LAUNCHER).write_text(launcher_source(f"{name}.py"), encoding="utf-8")
    files.update(psyexp=Path(psyexp_path.name), script=Path(f"{name}.py"),
                 launcher=Path(LAUNCHER))

    from stimgen.export.readme import render_readme
    readme = render_readme(protocol=protocol, name=name, layout=layout, design=design,
                           stimuli=stimuli, files=sorted(files.values()))
    (folder / "README.md").write_text(readme, encoding="utf-8")
    files["readme"] = Path("README.md")
    return files


# -- pieces -----------------------------------------------------------------------------------
def psychopy_experiment_module():
    """``psychopy.experiment``, or a BackendUnavailableError saying how to install PsychoPy."""
    try:
        from psychopy import experiment
    except ImportError as error:
        raise BackendUnavailableError(
            f"writing the PsychoPy experiment needs PsychoPy, which cannot be imported ({error})",
            hint="pip install -r requirements-psychopy.txt (see docs/psychopy.md), "
                 "or drop the protocol's `experiment:` section") from None
    return experiment


def experiment_name(study_name: str) -> str:
    """The experiment's file stem and PsychoPy ``expName``: a slug of the study name that is
    also a valid Python module name (the launcher imports the compiled script).

    >>> experiment_name("Faces & feelings: pilot 2")
    'faces_feelings_pilot_2'
    >>> experiment_name("2024 study")
    'study_2024_study'
    """
    from stimgen.protocol.models import study_slug

    slug = study_slug(str(study_name)).replace("-", "_").lower().strip("_")
    slug = "_".join(part for part in slug.split("_") if part)[:48] or "study"
    return slug if slug[0].isalpha() else f"study_{slug}"


def conditions_table(trials: pd.DataFrame) -> pd.DataFrame:
    """A group's trial table as PsychoPy reads it: booleans as 0/1, image paths relative to
    the experiment folder, and no text cell that PsychoPy would evaluate.

    PsychoPy runs ``eval`` on conditions cells in two places: ``importConditions`` on any text
    cell that starts with ``[`` and ends with ``]``, and Builder's resource scan (PsychoJS
    export) on any cell that starts with ``$``. Such a value would run as code, so it is refused.
    """
    table = trials.copy()
    for column in _BOOLEAN_COLUMNS:
        if column in table:
            table[column] = table[column].map(lambda v: int(str(v).strip().lower()
                                                            in ("true", "1", "1.0")))
    table["stim_file"] = table["stim_file"].map(
        lambda f: STIMULI_PREFIX + str(f).replace("\\", "/"))
    for column in table.columns:
        for value in table[column]:
            if isinstance(value, str) and evaluated_by_psychopy(value):
                raise BuildError(
                    f"the value {value!r} in column {column!r} of the experiment's trials would "
                    "be evaluated as Python code by PsychoPy when it reads the conditions file",
                    hint="rename that emotion, label or choice so that it neither starts with "
                         "'$' nor both starts with '[' and ends with ']'")
    return table


def evaluated_by_psychopy(text: str) -> bool:
    """Whether PsychoPy would ``eval`` this conditions cell (see :func:`conditions_table`).

    >>> evaluated_by_psychopy("[1, 2]"), evaluated_by_psychopy("$x"), evaluated_by_psychopy("a $")
    (True, True, False)
    """
    stripped = text.strip()
    return stripped.startswith("$") or (stripped.startswith("[") and stripped.endswith("]"))


_COMPILE_TIME = re.compile(r"^    on \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", re.MULTILINE)


def portable_script(script: str, staged: Path) -> str:
    """The compiled script without what ties it to one run of the build.

    PsychoPy writes the compile time into the script's docstring (so rebuilds would differ)
    and the script's own path as ``originPath``: that is the staging folder, renamed to
    ``experiment/`` right after, so the path is replaced by one computed when the script runs.
    """
    script = _COMPILE_TIME.sub("    by stimgen (no compile time, so that rebuilds are identical)",
                               script, count=1)
    staged_path = f"originPath={str(staged)!r}"
    if staged_path not in script:
        raise RuntimeError(f"PsychoPy's script no longer sets {staged_path}; update "
                           "portable_script for this PsychoPy version")
    return script.replace(staged_path,
                          f"originPath=os.path.join(_thisDir, {staged.name!r})")


def choice_answers(design) -> list[tuple[str, str]]:
    """(key, label) of every categorization answer in the design, ordered by key; [] if none."""
    first = design.trials[design.groups[0]]
    if "correct_key" not in first:
        return []
    pairs = pd.concat([t[["correct_key", "correct_label"]] for t in design.trials.values()])
    unique = pairs.drop_duplicates().astype(str)
    order = "1234567890"
    return sorted(map(tuple, unique.to_numpy().tolist()),
                  key=lambda kl: (order.find(kl[0]) if kl[0] in order else 99, kl[0]))


def launcher_source(script_name: str) -> str:
    """Source of ``run_simulated.py``: runs the compiled experiment as a simulated participant
    of one group, without the start dialog, windowed (the data file lands in ``data/``)."""
    return f'''"""Run this experiment as a simulated participant: no dialog, short durations, random answers.

Usage (from this folder):  python {LAUNCHER} --group g01 [--participant sim01] [--fullscreen]
Written by stimgen; see docs/psychopy.md. The compiled experiment is {script_name}.
"""
import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True, help="group name, e.g. g01")
    parser.add_argument("--participant", default="simulated")
    parser.add_argument("--session", default="001")
    parser.add_argument("--fullscreen", action="store_true")
    args = parser.parse_args(argv)
    os.chdir(HERE)
    spec = importlib.util.spec_from_file_location("stimgen_experiment",
                                                  os.path.join(HERE, {script_name!r}))
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    groups = experiment.expInfo["group"]
    if args.group not in groups:
        sys.exit(f"unknown group {{args.group!r}}; choose one of {{', '.join(groups)}}")
    info = dict(experiment.expInfo)
    info.update(participant=args.participant, session=args.session, group=args.group,
                simulate=True)
    experiment._fullScr = args.fullscreen
    this_exp = experiment.setupData(expInfo=info)
    experiment.setupLogging(filename=this_exp.dataFileName)
    win = experiment.setupWindow(expInfo=info)
    experiment.setupDevices(expInfo=info, thisExp=this_exp, win=win)
    experiment.run(expInfo=info, thisExp=this_exp, win=win)
    experiment.saveData(thisExp=this_exp)
    print(this_exp.dataFileName + ".csv")
    experiment.quit(thisExp=this_exp, win=win)


if __name__ == "__main__":
    main()
'''
