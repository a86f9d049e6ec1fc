"""Low-level image matching as the SHINE toolbox defines it (Willenbockel et al., 2010):
lumMatch, histMatch (exact histogram specification) and specMatch, over a face region.

Pure numpy functions on grey-level images (``uint8`` arrays ``[H, W]``) and boolean regions
of the same shape; the build stage that applies them to a stimulus set is
:func:`stimgen.standardise.match_stage`. Written here rather than taken from the ``shinier``
package: see docs/standardise.md ("Why not shinier").
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

#: Grey levels of an 8-bit image.
LEVELS = 256

#: Bump when any function here changes its output: it enters the cache key of the build's
#: matching stage (stimgen/standardise.py), so matched stimuli are redrawn.
MATCHING_VERSION = 2

#: The methods of protocol ``output.match`` (``none`` aside), in SHINE's names.
METHODS = ("luminance", "histogram", "spectrum", "histogram+spectrum")


def _check(images: Sequence[np.ndarray], regions: Sequence[np.ndarray]) -> None:
    if len(images) == 0:
        raise ValueError("images: at least one image is needed to match")
    if len(images) != len(regions):
        raise ValueError(f"images ({len(images)}) and regions ({len(regions)}) differ in number")
    for index, (image, region) in enumerate(zip(images, regions)):
        if image.ndim != 2 or image.shape != region.shape:
            raise ValueError(f"images[{index}] {image.shape} must be [H, W] and match its "
                             f"region {region.shape}")
        if not region.any():
            raise ValueError(f"regions[{index}] is empty: nothing to match")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, LEVELS - 1).astype(np.uint8)


# -- lumMatch -----------------------------------------------------------------------------------
def luminance_match(images: Sequence[np.ndarray], regions: Sequence[np.ndarray],
                    target: tuple[float, float] | None = None) -> list[np.ndarray]:
    """SHINE's lumMatch: every image's region gets the same mean and standard deviation.

    Inside each region, ``(x - mean) / sd * target_sd + target_mean``; outside, pixels are
    kept. The target defaults to the average of the images' means and of their SDs (SHINE's
    default). SDs are population SDs (ddof=0), as stimuli.tsv's ``rms_contrast``. The result
    is rounded and clipped to 0..255, so the match is exact up to that rounding.

    Parameters
    ----------
    images : sequence of uint8 arrays [H, W]
    regions : sequence of bool arrays [H, W]
        The pixels that count (the face inside the oval mask, or the whole image).
    target : (mean, sd), optional
        Grey levels 0..255.

    Returns
    -------
    list of uint8 arrays [H, W]

    Examples
    --------
    >>> a = np.array([[10, 20], [30, 40]], dtype=np.uint8)
    >>> b = np.array([[100, 110], [120, 130]], dtype=np.uint8)
    >>> everywhere = np.ones((2, 2), bool)
    >>> out = luminance_match([a, b], [everywhere, everywhere])
    >>> [float(o.mean()) for o in out]
    [70.0, 70.0]
    """
    _check(images, regions)
    stats = [(float(im[r].mean()), float(im[r].std())) for im, r in zip(images, regions)]
    if target is None:
        target = luminance_target(images, regions)
    mean, sd = target
    out = []
    for image, region, (m, s) in zip(images, regions, stats):
        values = image.astype(np.float64)
        scaled = (values[region] - m) / s * sd + mean if s > 0 else np.full(region.sum(), mean)
        values[region] = scaled
        out.append(_to_uint8(values))
    return out


def luminance_target(images: Sequence[np.ndarray], regions: Sequence[np.ndarray]
                     ) -> tuple[float, float]:
    """SHINE's default lumMatch target: the mean of the regions' means and of their SDs.

    >>> luminance_target([np.array([[0, 10]], np.uint8)], [np.ones((1, 2), bool)])
    (5.0, 5.0)
    """
    _check(images, regions)
    stats = np.array([(im[r].mean(), im[r].std()) for im, r in zip(images, regions)])
    return float(stats[:, 0].mean()), float(stats[:, 1].mean())


# -- histMatch ----------------------------------------------------------------------------------
def region_histogram(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The fraction of the region's pixels at each of the 256 grey levels.

    >>> region_histogram(np.array([[0, 0], [255, 3]], np.uint8), np.ones((2, 2), bool))[[0, 3, 255]]
    array([0.5 , 0.25, 0.25])
    """
    counts = np.bincount(image[region].ravel(), minlength=LEVELS).astype(np.float64)
    return counts / counts.sum()


def _local_means(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the (2r+1)^2 neighbourhood of every pixel (edges replicated)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(image.astype(np.float32), size=2 * radius + 1, mode="nearest")


def exact_order(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The region's pixels (flat indices) from darkest to brightest, ties broken as in
    Coltuc, Bolon & Chassery (2006), which SHINE's histMatch uses: by the mean of the 3x3,
    then the 5x5 neighbourhood; pixels still tied (flat areas) by a fixed pseudo-random order.

    The last key is what SHINE's noise option does, but seeded, so the order is deterministic:
    breaking the remaining ties by position instead would give a flat cheek its darkest levels
    in its top rows and its brightest in its bottom rows, a visible band.

    >>> exact_order(np.array([[5, 1], [5, 0]], np.uint8), np.ones((2, 2), bool)).tolist()
    [3, 1, 2, 0]
    """
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    top, bottom = max(rows[0] - 2, 0), rows[-1] + 3        # the region's box, 2 px around
    left, right = max(columns[0] - 2, 0), columns[-1] + 3
    box = image[top:bottom, left:right]
    inside = region[top:bottom, left:right]
    flat = np.flatnonzero(region)
    keys = (_tie_breaker(image.size)[flat], _local_means(box, 2)[inside],
            _local_means(box, 1)[inside], image.ravel()[flat])
    return flat[np.lexsort(keys)]


@lru_cache(maxsize=4)
def _tie_breaker(size: int) -> np.ndarray:
    """A fixed pseudo-random rank for each of ``size`` pixel positions (seed 0)."""
    ranks = np.random.default_rng(0).permutation(size)
    ranks.setflags(write=False)
    return ranks


def specified_counts(histogram: np.ndarray, n_pixels: int) -> np.ndarray:
    """Integer pixel counts per grey level for ``n_pixels`` that follow ``histogram``
    (fractions) as closely as whole pixels allow: the rounded cumulative distribution.

    >>> specified_counts(np.array([0.5, 0.25, 0.25]), 6).tolist()
    [3, 2, 1]
    """
    # halves round up (np.round would round them to even: the counts would zigzag)
    cumulative = np.floor(np.cumsum(histogram) / histogram.sum() * n_pixels + 0.5).astype(np.int64)
    return np.diff(np.concatenate([[0], cumulative]))


def histogram_target(images: Sequence[np.ndarray], regions: Sequence[np.ndarray]) -> np.ndarray:
    """SHINE's histMatch target: the average of the regions' histograms, each normalised to
    fractions so that every image weighs the same whatever its region's size."""
    _check(images, regions)
    return np.mean([region_histogram(im, r) for im, r in zip(images, regions)], axis=0)


def histogram_match(images: Sequence[np.ndarray], regions: Sequence[np.ndarray],
                    target: np.ndarray | None = None) -> list[np.ndarray]:
    """SHINE's histMatch: every region gets exactly the target histogram (up to whole pixels).

    The target defaults to the average of the regions' normalised histograms (SHINE averages
    the images' histograms; with regions of different sizes, fractions keep each image's
    weight equal). Each region's pixels are ranked (:func:`exact_order`) and the k-th darkest
    gets the k-th grey level of the target, so the output histogram is the target's exactly,
    up to one pixel per grey level of rounding. Pixels outside the region are kept.

    Examples
    --------
    >>> a = np.array([[0, 50], [100, 150]], dtype=np.uint8)
    >>> b = np.array([[10, 10], [200, 250]], dtype=np.uint8)
    >>> everywhere = np.ones((2, 2), bool)
    >>> out = histogram_match([a, b], [everywhere, everywhere])
    >>> np.array_equal(np.sort(out[0].ravel()), np.sort(out[1].ravel()))
    True
    """
    _check(images, regions)
    if target is None:
        target = histogram_target(images, regions)
    out = []
    for image, region in zip(images, regions):
        order = exact_order(image, region)
        levels = np.repeat(np.arange(LEVELS, dtype=np.uint8),
                           specified_counts(np.asarray(target, float), len(order)))
        matched = image.copy().ravel()
        matched[order] = levels
        out.append(matched.reshape(image.shape))
    return out


# -- specMatch ----------------------------------------------------------------------------------
def spectrum_match(images: Sequence[np.ndarray], target: np.ndarray | None = None
                   ) -> list[np.ndarray]:
    """SHINE's specMatch: every image gets the same Fourier amplitude spectrum, keeping its
    own phase.

    As in SHINE, the spectrum is the whole image's (a Fourier transform needs the full
    rectangle); the target defaults to the average amplitude spectrum. The inverse transform
    is rounded and clipped to 0..255. Images must share one size; ``target`` is the full
    ``[H, W]`` amplitude spectrum (as ``np.abs(np.fft.fft2(image))``) or its rfft2 half.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = (rng.integers(60, 200, (8, 8)).astype(np.uint8) for _ in range(2))
    >>> out = spectrum_match([a, b])
    >>> amplitude = [np.abs(np.fft.fft2(o.astype(float))) for o in out]
    >>> bool(np.abs(amplitude[0] - amplitude[1]).mean() < 0.05 * amplitude[0].mean())
    True
    """
    if len(images) == 0:
        raise ValueError("images: at least one image is needed to match")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"images: spectrum matching needs one image size, got {sorted(shapes)}")
    # real images: the half spectrum (rfft2) holds all of it; one image's spectrum at a time,
    # so that a set of hundreds of large images never sits in memory as complex arrays
    shape = images[0].shape
    if target is None:
        target = np.zeros((shape[0], shape[1] // 2 + 1))
        for image in images:
            target += np.abs(np.fft.rfft2(image.astype(np.float64)))
        target /= len(images)
    elif target.shape == shape:
        target = target[:, :shape[1] // 2 + 1]
    out = []
    for image in images:
        phase = np.angle(np.fft.rfft2(image.astype(np.float64)))
        out.append(_to_uint8(np.fft.irfft2(target * np.exp(1j * phase), s=shape)))
    return out


def match_images(images: Sequence[np.ndarray], regions: Sequence[np.ndarray], method: str
                 ) -> list[np.ndarray]:
    """Apply protocol ``output.match`` ``method`` to one group of images (a set or an identity).

    ``histogram+spectrum`` matches the spectrum first, then the histogram, so that the
    histograms (and with them mean luminance and contrast) end exact; SHINE's combined modes
    iterate the same two steps (the build's stage runs them twice, stimgen/standardise.py).
    """
    if method == "luminance":
        return luminance_match(images, regions)
    if method == "histogram":
        return histogram_match(images, regions)
    if method == "spectrum":
        return spectrum_match(images)
    if method == "histogram+spectrum":
        return histogram_match(spectrum_match(images), regions)
    raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
