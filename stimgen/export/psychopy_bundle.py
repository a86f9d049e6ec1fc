"""Writes the PsychoPy bundle of a build: `experiment/` with the .psyexp, its compiled script,
per-group conditions files, design.csv, a simulated-participant launcher and a README; online
bundles also hold the images they show and the compiled PsychoJS script (Pavlovia).

The files are assembled next to the build and moved into ``experiment/`` one by one through
the folder's ledger (stimgen/ledger.py): stimgen replaces only the files it wrote, so
participants' data in ``experiment/data/`` and anything a researcher added stay as they are.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd

from stimgen.build_folder import DESIGN_CSV, EXPERIMENT_DIR, as_bool
from stimgen.errors import BackendUnavailableError, BuildError
from stimgen.export import psyexp
from stimgen.export.clips import CLIP_FILE
from stimgen.export.psychojs import check_compiled_js, write_web_font
from stimgen.export.psyexp import MAIN_LOOP, PRACTICE_LOOP, conditions_filename
from stimgen.ledger import Ledger
from stimgen.packages import PSYCHOPY_INSTALL
from stimgen.protocol.experiment import evaluated_by_psychopy
from stimgen.safety import spreadsheet_safe_table
from stimgen.storage import link_or_copy

BUNDLE_DIR = EXPERIMENT_DIR
LAUNCHER = "run_simulated.py"
#: Prepended to an image's build-relative path (``stimuli/x.png``) in conditions files, whose
#: paths are relative to the experiment folder: the build's own stimuli/ next to it, or the
#: copy inside it of an online bundle (PsychoJS reads nothing outside the experiment folder).
STIMULI_PREFIX, ONLINE_STIMULI_PREFIX = "../", ""
_BOOLEAN_COLUMNS = ("is_practice", "break_after", "is_catch")
#: Trial columns naming a file of the build's stimuli/: the image, and the video of clip trials.
_FILE_COLUMNS = ("stim_file", CLIP_FILE)


def write_bundle(build_dir: Path, bundle, stimuli: pd.DataFrame, design) -> dict[str, Path]:
    """Write ``<build_dir>/experiment/`` for the protocol's experiment and a planned design.

    Parameters
    ----------
    build_dir : Path
        The build folder; its ``stimuli/`` holds the images named in ``stimuli``.
    bundle : stimgen.settings.BundleSpec
        The protocol's study, experiment, seed and clips (:func:`stimgen.plan.bundle_spec`).
    stimuli : pandas.DataFrame
        The build's stimuli.tsv (used for the README's stimulus count).
    design : stimgen.design.Design
        The planned groups and trial tables (:func:`stimgen.design.plan_design`).

    Returns
    -------
    dict of str to Path
        ``psyexp``, ``script``, ``launcher``, ``readme``, ``design`` and one
        ``conditions/<file>`` entry per conditions file, all inside ``build_dir/experiment``;
        online bundles (``experiment.online``) add ``stimuli`` (the folder of images), ``js``,
        ``js_legacy`` (PsychoJS scripts for module and legacy browsers) and ``html``.

    Raises
    ------
    BackendUnavailableError
        PsychoPy is not installed.
    BuildError
        A protocol value would be read as code by PsychoPy's conditions reader, or (online)
        an image the experiment shows is missing from the build's ``stimuli/``.
    """
    psychopy_experiment_module()
    build_dir = Path(build_dir)
    name = experiment_name(bundle.study.name)
    spec = bundle.experiment
    prefix = ONLINE_STIMULI_PREFIX if spec.online else STIMULI_PREFIX
    layout = psyexp.layout_from_spec(spec, design.groups, answers=choice_answers(design))
    if spec.show == "clip":                  # issue 19: each trial plays its video first
        from stimgen.dynamic import clip_seconds
        from stimgen.export.clips import with_clip_files

        design = with_clip_files(design, stimuli)
        layout = dataclasses.replace(layout, clip_s=clip_seconds(bundle.dynamic))
    tables = {g: conditions_table(design.trials[g], prefix) for g in design.groups}
    shown = shown_stimuli(design) if spec.online else []
    resources = online_resources(conditions_files(design.groups, layout.has_practice),
                                 shown) if spec.online else ()
    exp = psyexp.build_experiment(layout, name, resources=resources)

    staging = Path(tempfile.mkdtemp(prefix=".experiment-", dir=build_dir))
    try:
        files = {}
        if spec.online:
            files["stimuli"] = copy_stimuli(build_dir, shown, staging)
            if psyexp.uses_web_font(layout):
                files.update((path.as_posix(), path) for path in write_web_font(staging))
        files.update(_write_files(staging, exp, name, layout, tables, bundle.study, stimuli,
                                  design, prefix, online=spec.online))
        final = build_dir / BUNDLE_DIR
        Ledger.load(build_dir).install(staging, BUNDLE_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {key: final / rel for key, rel in files.items()}


def _write_files(folder: Path, exp, name, layout, tables, study, stimuli, design,
                 prefix: str, online: bool) -> dict[str, Path]:
    files: dict[str, Path] = {}
    (folder / "conditions").mkdir()
    for group, loop, rel in conditions_files(list(tables), layout.has_practice):
        table = tables[group]
        rows = table[table["is_practice"] == int(loop == PRACTICE_LOOP)]
        spreadsheet_safe_table(rows).to_csv(folder / rel, index=False, lineterminator="\n")
        files[rel] = Path(rel)

    psyexp_path = folder / f"{name}.psyexp"
    exp.saveToXML(str(psyexp_path), makeLegacy=False)
    script = exp.writeScript(expPath=str(psyexp_path), target="PsychoPy")
    script = portable_script(script, folder / f"{name}.py")
    (folder / f"{name}.py").write_text(script, encoding="utf-8")
    (folder / LAUNCHER).write_text(launcher_source(f"{name}.py"), encoding="utf-8")
    files.update(psyexp=Path(psyexp_path.name), script=Path(f"{name}.py"),
                 launcher=Path(LAUNCHER))
    if online:
        files.update(_write_psychojs(folder, psyexp_path))
    # Written after the PsychoJS scripts: PsychoPy's resource scan reads every cell of every
    # CSV at the top of the folder (it cannot evaluate the group-dependent conditions file
    # name), about 0.5 s per thousand rows of this audit table, which PsychoJS does not need.
    design_table = flags_as_01(design.table)
    for column in _FILE_COLUMNS:
        if column in design_table.columns:
            design_table[column] = design_table[column].map(
                lambda f: prefix + str(f).replace("\\", "/"))
    design_name = PurePosixPath(DESIGN_CSV).relative_to(EXPERIMENT_DIR).as_posix()
    spreadsheet_safe_table(design_table).to_csv(folder / design_name, index=False,
                                                lineterminator="\n")
    files["design"] = Path(design_name)

    from stimgen.export.readme import render_readme
    readme = render_readme(study=study, name=name, layout=layout, design=design,
                           stimuli=stimuli, files=sorted(files.values()), online=online)
    (folder / "README.md").write_text(readme, encoding="utf-8")
    files["readme"] = Path("README.md")
    return files


def _write_psychojs(folder: Path, psyexp_path: Path) -> dict[str, Path]:
    """The PsychoJS scripts, compiled from the saved .psyexp as Builder's *Export HTML* does
    (its ``index.html`` is a side effect of PsychoPy's writeScript); the resources they
    preload must already be in ``folder``."""
    exp = psychopy_experiment_module().Experiment()
    exp.loadFromXML(str(psyexp_path))
    name = psyexp_path.stem
    files = {}
    for key, file_name, modular in (("js", f"{name}.js", True),
                                    ("js_legacy", f"{name}-legacy-browsers.js", False)):
        js = exp.writeScript(expPath=str(folder / file_name), target="PsychoJS", modular=modular)
        check_compiled_js(js, file_name)
        (folder / file_name).write_text(portable_js(js, folder), encoding="utf-8")
        files[key] = Path(file_name)
    if (folder / "index.html").is_file():
        files["html"] = Path("index.html")
    return files


# -- online layout ----------------------------------------------------------------------------
def conditions_files(groups, has_practice: bool) -> list[tuple[str, str, str]]:
    """(group, loop, relative path) of every conditions file of a bundle, practice first.

    >>> conditions_files(["g01"], has_practice=True)[0]
    ('g01', 'practice_trials', 'conditions/g01_practice_trials.csv')
    """
    loops = (PRACTICE_LOOP, MAIN_LOOP) if has_practice else (MAIN_LOOP,)
    return [(group, loop, conditions_filename(group, loop)) for group in groups for loop in loops]


def shown_stimuli(design) -> list[str]:
    """Build-relative paths (``stimuli/<file>``) of every image and clip the design shows,
    practice included, sorted; each names a file directly inside the build's ``stimuli/``."""
    paths = sorted({str(f).replace("\\", "/") for column in _FILE_COLUMNS
                    if column in design.table.columns for f in design.table[column]})
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) != 2 or parts[0] != "stimuli" or parts[1] in (".", ".."):
            raise ValueError(f"stim_file {path!r} is not a file of stimuli/")  # a design bug
    return paths


def online_resources(conditions: list[tuple[str, str, str]], shown: list[str]) -> tuple[str, ...]:
    """What PsychoJS preloads, relative to the experiment folder: every group's conditions
    files (the group is chosen at run time, so PsychoPy cannot tell which) and every image."""
    return tuple(rel for _, _, rel in conditions) + tuple(ONLINE_STIMULI_PREFIX + s for s in shown)


def copy_stimuli(build_dir: Path, shown: list[str], folder: Path) -> Path:
    """Put the images the experiment shows into ``folder/stimuli/`` (hard links when possible);
    returns that folder's path relative to ``folder``."""
    (folder / "stimuli").mkdir()
    for rel in shown:
        source = build_dir / rel
        if not source.is_file():
            raise BuildError(f"{source} is shown by the experiment but is not in the build",
                             hint="run the same `stimgen build` command again; it redraws "
                                  "missing stimuli")
        link_or_copy(source, folder / (ONLINE_STIMULI_PREFIX + rel))
    return Path("stimuli")


# -- pieces -----------------------------------------------------------------------------------
def psychopy_experiment_module():
    """``psychopy.experiment``, or a BackendUnavailableError saying how to install PsychoPy."""
    try:
        # PsychoPy's ioHub announces on import that the optional pytables is missing; that
        # datastore is never used here, so the line is dropped and anything else passed on.
        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            from psychopy import experiment
            import psychopy.iohub  # noqa: F401  (imported by the keyboard component anyway)
        for line in captured.getvalue().splitlines():
            if "pytables package" not in line:
                print(line, file=sys.stderr)
        # PsychoPy queues its log (e.g. "Monitor specification not found", about the screen
        # of a run that is not happening here) and prints it when Python exits, below the
        # build's last line; only its errors concern writing an experiment
        from psychopy import logging as psychopy_logging
        psychopy_logging.console.setLevel(psychopy_logging.ERROR)
    except ImportError as error:
        raise BackendUnavailableError(
            f"writing the PsychoPy experiment needs PsychoPy, which cannot be imported ({error})",
            hint=f"{PSYCHOPY_INSTALL} (run it in a clone of stimgen; see docs/psychopy.md), "
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


def conditions_table(trials: pd.DataFrame, prefix: str = STIMULI_PREFIX) -> pd.DataFrame:
    """A group's trial table as PsychoPy reads it: booleans as 0/1, image paths relative to
    the experiment folder (``prefix`` + the build-relative path, with forward slashes), and
    no text cell that PsychoPy would evaluate (:func:`evaluated_by_psychopy`): such a value
    would run as code, so it is refused.
    """
    table = flags_as_01(trials)
    for column in _FILE_COLUMNS:
        if column in table.columns:
            table[column] = table[column].map(lambda f: prefix + str(f).replace("\\", "/"))
    for column in table.columns:
        for value in table[column]:
            if isinstance(value, str) and evaluated_by_psychopy(value):
                raise BuildError(
                    f"the value {value!r} in column {column!r} of the experiment's trials would "
                    "be evaluated as Python code by PsychoPy when it reads the conditions file",
                    hint="rename that emotion, label or choice so that it neither starts with "
                         "'$' nor both starts with '[' and ends with ']'")
    return table


def flags_as_01(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with its flag columns (``is_practice``, ``break_after``,
    ``is_catch``) as 1/0, the spelling of every CSV in the bundle: PsychoPy, PsychoJS and
    pandas all read 1/0 as numbers, so ``is_practice == 0`` selects the same rows in the
    conditions files, design.csv and the data files.

    >>> flags_as_01(pd.DataFrame({"is_practice": [True, False], "x": [True, "a"]}))
       is_practice     x
    0            1  True
    1            0     a
    """
    table = table.copy()
    for column in _BOOLEAN_COLUMNS:
        if column in table:
            table[column] = table[column].map(lambda v: int(as_bool(v)))
    return table


_USE_VERSION = re.compile(r"^psychopy\.useVersion\((?P<version>'[0-9.]+')\)$", re.MULTILINE)


def _version_check(match: re.Match) -> str:
    # psychopy.useVersion() clones PsychoPy's versions repository from the internet on first
    # use, even when the requested version is the installed one; the compiled script warns
    # about another version instead (the .psyexp keeps `Use version` for Builder and PsychoJS).
    version = match.group("version")
    return (f"if psychopy.__version__ != {version}:  # written for this version (see the .psyexp)\n"
            "    import warnings\n"
            f"    warnings.warn('this experiment was written for PsychoPy ' + {version} + "
            "', not ' + psychopy.__version__ + ': check it in Builder before collecting data')")


_COMPILE_TIME = re.compile(r"^    on \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", re.MULTILINE)
#: Where the compiled script opens its start dialog (PsychoPy's showExpInfoDlg).
_START_DIALOG = "    # show participant info dialog\n    dlg = gui.DlgFromDict(\n"


def _dialog_check(script_name: str) -> str:
    # psychopy.gui is empty when Python has neither wxPython nor PyQt (a pip environment, a
    # server): the dialog would end in "module 'psychopy.gui' has no attribute DlgFromDict"
    message = (f"{script_name} opens a start dialog (participant, session, group), which "
               "needs wxPython or PyQt; this Python has neither. Run the experiment from the "
               "PsychoPy app (open the .psyexp in Builder and press Run, or use Runner), or "
               "install a toolkit PsychoPy supports here (pip install PyQt6). To check it "
               "without a dialog: python run_simulated.py --group g01")
    return ("    if not hasattr(gui, 'DlgFromDict'):  # stimgen: no GUI toolkit for the dialog\n"
            f"        raise SystemExit({message!r})\n" + _START_DIALOG)


def portable_script(script: str, staged: Path) -> str:
    """The compiled script without what ties it to one run of the build.

    ``psychopy.useVersion(v)`` becomes a warning when the installed PsychoPy is not ``v``
    (useVersion itself needs git and the internet even for the installed version). Without a
    GUI toolkit, the start dialog ends the script with a message saying how to run it.
    PsychoPy writes the compile time into the script's docstring (so rebuilds would differ)
    and the script's own path as ``originPath``: that is the staging folder, renamed to
    ``experiment/`` right after, so the path is replaced by one computed when the script runs.
    """
    script = _COMPILE_TIME.sub("    by stimgen (no compile time, so that rebuilds are identical)",
                               script, count=1)
    if _START_DIALOG not in script:
        raise RuntimeError("PsychoPy's script no longer opens its start dialog as expected; "
                           "update portable_script for this PsychoPy version")
    script = script.replace(_START_DIALOG, _dialog_check(staged.name), 1)
    script = _USE_VERSION.sub(_version_check, script, count=1)
    staged_path = f"originPath={str(staged)!r}"
    if staged_path not in script:
        raise RuntimeError(f"PsychoPy's script no longer sets {staged_path}; update "
                           "portable_script for this PsychoPy version")
    return script.replace(staged_path,
                          f"originPath=os.path.join(_thisDir, {staged.name!r})")


def portable_js(js: str, staged: Path) -> str:
    """The compiled PsychoJS script, checked to hold nothing tied to one run of the build.

    PsychoPy 2026.2 writes neither a compile time nor a path into it (unlike the Python
    script); a version that starts naming the staging folder would break the bundle once it
    is renamed, so that is refused here rather than shipped.
    """
    if str(staged) in js:
        raise RuntimeError(f"PsychoPy's PsychoJS script names its folder {staged}; update "
                           "portable_js for this PsychoPy version")
    return js


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
    groups = sorted(name[:-len("_trials.csv")] for name in os.listdir("conditions")
                    if name.endswith("_trials.csv") and not name.endswith("_practice_trials.csv"))
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
