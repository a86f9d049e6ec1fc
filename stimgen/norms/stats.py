"""The statistics of human norms: rescaling, mean with SD and t-based 95 % CI, Wagner's (1993)
unbiased hit rate, ICC(2,1)/ICC(2,k) and Krippendorff's alpha, as pure functions.

ICC is computed here from the two-way ANOVA mean squares (Shrout & Fleiss 1979, case 2), so that
stimgen does not depend on pingouin's statistics stack; tests check it against pingouin.
"""
from __future__ import annotations

import math

import numpy as np


def rescale(values, low: float, high: float) -> np.ndarray:
    """Ratings on a ``low``..``high`` scale mapped to [-1, 1]: ``(x - mid) / half_range``.

    Parameters
    ----------
    values : array_like
        Raw scale values.
    low, high : float
        The scale's ends (``high > low``).

    Examples
    --------
    >>> rescale([1, 5, 9], 1, 9).tolist()
    [-1.0, 0.0, 1.0]
    """
    if not high > low:
        raise ValueError(f"high ({high}) must be greater than low ({low})")
    mid, half = (low + high) / 2.0, (high - low) / 2.0
    return (np.asarray(values, dtype=float) - mid) / half


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, SD (ddof=1) and the t-based confidence interval of the mean.

    NaN values are ignored. With one value the SD and interval are NaN.

    Returns
    -------
    (mean, sd, ci_low, ci_high) : tuple of float

    Examples
    --------
    >>> [round(x, 4) for x in mean_ci([1.0, 2.0, 3.0])]
    [2.0, 1.0, -0.4841, 4.4841]
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    from scipy import stats as scipy_stats    # slow to import; builds never need it

    half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, x.size - 1)) * sd / math.sqrt(x.size)
    return mean, sd, mean - half, mean + half


def unbiased_hit_rates(presented, chosen) -> dict[str, float]:
    """Wagner's (1993) unbiased hit rate Hu per category, over a set of responses.

    ``Hu_c = hits_c ** 2 / (presented_c * chosen_c)``: the hit rate of category ``c`` times the
    share of ``c`` responses that were correct, so a rater who answers ``c`` to everything does
    not score high on ``c``. Categories never presented are left out; a presented category
    never chosen scores 0.

    Parameters
    ----------
    presented : sequence of str
        The correct category of each trial.
    chosen : sequence of str or None
        The response of each trial (any text, e.g. "none of these"; None = no response).

    Examples
    --------
    >>> unbiased_hit_rates(["a", "a", "b", "b"], ["a", "a", "a", "b"])
    {'a': 0.6666666666666666, 'b': 0.5}
    """
    presented, chosen = list(presented), list(chosen)
    if len(presented) != len(chosen):
        raise ValueError("presented and chosen must have the same length")
    rates = {}
    for category in dict.fromkeys(presented):
        n_presented = sum(p == category for p in presented)
        n_chosen = sum(c == category for c in chosen)
        hits = sum(p == category and c == category for p, c in zip(presented, chosen))
        rates[category] = hits ** 2 / (n_presented * n_chosen) if n_chosen else 0.0
    return rates


def icc2(ratings) -> tuple[float, float]:
    """ICC(2,1) and ICC(2,k): two-way random effects, absolute agreement (Shrout & Fleiss 1979).

    With ``n`` targets (rows) rated by the same ``k`` raters (columns) and the mean squares of
    the two-way ANOVA without replication (MSR rows, MSC columns, MSE residual)::

        ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)
        ICC(2,k) = (MSR - MSE) / (MSR + (MSC - MSE) / n)

    Parameters
    ----------
    ratings : array_like, shape (n_targets, k_raters)
        Complete: no missing value.

    Returns
    -------
    (icc2_1, icc2_k) : tuple of float
        NaN when every rating is the same.

    Examples
    --------
    >>> [round(v, 4) for v in icc2([[1, 2], [3, 4], [5, 7]])]
    [0.8333, 0.9091]
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be targets x raters with at least 2 of each, got "
                         f"shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("ratings must be complete (every rater rated every target)")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    single_denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    average_denominator = msr + (msc - mse) / n
    if single_denominator == 0 or average_denominator == 0:
        return math.nan, math.nan          # every rating the same: agreement is undefined
    return (float((msr - mse) / single_denominator), float((msr - mse) / average_denominator))


def krippendorff_alpha_interval(ratings) -> float:
    """Krippendorff's alpha for interval data (the ``krippendorff`` package).

    Parameters
    ----------
    ratings : array_like, shape (n_raters, n_units)
        One row per rater, NaN where a rater did not rate a unit; units rated by fewer than two
        raters carry no information and are ignored.

    Returns
    -------
    float
        NaN when no unit was rated twice or the ratings do not vary at all.

    Examples
    --------
    >>> round(krippendorff_alpha_interval([[1, 2, 3, np.nan], [1, 2, 4, 5]]), 4)
    0.878
    """
    import krippendorff

    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"ratings must be raters x units, got shape {x.shape}")
    paired = (~np.isnan(x)).sum(axis=0) >= 2
    x = x[:, paired]
    if x.shape[1] == 0 or np.nanmax(x) == np.nanmin(x):
        return math.nan
    return float(krippendorff.alpha(reliability_data=x, level_of_measurement="interval"))
