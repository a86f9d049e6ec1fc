"""Human norms of a build's stimuli (`stimgen norms`): per-stimulus valence and arousal with SD
and 95 % CI, hit rates and Hu, reliability, and agreement with the targets and the model rater.

:func:`compute_norms` is the pure part (responses in, tables out); :func:`norms_files` reads a
build folder and the data files and makes ``norms.tsv`` and ``norms_summary.json``, which
:func:`stimgen.finish.write_norms` writes into the folder with the report.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from stimgen.build_folder import (NORMS_COLUMNS, NORMS_IMAGE_SHA256, NORMS_INTENSITY_COLUMNS,
                                  NORMS_LABEL_COLUMNS, NORMS_SUMMARY_JSON, NORMS_TSV,
                                  BuildFolder, as_bool, json_bytes, read_build_folder,
                                  read_norms, table_bytes)
from stimgen.circumplex import emotion_label_key
from stimgen.design.plan import LIST_COLUMN
from stimgen.metrics import ccc
from stimgen.norms.read import (Experiment, NormsError, Responses, read_responses,
                                stimulus_file_names)
from stimgen.norms.current import UNVERIFIABLE, NormsMatch, match_norms, warn_stale_norms
from stimgen.norms.summary import (_emotion_rows, _finite, _model_agreement, _range,
                                   subset_summary)
from stimgen.norms.stats import (icc2, krippendorff_alpha_interval, mean_ci, rescale,
                                 unbiased_hit_rates)

__all__ = ["compute_norms", "norms_files", "experiment_of", "subset_summary", "match_norms",
           "NormsMatch", "NormsError"]

DEFAULT_SCALE = (1.0, 9.0)

log = logging.getLogger("stimgen")


# -- what the build says about its experiment ----------------------------------------------------
def experiment_of(folder: BuildFolder, scale: tuple[float, float] | None = None) -> Experiment:
    """The build's experiment as reading data needs it; ``scale`` (low, high) overrides the
    valence and arousal scales of the protocol (default 1-9 when the protocol has none)."""
    from stimgen.export.psychopy_bundle import experiment_name
    from stimgen.protocol.experiment import ExperimentSpec

    section = folder.protocol.get("experiment")
    spec = ExperimentSpec.model_validate(section) if section else None
    task = spec.task if spec else None
    scales = {}
    for name in ("valence", "arousal", "intensity"):
        given = getattr(task, name, None)
        if given is not None:
            scales[name] = (float(given.low), float(given.high))
    for name in ("valence", "arousal"):
        scales[name] = tuple(map(float, scale)) if scale else scales.get(name, DEFAULT_SCALE)
        if not scales[name][1] > scales[name][0]:
            raise NormsError(f"--scale {scales[name][0]:g} {scales[name][1]:g}: the maximum must "
                             "be greater than the minimum", hint="e.g. --scale 1 9")
    choices = getattr(task, "choices", None) or []
    trials, lists = {}, {}
    if folder.design is not None and "group" in folder.design:
        main = folder.design[~folder.design["is_practice"].map(as_bool).astype(bool)]
        trials = main.groupby("group").size().astype(int).to_dict()
        if LIST_COLUMN in main:
            lists = {str(s): int(k) for s, k in zip(main["stim_id"], main[LIST_COLUMN])}
    catch = getattr(task, "catch", None)
    study = (folder.protocol.get("study") or {}).get("name")
    return Experiment(
        name=experiment_name(study) if study and spec else None,
        stimulus_ids=frozenset(folder.stimuli["stimulus_id"].astype(str)),
        file_names=stimulus_file_names(folder.stimuli),
        scales=scales,
        label_keys={c.key: c.label for c in choices if c.key},
        catch_key=catch.key if catch is not None and catch.trials > 0 else None,
        trials_per_group=trials, stimulus_lists=lists)


def correct_labels(folder: BuildFolder) -> dict[str, str]:
    """stimulus_id -> the label that is correct for it: from the experiment's design when it
    has one, else the stimulus's emotion name (what a tidy CSV's labels are compared with)."""
    labels = {str(s): str(e) for s, e in zip(folder.stimuli["stimulus_id"],
                                             folder.stimuli["emotion"])}
    design = folder.design
    if design is not None and "correct_label" in design:
        labels.update({str(s): str(c) for s, c in zip(design["stim_id"], design["correct_label"])
                       if c != ""})
    return labels


# -- the computation ---------------------------------------------------------------------------------
def compute_norms(responses: pd.DataFrame, stimuli: pd.DataFrame,
                  scales: dict[str, tuple[float, float]],
                  correct: dict[str, str] | None = None,
                  lists: dict[str, int] | None = None) -> tuple[pd.DataFrame, dict]:
    """Per-stimulus norms and their reliability from rating responses.

    Each participant's ratings of a stimulus are averaged first (repetitions), then rescaled
    from the scale to [-1, 1] (``(x - mid) / half_range``) so that they compare with the
    targets and the model's ratings. Hit rates count a label as a hit when it names the
    same emotion as the stimulus's correct label (``circumplex.emotion_label_key``: case,
    separators and aliases ignored, so "disgusted" is a hit for "Disgust"); the
    per-stimulus unbiased hit rate is the stimulus's hit rate times the share of that
    label's uses that were correct over the whole set (Wagner 1993, applied to one stimulus).

    Parameters
    ----------
    responses : pandas.DataFrame
        One row per trial: ``participant``, ``stimulus_id``, ``valence``, ``arousal`` (raw
        scale values, NaN when missing), optional ``intensity`` and ``label``.
    stimuli : pandas.DataFrame
        The build's stimuli.tsv.
    scales : dict
        ``{"valence": (low, high), "arousal": (low, high)}``.
    correct : dict, optional
        stimulus_id -> correct label; needed for hit rates.
    lists : dict, optional
        stimulus_id -> its list, when each participant rated one list (``design.lists``):
        ICC is then computed per list. Without it, participants who rated the same set of
        stimuli form a list.

    Returns
    -------
    (norms, summary) : (pandas.DataFrame, dict)
        ``norms`` has the columns of build_folder.NORMS_COLUMNS (plus label and intensity
        columns when those were collected); ``summary`` the reliability and agreement figures.
    """
    r = responses.copy()
    for scale in ("valence", "arousal"):
        r[scale] = rescale(pd.to_numeric(r[scale], errors="coerce"), *scales[scale])
    has_intensity = "intensity" in r and pd.to_numeric(r["intensity"], errors="coerce").notna().any()
    per = r.groupby(["participant", "stimulus_id"], sort=True)[
        ["valence", "arousal"] + (["intensity"] if has_intensity else [])].mean()
    has_labels = "label" in r and r["label"].notna().any() and correct is not None
    hits = _label_hits(r, correct) if has_labels else None

    rows = []
    info = stimuli.set_index(stimuli["stimulus_id"].astype(str))
    rated = [s for s in info.index if s in set(per.index.get_level_values("stimulus_id"))]
    for sid in rated:
        mine = per.xs(sid, level="stimulus_id")
        stim = info.loc[sid]
        v = mean_ci(mine["valence"])
        a = mean_ci(mine["arousal"])
        row = {"stimulus_id": sid, "identity": stim["identity"], "emotion": stim["emotion"],
               "intensity": stim["intensity"], "target_valence": stim["target_valence"],
               "target_arousal": stim["target_arousal"],
               "n_raters": int(mine[["valence", "arousal"]].notna().any(axis=1).sum()),
               "valence_mean": v[0], "valence_sd": v[1], "valence_ci_low": v[2],
               "valence_ci_high": v[3], "arousal_mean": a[0], "arousal_sd": a[1],
               "arousal_ci_low": a[2], "arousal_ci_high": a[3],
               "distance_to_target": math.hypot(v[0] - stim["target_valence"],
                                                a[0] - stim["target_arousal"]),
               "model_rater": stim.get("rater", ""),
               "model_valence": stim["achieved_valence"], "model_arousal": stim["achieved_arousal"],
               "distance_to_model": math.hypot(v[0] - stim["achieved_valence"],
                                               a[0] - stim["achieved_arousal"]),
               NORMS_IMAGE_SHA256: str(stim.get("sha256", ""))}
        if hits is not None:
            row.update(hits.get(sid, {"hit_rate": math.nan, "unbiased_hit_rate": math.nan,
                                      "most_chosen_label": ""}))
        if has_intensity:
            _, sd_i = mean_ci(mine["intensity"])[:2]
            row.update(rated_intensity_mean=float(mine["intensity"].mean()),
                       rated_intensity_sd=sd_i)
        rows.append(row)
    columns = list(NORMS_COLUMNS) + [NORMS_IMAGE_SHA256] \
        + (list(NORMS_LABEL_COLUMNS) if hits is not None else []) \
        + (list(NORMS_INTENSITY_COLUMNS) if has_intensity else [])
    norms = pd.DataFrame(rows, columns=columns)
    summary = {
        "scales": {k: list(v) for k, v in scales.items()},
        "stimuli_rated": len(norms), "stimuli_in_build": int(len(stimuli)),
        "raters_per_stimulus": _range(norms["n_raters"]),
        "reliability": {scale: _reliability(per[scale].unstack("stimulus_id"), lists)
                        for scale in ("valence", "arousal")},
        "model_agreement": _model_agreement(norms),
        "by_emotion": _by_emotion(norms, r, correct if has_labels else None),
    }
    return norms, summary


def _label_hits(r: pd.DataFrame, correct: dict[str, str]) -> dict[str, dict]:
    labelled = r[r["label"].notna() & (r["label"].astype(str) != "")]
    truth = labelled["stimulus_id"].map(correct)
    key = emotion_label_key      # "disgusted" is a hit for a Disgust face
    chosen, presented = labelled["label"].astype(str).map(key), truth.astype(str).map(key)
    hit = chosen == presented
    precision = {c: float(hit[chosen == c].sum()) / int((chosen == c).sum())
                 for c in set(chosen)}
    out = {}
    for sid, idx in labelled.groupby("stimulus_id").groups.items():
        rate = float(hit.loc[idx].mean())
        label = presented.loc[idx].iloc[0]
        counts = labelled.loc[idx, "label"].astype(str).value_counts()
        out[sid] = {"hit_rate": rate, "unbiased_hit_rate": rate * precision.get(label, 0.0),
                    "most_chosen_label": str(counts.index[0])}
    return out


def _reliability(matrix: pd.DataFrame, lists: dict[str, int] | None = None) -> dict:
    """Krippendorff's alpha over every rating, and ICC(2,1)/ICC(2,k): over the whole matrix when
    every participant rated every stimulus, and per list (``by_list``) when the design has lists
    or the matrix is incomplete.

    ``matrix``: participants x stimuli, NaN where not rated; ``lists``: stimulus -> list.
    """
    values = matrix.to_numpy(dtype=float)
    result = {"krippendorff_alpha_interval": _finite(krippendorff_alpha_interval(values)),
              "icc2_1": None, "icc2_k": None, "raters": int(values.shape[0]),
              "stimuli": int(values.shape[1])}
    complete = values.shape[0] >= 2 and values.shape[1] >= 2 and not np.isnan(values).any()
    if complete:
        single, average = icc2(values.T)
        result.update(icc2_1=_finite(single), icc2_k=_finite(average))
    if lists or not complete:
        result["by_list"] = [_list_icc(name, matrix.loc[raters, stimuli])
                             for name, raters, stimuli in _lists_rated(matrix, lists)]
    if not complete:
        result["icc_note"] = ("ICC(2,1) and ICC(2,k) need every participant to rate every "
                              "stimulus: computed per list (by_list), over the participants "
                              "who rated that list's stimuli; Krippendorff's alpha uses every "
                              "rating")
    return result


def _lists_rated(matrix: pd.DataFrame, lists: dict[str, int] | None):
    """(list name, its participants, the stimuli all of them rated) of every list; a list is
    ``lists``' value shared by all the stimuli a participant rated, else the set of them."""
    rated = {p: frozenset(matrix.columns[matrix.loc[p].notna().to_numpy()]) for p in matrix.index}
    members: dict = {}
    for participant, stimuli in rated.items():
        if not stimuli:
            continue
        numbers = {lists.get(str(s)) for s in stimuli} if lists else {None}
        key = ("list", numbers.pop()) if len(numbers) == 1 and None not in numbers \
            else ("set", stimuli)
        members.setdefault(key, []).append(participant)
    found = []
    for n, ((kind, value), raters) in enumerate(sorted(
            members.items(), key=lambda kv: (kv[0][0], str(sorted(kv[0][1]))
                                             if kv[0][0] == "set" else str(kv[0][1])))):
        common = frozenset.intersection(*(rated[p] for p in raters))
        name = str(value) if kind == "list" else f"set {n + 1}"
        found.append((name, raters, [s for s in matrix.columns if s in common]))
    return found


def _list_icc(name: str, part: pd.DataFrame) -> dict:
    row = {"list": name, "raters": int(part.shape[0]), "stimuli": int(part.shape[1]),
           "icc2_1": None, "icc2_k": None}
    if part.shape[0] >= 2 and part.shape[1] >= 2:
        single, average = icc2(part.to_numpy(dtype=float).T)
        row.update(icc2_1=_finite(single), icc2_k=_finite(average))
    return row


def _by_emotion(norms: pd.DataFrame, r: pd.DataFrame, correct: dict | None) -> list[dict]:
    hu = None
    if correct is not None:
        labelled = r[r["label"].notna() & (r["label"].astype(str) != "")]
        truth = labelled["stimulus_id"].map(correct).astype(str)
        by_label = unbiased_hit_rates(truth.map(emotion_label_key),
                                      labelled["label"].astype(str).map(emotion_label_key))
        hu = {}
        for emotion, part in norms.groupby("emotion", sort=False):
            label = emotion_label_key(correct.get(str(part["stimulus_id"].iloc[0]), ""))
            hu[str(emotion)] = by_label.get(label, math.nan)
    return _emotion_rows(norms, hu)


# -- the command ----------------------------------------------------------------------------------
def norms_files(folder: BuildFolder, data, *, scale: tuple[float, float] | None = None,
                max_missed_checks: int = 0) -> tuple[dict[str, bytes], Responses]:
    """The norms of a build from data files: norms.tsv's and norms_summary.json's bytes.

    :func:`stimgen.finish.write_norms` writes them into the build folder (`stimgen norms`).

    Parameters
    ----------
    folder : BuildFolder
        A complete build folder, as :func:`stimgen.build_folder.read_build_folder` reads it.
    data : sequence of str or Path
        PsychoPy data CSVs (or folders of them) and/or tidy ratings CSVs; never modified.
    scale : (float, float), optional
        Raw valence and arousal scale (low, high); default: the protocol's sliders, else 1-9.
    max_missed_checks : int
        Participants who miss more attention checks than this are excluded.

    Returns
    -------
    (dict, Responses)
        {file name: bytes} of the two norms files, and what was read (warnings, exclusions).
    """
    experiment = experiment_of(folder, scale)
    responses = read_responses(data, experiment, max_missed_checks=max_missed_checks)
    norms, summary = compute_norms(responses.table, folder.stimuli, experiment.scales,
                                   correct_labels(folder), experiment.stimulus_lists)
    summary = {
        "participants": {"kept": len(responses.sessions), "excluded": len(responses.excluded),
                         "exclusions": responses.excluded, "sessions": responses.sessions},
        "data_files": responses.files,
        **summary,
        "warnings": responses.warnings,
    }
    return {NORMS_TSV: table_bytes(norms, "\t"), NORMS_SUMMARY_JSON: json_bytes(summary)}, responses
