"""Stimulus selection (`stimgen select`): the best K stimuli of every target of a build, by human
norms or by the model rater, spread over identities, written as a self-contained subset build.

:func:`rank_candidates` and :func:`choose_stimuli` are the pure part (tables in, choice out);
:func:`write_subset` reads a build folder and writes the subset build folder beside it.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stimgen.build_folder import (IDENTITY_RECORDS_DIR, MANIFEST_JSON, NORMS_SUMMARY_JSON,
                                  NORMS_TSV, PROTOCOL_YAML, SELECTION_KEY, STATE_DIR,
                                  STIMULI_DIR, STIMULI_TSV, WRITTEN_FOLDERS, BuildFolder,
                                  build_lock, json_bytes, read_build_folder, read_norms,
                                  record_files, stimulus_frames)
from stimgen.errors import DesignError, SelectionError
from stimgen.safety import is_inside, refuse_links
from stimgen.storage import sha256_bytes, sha256_file

log = logging.getLogger("stimgen")

#: What the distance to the target is measured from: the human mean or the primary rater.
RANKINGS = ("norms", "model")
#: The subset folder's default name: the build folder's name + this.
SUBSET_SUFFIX = "-selected"


# -- the pure part --------------------------------------------------------------------------------
def target_label(kind: str, emotion: str, intensity: float) -> str:
    """The name of a target condition as messages and manifest.json write it.

    >>> target_label("named", "Happy", 0.5), target_label("neutral", "neutral", 0.0)
    ('Happy at intensity 0.5', 'neutral')
    """
    if kind == "neutral" or kind == "point":
        return str(emotion)
    return f"{emotion} at intensity {float(intensity):g}"


def check_options(per_target: int, by: str, max_distance: float | None,
                  min_hit_rate: float | None, k_option: str = "--per-target") -> None:
    """Refuse selection options out of range, naming the option and its accepted range.

    ``k_option`` is the name of K's option as the user typed it (``--per-target`` or its
    alias ``--per-emotion``), so that a message names what is on their command line.

    >>> check_options(2, "norms", 0.3, 0.5)
    >>> check_options(0, "norms", None, None, k_option="--per-emotion")
    Traceback (most recent call last):
    ...
    stimgen.errors.SelectionError: --per-emotion 0: K must be at least 1
      hint: e.g. --per-emotion 4 keeps the 4 best stimuli of every target
    """
    if isinstance(per_target, bool) or not isinstance(per_target, (int, np.integer)) \
            or per_target < 1:
        raise SelectionError(f"{k_option} {per_target}: K must be at least 1",
                             hint=f"e.g. {k_option} 4 keeps the 4 best stimuli of every target")
    if by not in RANKINGS:
        raise SelectionError(f"--by {by}: must be one of {', '.join(RANKINGS)}",
                             hint="--by norms ranks by the human means of norms.tsv, --by model "
                                  "by the build's primary rater")
    if max_distance is not None and not (math.isfinite(max_distance) and max_distance >= 0):
        raise SelectionError(f"--max-distance {max_distance:g}: must be a distance of 0 or more "
                             "in the valence-arousal plane",
                             hint="e.g. --max-distance 0.3 (the whole plane spans 0-2.83)")
    if min_hit_rate is not None and not (0.0 <= min_hit_rate <= 1.0):
        raise SelectionError(f"--min-hit-rate {min_hit_rate:g}: must lie between 0 and 1",
                             hint="a share of raters, e.g. --min-hit-rate 0.7 for 70 %")


def rank_candidates(stimuli: pd.DataFrame, norms: pd.DataFrame | None, *, by: str = "norms",
                    max_distance: float | None = None,
                    min_hit_rate: float | None = None) -> pd.DataFrame:
    """Every stimulus with its target condition, its distance to the target and whether it may
    be chosen, ranked within its target.

    Parameters
    ----------
    stimuli : pandas.DataFrame
        The build's stimuli.tsv (:func:`stimgen.build_folder.read_stimuli`).
    norms : pandas.DataFrame or None
        The build's norms.tsv; needed for ``by="norms"`` and for ``min_hit_rate``.
    by : {"norms", "model"}
        ``norms``: the distance between the human mean (``valence_mean``, ``arousal_mean``)
        and the target (``distance_to_target`` of norms.tsv); ``model``: between the primary
        rater's reading and the target (``distance_error`` of stimuli.tsv).
    max_distance : float, optional
        Stimuli farther than this from their target are not eligible.
    min_hit_rate : float, optional
        Stimuli whose ``hit_rate`` is below this (or unknown) are not eligible.

    Returns
    -------
    pandas.DataFrame
        One row per stimulus in stimuli.tsv order: ``stimulus_id``, ``identity``, ``target``
        (:func:`target_label`), ``target_order`` (first appearance in stimuli.tsv),
        ``distance``, ``hit_rate`` (NaN without labels), ``eligible``, ``reason`` (why not
        eligible, empty otherwise) and ``rank`` (0 = best eligible of its target, by
        distance, then higher hit rate, then stimulus id; -1 when not eligible).

    Raises
    ------
    SelectionError
        Norms missing for ``by="norms"`` or ``min_hit_rate``; no hit rates for ``min_hit_rate``.

    Examples
    --------
    >>> stimuli = pd.DataFrame({"stimulus_id": ["a_happy", "b_happy"], "identity": ["a", "b"],
    ...     "target_kind": "named", "emotion": "Happy", "intensity": 1.0,
    ...     "distance_error": [0.4, 0.1]})
    >>> rank_candidates(stimuli, None, by="model")[["stimulus_id", "distance", "rank"]]
      stimulus_id  distance  rank
    0     a_happy       0.4     1
    1     b_happy       0.1     0
    """
    ids = stimuli["stimulus_id"].astype(str)
    table = pd.DataFrame({
        "stimulus_id": ids, "identity": stimuli["identity"].astype(str),
        "target": [target_label(k, e, i) for k, e, i in
                   zip(stimuli["target_kind"], stimuli["emotion"], stimuli["intensity"])]})
    table["target_order"] = table["target"].map(
        {t: n for n, t in enumerate(dict.fromkeys(table["target"]))})
    rated = None if norms is None else norms.set_index(norms["stimulus_id"].astype(str))
    if by == "norms":
        if rated is None:
            raise _norms_missing("--by norms ranks by the human norms")
        table["distance"] = ids.map(rated["distance_to_target"]).astype(float).to_numpy()
    else:
        table["distance"] = pd.to_numeric(stimuli["distance_error"]).to_numpy(dtype=float)
    if rated is not None and "hit_rate" in rated.columns:
        table["hit_rate"] = ids.map(rated["hit_rate"]).astype(float).to_numpy()
    elif min_hit_rate is not None:
        if rated is None:
            raise SelectionError(
                f"--min-hit-rate {min_hit_rate:g} filters on the human hit rates, and this "
                f"build has no {NORMS_TSV}",
                hint="leave out --min-hit-rate" + (" (--by model needs no norms)"
                                                   if by == "model" else "")
                     + ", or run `stimgen norms BUILD_DIR DATA...` with labelled data first "
                       "(see docs/norms.md)")
        raise SelectionError(
            f"--min-hit-rate {min_hit_rate:g}: {NORMS_TSV} has no hit_rate column (the norms "
            "were computed from ratings without emotion labels)",
            hint="leave out --min-hit-rate, or collect labels (experiment.task.labels of a "
                 "norming task, or a `label` column in a tidy CSV) and run `stimgen norms` "
                 "again")
    else:
        table["hit_rate"] = np.nan

    reason = pd.Series("", index=table.index)
    reason[table["distance"].isna()] = ("no human norms" if by == "norms"
                                        else "no model rating")
    if max_distance is not None:
        reason[reason.eq("") & (table["distance"] > max_distance)] = \
            f"farther than --max-distance {max_distance:g}"
    if min_hit_rate is not None:
        reason[reason.eq("") & table["hit_rate"].isna()] = "no hit rate"
        reason[reason.eq("") & (table["hit_rate"] < min_hit_rate)] = \
            f"hit rate below --min-hit-rate {min_hit_rate:g}"
    table["reason"] = reason
    table["eligible"] = reason.eq("")
    table["rank"] = -1
    ordered = _rank_order(table[table["eligible"]])
    table.loc[ordered.index, "rank"] = ordered.groupby("target", sort=False).cumcount().to_numpy()
    return table


def _rank_order(table: pd.DataFrame) -> pd.DataFrame:
    """Closest first; equal distances: the higher hit rate, then the stimulus id."""
    return table.assign(_miss=-table["hit_rate"].fillna(-1.0)).sort_values(
        ["distance", "_miss", "stimulus_id"], kind="stable").drop(columns="_miss")


@dataclass
class Choice:
    """What :func:`choose_stimuli` chose, and where it could not choose K."""

    chosen: pd.DataFrame                  # rank_candidates' rows that were chosen, by target
    targets: list[dict]                   # per target: asked, eligible, chosen
    shortfalls: list[str] = field(default_factory=list)   # one warning per short target
    cap: int = 0                          # the most stimuli one identity gives, where possible


def choose_stimuli(candidates: pd.DataFrame, per_target: int) -> Choice:
    """The best ``per_target`` eligible stimuli of every target, spread over identities.

    The rule, in full:

    1. each target wants ``min(K, its eligible stimuli)``; together ``N`` stimuli, over
       the ``I`` identities that have an eligible stimulus; an identity's fair share is
       ``cap = ceil(N / I)``;
    2. a target with no more eligible stimuli than K keeps them all: it has no choice, and
       they count towards their identities' shares first;
    3. the other targets' eligible stimuli are taken in rank order, round by round: every
       target's best first (closest to its target first), then every target's second best,
       and so on; a stimulus is taken when its target still wants one and its identity has
       given fewer than ``cap`` stimuli;
    4. where a target still wants stimuli after that (balance is not possible), its best
       remaining eligible stimuli are taken whatever their identity.

    stimgen draws one face per identity and target, so the K stimuli of a target come from K
    different identities; the cap spreads the identities over the targets, so that no
    identity stands for most of the subset (and with it for one emotion) while others
    could take its place. Balance can cost closeness: --max-distance bounds that cost.

    Parameters
    ----------
    candidates : pandas.DataFrame
        From :func:`rank_candidates`.
    per_target : int
        K, at least 1.

    Returns
    -------
    Choice

    Examples
    --------
    Identity ``a`` is the closest in both targets; with K = 1 each identity gives one:

    >>> candidates = pd.DataFrame({"stimulus_id": ["a_h", "b_h", "a_s", "b_s"],
    ...     "identity": ["a", "b", "a", "b"], "target": ["h", "h", "s", "s"],
    ...     "target_order": [0, 0, 1, 1], "distance": [0.1, 0.2, 0.15, 0.3],
    ...     "hit_rate": float("nan"), "eligible": True, "reason": "", "rank": [0, 1, 0, 1]})
    >>> choose_stimuli(candidates, 1).chosen["stimulus_id"].tolist()
    ['a_h', 'b_s']
    """
    check_options(per_target, "norms", None, None)
    eligible = candidates[candidates["eligible"]]
    counts = eligible.groupby("target", sort=False).size()
    wanted = {t: min(per_target, int(counts.get(t, 0)))
              for t in dict.fromkeys(candidates.sort_values("target_order")["target"])}
    identities = eligible["identity"].nunique()
    total = sum(wanted.values())
    cap = math.ceil(total / identities) if identities else 0
    rounds = eligible.assign(_miss=-eligible["hit_rate"].fillna(-1.0)).sort_values(
        ["rank", "distance", "_miss", "stimulus_id"], kind="stable")
    taken: dict = {}                      # index -> None, in the order taken
    picked = {t: 0 for t in wanted}
    given: dict[str, int] = {}
    for step in ("no choice", "balanced", "relaxed"):
        for index, row in rounds.iterrows():
            if index in taken or picked[row["target"]] >= wanted[row["target"]]:
                continue
            if step == "no choice" and counts[row["target"]] > per_target:
                continue
            if step == "balanced" and given.get(row["identity"], 0) >= cap:
                continue
            taken[index] = None
            picked[row["target"]] += 1
            given[row["identity"]] = given.get(row["identity"], 0) + 1
    chosen = candidates.loc[list(taken)].sort_values(["target_order", "rank"], kind="stable")
    targets, shortfalls = [], []
    for target in wanted:
        eligible_n = int(counts.get(target, 0))
        targets.append({"target": target, "asked": per_target, "eligible": eligible_n,
                        "chosen": picked[target]})
        if eligible_n < per_target:
            reasons = candidates.loc[(candidates["target"] == target) & ~candidates["eligible"],
                                     "reason"].value_counts(sort=False)
            why = "; ".join(f"{n} {r}" for r, n in reasons.items()) or "the build has no more"
            shortfalls.append(f"{target}: only {eligible_n} eligible of the {per_target} "
                              f"asked for ({why}); keeping {eligible_n}")
    return Choice(chosen.reset_index(drop=True), targets, shortfalls, cap)


def _norms_missing(why: str) -> SelectionError:
    return SelectionError(f"{why}, and this build has no {NORMS_TSV}",
                          hint="run `stimgen norms BUILD_DIR DATA...` on the build first "
                               "(see docs/norms.md), or rank by the model with --by model")


# -- the subset build folder ----------------------------------------------------------------------
def default_subset_folder(build_dir: str | Path) -> Path:
    """Where the subset goes without ``-o``: beside the build, its name + ``-selected``.

    >>> default_subset_folder("build/demo").as_posix()
    'build/demo-selected'
    """
    root = Path(build_dir)
    root = root if root.name else root.resolve()
    return root.with_name(root.name + SUBSET_SUFFIX)


@dataclass
class Subset:
    """What :func:`write_subset` wrote."""

    out: Path                             # the subset build folder
    choice: Choice
    manifest: dict


def write_subset(build_dir, out=None, *, per_target: int, by: str = "norms",
                 max_distance: float | None = None, min_hit_rate: float | None = None,
                 command: str | None = None, force: bool = False,
                 k_option: str = "--per-target") -> Subset:
    """Choose the best stimuli of a build and write them as a subset build folder.

    The subset holds the chosen images (byte copies), their rows of stimuli.tsv and
    norms.tsv, the error tables and norms summary recomputed for them, protocol.yaml, the
    experiment planned again over them (when the protocol has one), the report and a
    manifest.json that records the selection rule. It is a build folder in its own right:
    ``stimgen report`` and ``stimgen norms`` work on it.

    Parameters
    ----------
    build_dir : str or Path
        A complete build folder (``stimgen build``), with norms.tsv for ``by="norms"``.
    out : str or Path, optional
        The subset folder; default :func:`default_subset_folder`. It must be new, empty or
        an earlier subset; stimgen replaces only the files it wrote there.
    per_target, by, max_distance, min_hit_rate
        The rule (:func:`rank_candidates`, :func:`choose_stimuli`).
    command : str, optional
        The command line, recorded in the manifest and the report.
    force : bool
        When participants' data in the subset's ``experiment/data/`` was collected with an
        experiment this selection changes: keep that experiment in ``experiment/previous/``
        and write the new one (as ``stimgen build --force``); without it, refuse.
    k_option : str
        How messages name K's option: ``--per-target`` or, where the user typed that alias,
        ``--per-emotion``.

    Returns
    -------
    Subset

    Raises
    ------
    SelectionError, BuildFolderError, BuildError
        Bad options, a folder that is not a complete build, missing norms, an output folder
        that is not a subset's, an image changed since the build, an experiment that cannot
        be planned over the chosen stimuli.

    Examples
    --------
    >>> write_subset("build/demo", per_target=2, by="model")  # doctest: +SKIP
    """
    clock = time.perf_counter()
    check_options(per_target, by, max_distance, min_hit_rate, k_option)
    _refuse_folder_inside_a_build(Path(build_dir), k_option)
    source = read_build_folder(build_dir)
    found = read_norms(source.root)
    norms = found[0] if found else None
    if found is None and (source.root / NORMS_TSV).is_file() and (by == "norms"
                                                                   or min_hit_rate is not None):
        raise SelectionError(f"{source.root / NORMS_TSV} (or {NORMS_SUMMARY_JSON} beside it) "
                             "cannot be read", hint="run `stimgen norms` on the build again")
    if norms is not None:
        norms = _applicable_norms(source, norms, uses_norms=by == "norms"
                                  or min_hit_rate is not None)
    candidates = rank_candidates(source.stimuli, norms, by=by, max_distance=max_distance,
                                 min_hit_rate=min_hit_rate)
    choice = choose_stimuli(candidates, per_target)
    for warning in choice.shortfalls:
        log.warning("%s", warning)
    if choice.chosen.empty:
        raise SelectionError("no stimulus of the build is eligible: there is nothing to select",
                             hint="loosen --max-distance or --min-hit-rate, or check that "
                                  f"{NORMS_TSV} covers the build's stimuli")
    out = Path(out) if out is not None else default_subset_folder(source.root)
    _prepare_subset_folder(out, source.root)
    rule = {"by": by, "per_emotion": per_target, "per": "target (emotion at an intensity)",
            "max_distance": max_distance, "min_hit_rate": min_hit_rate,
            "identity_cap": choice.cap}
    with build_lock(out):
        refuse_links(out, WRITTEN_FOLDERS)
        manifest = _write_subset_locked(source, out, choice, norms, found, rule, command, force,
                                        k_option, clock)
    return Subset(out, choice, manifest)


def _refuse_folder_inside_a_build(folder: Path, k_option: str) -> None:
    """A folder of a build (``BUILD/stimuli``) given for the build: name the build above it."""
    if not folder.is_dir() or (folder / MANIFEST_JSON).is_file():
        return
    for parent in folder.absolute().parents:
        if (parent / MANIFEST_JSON).is_file() and (parent / STIMULI_TSV).is_file():
            shown = os.path.relpath(parent)
            shown = parent if shown.startswith("..") else Path(shown)
            raise SelectionError(f"{folder}: not a build folder; it lies inside the build "
                                 f"folder {shown}",
                                 hint=f"pass the build folder itself: stimgen select {shown} "
                                      f"{k_option} K")


def _applicable_norms(source: BuildFolder, norms: pd.DataFrame, *,
                      uses_norms: bool) -> pd.DataFrame:
    """The rows of norms.tsv whose rated image is still the build's. A selection that ranks or
    filters by norms refuses stimuli redrawn since they were rated (people never saw them);
    one by the model only leaves their norms out of the subset."""
    from stimgen.norms.current import UNVERIFIABLE, match_norms

    match = match_norms(norms, source.stimuli)
    if match.unverifiable:
        log.warning("%s", UNVERIFIABLE)
    if match.changed and uses_norms:
        raise SelectionError(
            f"{source.root / NORMS_TSV}: {match.stale_message()}: their human norms describe "
            "images the build no longer holds, and would rank faces nobody rated",
            hint="run the norming study again with these faces, or `stimgen norms` with the "
                 "data collected on them; or rank by the model with --by model (without "
                 "--min-hit-rate)")
    if match.changed:
        log.warning("%s; their norms are left out of the subset", match.stale_message())
    return match.current


def _prepare_subset_folder(out: Path, source: Path) -> None:
    """Create the subset folder, or adopt an earlier subset; refuse anything else."""
    other = "choose another folder with -o (a new or empty one, or an earlier subset)"
    if is_inside(source, out) or is_inside(out, source):
        raise SelectionError(f"-o {out}: the subset cannot be written into the build it is "
                             f"selected from ({source}) or around it", hint=other)
    if out.exists() and not out.is_dir():
        raise SelectionError(f"-o {out}: exists and is not a folder", hint=other)
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_DIR).is_dir():
        raise SelectionError(f"-o {out}: the folder is not empty and was not made by stimgen",
                             hint=other)
    records = out / IDENTITY_RECORDS_DIR
    if records.is_dir() and any(records.iterdir()):
        raise SelectionError(f"-o {out}: is a build made by `stimgen build`, not a subset; "
                             "a subset never replaces a build", hint=other)
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SelectionError(f"-o {out}: cannot create the folder ({err.strerror or err})",
                             hint="check the path and your permissions") from err


def _write_subset_locked(source: BuildFolder, out: Path, choice: Choice, norms, found, rule,
                         command, force, k_option: str, clock: float) -> dict:
    from stimgen.finish import FinishedFolder, assemble_manifest, finish
    from stimgen.ledger import Ledger, protect_collected_data, remove_partial_snapshots

    ids = list(choice.chosen["stimulus_id"])
    keep = source.stimuli["stimulus_id"].astype(str).isin(ids)
    table = source.stimuli[keep].drop(columns="flag_list")
    selection = {
        **rule,
        "source": {"path": str(source.root.resolve()),
                   "manifest_sha256": sha256_file(source.root / MANIFEST_JSON),
                   "norms_sha256": (sha256_file(source.root / NORMS_TSV) if found else None),
                   "norms_summary_sha256": (sha256_file(source.root / NORMS_SUMMARY_JSON)
                                            if found else None),
                   "stimuli": int(len(source.stimuli))},
        "targets": choice.targets,
        "stimuli": [{"stimulus_id": r.stimulus_id, "target": r.target, "rank": int(r.rank),
                     "distance": _number(r.distance), "hit_rate": _number(r.hit_rate)}
                    for r in choice.chosen.itertuples()],
        "warnings": choice.shortfalls,
    }
    source_inputs = Ledger.load(source.root).experiment_inputs or \
        f"build {selection['source']['manifest_sha256']}"
    # the experiment is made from the protocol and the chosen stimuli, nothing else
    inputs = f"{source_inputs}, selection {sha256_bytes(json_bytes(sorted(ids)))}"

    ledger = Ledger.load(out)
    remove_partial_snapshots(out)
    protect_collected_data(ledger, inputs, force, selection=True)
    ledger.remove(MANIFEST_JSON)                 # not a complete subset until written again
    images = []
    for file, digest in _stimulus_files(source, table).items():
        data = (source.root / file).read_bytes() if (source.root / file).is_file() else None
        if data is None or sha256_bytes(data) != digest:
            raise SelectionError(
                f"{source.root / file}: {'missing' if data is None else 'changed'} since "
                f"the build wrote it (its sha256 in {STIMULI_TSV} or {MANIFEST_JSON} does not "
                "match)",
                hint="run `stimgen build` on the protocol again; it redraws damaged images")
        ledger.write_bytes(file, data)
        images.append(file)
    ledger.remove_stale(STIMULI_DIR, keep=set(images))

    references = [r for r in source.manifest.get("reference_faces") or []
                  if (source.root / str(r.get("image", ""))).is_file()]
    if found is not None:
        from stimgen.norms import subset_summary

        subset_norms = norms[norms["stimulus_id"].astype(str).isin(ids)]
        normed = [i for i in ids if i in set(norms["stimulus_id"].astype(str))]
        norms_files = {NORMS_TSV: _rows_of(source.root / NORMS_TSV, normed),
                       NORMS_SUMMARY_JSON: json_bytes(subset_summary(found[1], subset_norms,
                                                                     len(table)))}
    else:
        norms_files = {NORMS_TSV: None, NORMS_SUMMARY_JSON: None}
    bundle = _bundle_of(source)
    finished = FinishedFolder(
        table=table, stimuli_tsv=_rows_of(source.root / STIMULI_TSV, ids),
        protocol_yaml=(source.root / PROTOCOL_YAML).read_bytes(),
        references={r["image"]: (source.root / r["image"]).read_bytes() for r in references},
        norms=norms_files, experiment_inputs=inputs, experiment=bundle,
        after_design=lambda design: _warn_idle_choices(bundle.experiment, design, k_option),
        manifest=assemble_manifest(
            source.manifest, table, command=command, reference_faces=references,
            identity_seeds={i: s for i, s in (source.manifest.get("identity_seeds") or {}).items()
                            if i in set(table["identity"])},
            **{SELECTION_KEY: selection}))
    try:
        finish(out, finished, command=command, timed_as=("select", clock))
    except DesignError as error:
        raise _unplannable(error, len(table), k_option) from None
    return finished.manifest


def _stimulus_files(source: BuildFolder, table: pd.DataFrame) -> dict[str, str]:
    """What the subset copies of each chosen stimulus, {build-relative path: sha256}: its
    image, and in a build with output.dynamic its clip and PNG onset frames (stimuli.tsv
    does not list the frames; the build's manifest does)."""
    built = source.manifest.get("files") or {}
    files: dict[str, str] = {}
    for row in table.to_dict("records"):
        files.update(record_files(row))
        files.update(stimulus_frames(built, str(row["stimulus_id"])))
    return files


def _rows_of(path: Path, ids: list[str]) -> bytes:
    """The rows of a build table whose stimulus_id is in ``ids``, byte for byte as the
    build wrote them (cells are read and written back as text)."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    rows = table[table["stimulus_id"].isin(set(ids))]
    return rows.to_csv(sep="\t", index=False, lineterminator="\n").encode("utf-8")


def _bundle_of(source: BuildFolder):
    """The experiment of the protocol the build was made from, as its manifest normalised it
    (paths in it are not read again: the subset reuses the build's images); None without."""
    from stimgen.plan import bundle_spec
    from stimgen.protocol.models import Protocol

    return bundle_spec(Protocol.model_validate(source.protocol)) if source.protocol else None


def _write_experiment(out: Path, bundle, table: pd.DataFrame, k_option: str) -> None:
    """The experiment (:func:`stimgen.plan.bundle_spec`) planned again over the chosen
    stimuli (as the finisher writes it), or a SelectionError naming the setting that cannot
    be met."""
    from stimgen.finish import write_experiment

    try:
        write_experiment(out, bundle, table,
                         lambda design: _warn_idle_choices(bundle.experiment, design, k_option))
    except DesignError as error:
        raise _unplannable(error, len(table), k_option) from None


def _unplannable(error: DesignError, chosen: int, k_option: str) -> SelectionError:
    return SelectionError(
        f"the protocol's experiment cannot be planned over the {chosen} chosen "
        f"stimuli: {error.render()}",
        hint=f"choose a K ({k_option}) or thresholds that keep what "
             f"{error.field_path or 'the experiment'} needs, or change that setting in "
             "the protocol and build again")


def _warn_idle_choices(experiment, design, k_option: str) -> None:
    """Warn about answers of the subset's task that no chosen stimulus makes correct."""
    idle = idle_choices(experiment, design.table)
    if idle:
        log.warning("the subset's %s task still offers the %s %s, but no chosen stimulus "
                    "shows %s, so that answer is never correct: keep some of its stimuli with "
                    "a larger %s or looser thresholds, or remove the choice from "
                    "the protocol and build again", experiment.task.type,
                    "choice" if len(idle) == 1 else "choices", ", ".join(idle),
                    "that emotion" if len(idle) == 1 else "their emotions", k_option)


def idle_choices(experiment, trials: pd.DataFrame) -> list[str]:
    """The labels of forced-choice options that are correct for no trial of ``trials``
    (design.csv): options whose emotions a selection left without stimuli. A "none of
    these" option (correct for no emotion) is never idle.

    >>> from stimgen.protocol.experiment import ExperimentSpec
    >>> spec = ExperimentSpec.model_validate({"task": {"type": "categorization",
    ...     "choices": ["Happy", "Sad", "Angry"]}})
    >>> idle_choices(spec, pd.DataFrame({"correct_label": ["Happy", "Sad", ""]}))
    ['Angry']
    >>> spec = ExperimentSpec.model_validate({"task": {"type": "norming",
    ...     "labels": ["Happy", "Sad"], "none_label": "none of these"}})
    >>> idle_choices(spec, pd.DataFrame({"correct_label": ["Happy", "Sad"]}))
    []
    """
    choices = getattr(experiment.task, "choices", None) or []
    if "correct_label" not in trials:
        return []
    used = set(trials["correct_label"].astype(str))
    return [c.label for c in choices if c.emotions != [] and c.label not in used]


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)
