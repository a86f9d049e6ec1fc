"""Accuracy of achieved expressions: the published EmoStyle evaluation metrics and aggregates.

Per stimulus: direction, magnitude, valence, arousal and distance errors (absolute values).
Per group (emotion/angle, intensity): mean and SD of each, plus CCC, SAGR and RMSE.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stimgen.circumplex import va_to_angle, wrap_angle_difference

ERROR_COLUMNS = ("direction_error", "magnitude_error", "valence_error", "arousal_error",
                 "distance_error")

#: Aggregate columns; the MAE/SD names equal those of the published anchor table.
AGGREGATE_COLUMNS = (
    "dir_mae_deg", "dir_sd_deg", "mag_mae", "mag_sd", "val_mae", "val_sd", "aro_mae", "aro_sd",
    "dist_mae", "dist_sd", "ccc_valence", "ccc_arousal", "sagr_valence", "sagr_arousal",
    "rmse_valence", "rmse_arousal",
)
_MAE_SOURCES = (("dir", "direction_error", "_deg"), ("mag", "magnitude_error", ""),
                ("val", "valence_error", ""), ("aro", "arousal_error", ""),
                ("dist", "distance_error", ""))


def stimulus_errors(target_valence, target_arousal, achieved_valence, achieved_arousal):
    """The five per-stimulus errors of the EmoStyle evaluation protocol.

    Parameters
    ----------
    target_valence, target_arousal, achieved_valence, achieved_arousal : array_like
        Target and achieved coordinates, each in [-1, 1].

    Returns
    -------
    dict of numpy.ndarray
        ``direction_error`` (degrees in [0, 180]; NaN where the target has no direction,
        i.e. a neutral target), ``magnitude_error`` = | ||t|| - ||a|| |, ``valence_error``,
        ``arousal_error`` (absolute differences) and ``distance_error`` = ||t - a||.

    Examples
    --------
    >>> e = stimulus_errors([1.0], [0.0], [0.0], [1.0])
    >>> float(e["direction_error"][0]), round(float(e["distance_error"][0]), 4)
    (90.0, 1.4142)
    """
    tv, ta, av, aa = (np.atleast_1d(np.asarray(x, dtype=float)) for x in
                      (target_valence, target_arousal, achieved_valence, achieved_arousal))
    if not (tv.shape == ta.shape == av.shape == aa.shape):
        raise ValueError("target and achieved coordinates must have the same shape")
    target_angle, target_norm = va_to_angle(tv, ta)
    achieved_angle, achieved_norm = va_to_angle(av, aa)
    direction = np.where(np.asarray(target_norm) > 1e-12,
                         wrap_angle_difference(achieved_angle, target_angle), np.nan)
    return {
        "direction_error": np.atleast_1d(direction).astype(float),
        "magnitude_error": np.abs(np.asarray(target_norm) - np.asarray(achieved_norm)),
        "valence_error": np.abs(tv - av),
        "arousal_error": np.abs(ta - aa),
        "distance_error": np.hypot(tv - av, ta - aa),
    }


def ccc(target, achieved) -> float:
    """Lin's concordance correlation coefficient of achieved with target values.

    ``2 cov(t, a) / (var t + var a + (mean t - mean a)^2)``, population moments. NaN (undefined)
    for fewer than two values and when the targets do not vary (a neutral or intensity-0 group,
    or one target repeated): the formula then reads 0 however close the achieved values are,
    because, like Pearson's r, CCC measures how the two vary together.

    >>> ccc([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    1.0
    >>> ccc([0.0, 0.0, 0.0], [0.01, -0.02, 0.0])
    nan
    """
    t, a = np.asarray(target, dtype=float), np.asarray(achieved, dtype=float)
    if t.size < 2 or np.ptp(t) == 0.0:
        return float("nan")
    mt, ma = t.mean(), a.mean()
    denominator = t.var() + a.var() + (mt - ma) ** 2
    return float(2.0 * np.mean((t - mt) * (a - ma)) / denominator)


def sagr(target, achieved) -> float:
    """Sign agreement: fraction of stimuli whose achieved value has the target's sign.

    Zero counts as its own sign, so a zero target (on an axis) agrees only with an exactly
    zero value. NaN (undefined) when every target is zero (a neutral or intensity-0 group):
    there is no sign to agree with.

    >>> sagr([0.5, -0.5, 0.2], [0.1, 0.3, 0.4])
    0.6666666666666666
    >>> sagr([0.0, 0.0], [0.1, -0.1])
    nan
    """
    t, a = np.asarray(target, dtype=float), np.asarray(achieved, dtype=float)
    if t.size == 0 or not np.any(t != 0.0):
        return float("nan")
    return float(np.mean(np.sign(t) == np.sign(a)))


def rmse(target, achieved) -> float:
    """Root mean squared error.

    >>> rmse([0.0, 0.0], [0.3, -0.4])
    0.3535533905932738
    """
    t, a = np.asarray(target, dtype=float), np.asarray(achieved, dtype=float)
    if t.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((t - a) ** 2)))


def summarise(rows: pd.DataFrame) -> dict[str, float]:
    """Aggregate figures over a set of stimuli (rows with the stimuli.tsv columns).

    MAE is the mean of the absolute per-stimulus errors and SD their population standard
    deviation (ddof=0), as in the published table; NaN direction errors (neutral) are skipped.
    CCC and SAGR are NaN where undefined (see :func:`ccc` and :func:`sagr`): the tables
    leave those cells empty and the report shows an en dash.
    """
    out: dict[str, float] = {"n": int(len(rows))}
    for short, column, unit in _MAE_SOURCES:
        values = rows[column].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        out[f"{short}_mae{unit}"] = float(values.mean()) if values.size else float("nan")
        out[f"{short}_sd{unit}"] = float(values.std()) if values.size else float("nan")
    for dim in ("valence", "arousal"):
        t, a = rows[f"target_{dim}"], rows[f"achieved_{dim}"]
        out[f"ccc_{dim}"] = ccc(t, a)
        out[f"sagr_{dim}"] = sagr(t, a)
        out[f"rmse_{dim}"] = rmse(t, a)
    return out


def metrics_by_emotion(stimuli: pd.DataFrame) -> pd.DataFrame:
    """One row per emotion/angle group, sorted by angle, neutral last (metrics_by_emotion.csv)."""
    records = []
    directional = stimuli[stimuli["target_kind"] != "neutral"]
    for (emotion, angle), rows in directional.groupby(["emotion", "angle"], sort=False,
                                                      dropna=False):
        records.append({"emotion": emotion, "angle": angle, **summarise(rows),
                        "weak_region": bool(rows["weak_region"].all())})
    records.sort(key=lambda r: (bool(np.isnan(r["angle"])), np.nan_to_num(r["angle"]),
                                str(r["emotion"])))
    neutral = stimuli[stimuli["target_kind"] == "neutral"]
    if len(neutral):
        records.append({"emotion": "neutral", "angle": np.nan, **summarise(neutral),
                        "weak_region": False})
    columns = ["emotion", "angle", "n", *AGGREGATE_COLUMNS, "weak_region"]
    return pd.DataFrame.from_records(records, columns=columns)


def metrics_by_intensity(stimuli: pd.DataFrame) -> pd.DataFrame:
    """One row per target intensity, ascending (metrics_by_intensity.csv); neutral is 0."""
    records = [{"intensity": intensity, **summarise(rows)}
               for intensity, rows in stimuli.groupby("intensity", sort=True)]
    return pd.DataFrame.from_records(records, columns=["intensity", "n", *AGGREGATE_COLUMNS])


def overall(stimuli: pd.DataFrame) -> dict[str, float]:
    """The aggregate figures over every stimulus (shown in the report summary)."""
    return summarise(stimuli)
