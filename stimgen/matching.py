"""Low-level image matching as the SHINE toolbox defines it (Willenbockel et al., 2010):
lumMatch, histMatch (exact histogram specification, arranged to keep each face's structure)
and specMatch, over a face region; and SSIM (Wang et al., 2004), which measures what
matching cost a face.

Pure numpy functions on grey-level images (``uint8`` arrays ``[H, W]``) and boolean regions
of the same shape; the build stage that applies them to a stimulus set is
:func:`stimgen.standardise.match_stage`. Written here rather than taken from the ``shinier``
package: see docs/standardise.md ("Why not shinier").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: Grey levels of an 8-bit image.
LEVELS = 256

#: Bump when any function here changes its output: it enters the cache key of the build's
#: matching stage (stimgen/standardise.py), so matched stimuli are redrawn.
MATCHING_VERSION = 3

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


# -- SSIM (Wang et al., 2004) ----------------------------------------------------------------------
#: SSIM's Gaussian window: sigma 1.5 pixels, truncated at 3.5 sigma (11 x 11), as Wang et al.
#: (2004) and scikit-image's ``gaussian_weights=True`` use; K1, K2 and the 8-bit range.
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)         # 5 pixels
SSIM_C1, SSIM_C2 = (0.01 * (LEVELS - 1)) ** 2, (0.03 * (LEVELS - 1)) ** 2


#: SSIM's window along one axis: the normalised Gaussian scipy's ``gaussian_filter1d`` uses.
_KERNEL = np.exp(-0.5 * np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) ** 2 / SSIM_SIGMA ** 2)
_KERNEL /= _KERNEL.sum()


def _window(values: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean (SSIM's window; edges mirrored, as scikit-image) of an
    image [H, W], or of each image of a stack [K, H, W]."""
    from scipy.ndimage import correlate1d

    smoothed = correlate1d(values, _KERNEL, axis=-2, mode="reflect")
    return correlate1d(smoothed, _KERNEL, axis=-1, mode="reflect")


def ssim_map(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The SSIM index of ``image`` against ``reference`` at every pixel (Wang et al., 2004).

    Grey-level images [H, W] on the 0-255 scale; local means, variances (population) and
    covariance in a Gaussian window (:data:`SSIM_SIGMA`), ``K1 = 0.01``, ``K2 = 0.03``; the
    same numbers as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255, full=True)``.

    >>> flat = np.full((16, 16), 100, np.uint8)
    >>> float(ssim_map(flat, flat).min())
    1.0
    """
    x, y = np.asarray(reference, np.float64), np.asarray(image, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"reference {x.shape} and image {y.shape} must be grey [H, W] of one size")
    return _ssim_terms(x, y, _window(x), None)[0]


def structural_similarity(reference: np.ndarray, image: np.ndarray,
                          region: np.ndarray | None = None) -> float:
    """Mean SSIM of ``image`` against ``reference`` over ``region`` (default: every pixel).

    What stimuli.tsv's ``ssim_unmatched`` reports: 1 for an unchanged face, lower the more
    matching changed its local luminance, contrast and structure.

    >>> rng = np.random.default_rng(0)
    >>> face = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    >>> structural_similarity(face, face)
    1.0
    >>> round(structural_similarity(face, 255 - face), 2) < 0
    True
    """
    if region is None:
        return float(ssim_map(reference, image).mean())
    region = np.asarray(region, bool)
    # the region's box and SSIM's window around it: the rest cannot change its values
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if len(rows) == 0:
        raise ValueError("region is empty: no pixel to average SSIM over")
    margin = SSIM_RADIUS + 1
    box = (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
           slice(max(columns[0] - margin, 0), columns[-1] + margin + 1))
    reference, image = np.asarray(reference), np.asarray(image)
    if reference.shape != image.shape or reference.shape != region.shape:
        raise ValueError(f"reference {reference.shape}, image {image.shape} and region "
                         f"{region.shape} must have one size")
    return float(ssim_map(reference[box], image[box])[region[box]].mean())


def _ssim_terms(x: np.ndarray, y: np.ndarray, mean_x: np.ndarray,
                variance_x: np.ndarray | None):
    """SSIM map of float images ``y`` against ``x`` and the terms its gradient needs
    (Avanaki 2009, eqs. 7-8): A1, A2, B1, B2 and the local means."""
    if variance_x is None:
        variance_x = _window(x * x) - mean_x * mean_x
    mean_y, mean_yy, mean_xy = _window(np.stack([y, y * y, x * y]))   # one call, three maps
    variance_y = mean_yy - mean_y * mean_y
    covariance = mean_xy - mean_x * mean_y
    a1, a2 = 2 * mean_x * mean_y + SSIM_C1, 2 * covariance + SSIM_C2
    b1, b2 = mean_x * mean_x + mean_y * mean_y + SSIM_C1, variance_x + variance_y + SSIM_C2
    return a1 * a2 / (b1 * b2), (a1, a2, b1, b2, mean_y)


class _SSIMObjective:
    """Mean SSIM over a region against a fixed reference, and its gradient with respect to
    every pixel of the image (Avanaki 2009, eqs. 7-8; the window is symmetric, so its
    adjoint is itself). In float32 by default: twice as fast as float64, and its rounding
    (about 1e-6 of SSIM) is far below what the optimisation resolves."""

    def __init__(self, reference: np.ndarray, region: np.ndarray, dtype=np.float32):
        self.dtype = dtype
        self.x = reference.astype(dtype)
        self.weights = (region / region.sum()).astype(dtype)
        self.mean_x = _window(self.x)
        self.variance_x = _window(self.x * self.x) - self.mean_x * self.mean_x

    def value(self, y: np.ndarray) -> float:
        """Mean SSIM over the region."""
        ssim = _ssim_terms(self.x, y.astype(self.dtype), self.mean_x, self.variance_x)[0]
        return float(np.sum(self.weights * ssim, dtype=np.float64))

    def __call__(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        """(mean SSIM over the region, d mean SSIM / d y)."""
        y = y.astype(self.dtype)
        ssim, (a1, a2, b1, b2, mean_y) = _ssim_terms(self.x, y, self.mean_x, self.variance_x)
        w, d = self.weights, b1 * b2
        gradient = 2 * (_window(w * a1 / d) * self.x - _window(w * ssim / b2) * y
                        + _window(w * (self.mean_x * (a2 - a1) - mean_y * (b2 - b1) * ssim) / d))
        return float(np.sum(w * ssim, dtype=np.float64)), gradient


# -- histMatch ----------------------------------------------------------------------------------
def region_histogram(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The fraction of the region's pixels at each of the 256 grey levels.

    >>> region_histogram(np.array([[0, 0], [255, 3]], np.uint8), np.ones((2, 2), bool))[[0, 3, 255]]
    array([0.5 , 0.25, 0.25])
    """
    counts = np.bincount(image[region].ravel(), minlength=LEVELS).astype(np.float64)
    return counts / counts.sum()


#: Projected SSIM-gradient steps of exact histogram specification (Avanaki, 2009) by default:
#: protocol ``output.match_ssim_iterations``. On schematic faces ten steps raise the mean SSIM
#: by about 0.003 over the best ordering alone, for three times the time (docs/standardise.md).
SSIM_ITERATIONS = 0
#: First step of the SSIM ascent, in grey levels per unit of the gradient of the region's
#: summed SSIM; x1.3 after a step that raised SSIM, halved (and undone) after one that did not.
SSIM_STEP, SSIM_STEP_UP, SSIM_STEP_DOWN = 100.0, 1.3, 0.5
#: Regions of at least this many pixels choose their tie order on every other row and column
#: (a quarter of the work; the same order as at full size for most faces, and within 0.001
#: of its SSIM otherwise).
HALF_SIZE_CHOICE = 16_384

#: Slopes of the sweeps that order a grey level's pixels (:func:`tie_order`): bands across
#: the face bent into chevrons, ``row +/- slope * |column - midline|``, each from the top and
#: from the bottom; ``None`` stands for bands parallel to the midline (from it, or to it).
SWEEP_SLOPES = (0.0, 0.5, 1.0, 2.0, None)


def _sweep_names() -> tuple[str, ...]:
    names = []
    for slope in SWEEP_SLOPES:
        for direction in ("down", "up"):
            if slope is None:
                names.append(f"{direction}_midline")
            elif slope == 0:
                names.append(f"{direction}_0")
            else:
                names += [f"{direction}_+{slope:g}", f"{direction}_-{slope:g}"]
    return tuple(names)


#: Every tie order, in the order they are tried (the first wins a tie in SSIM).
TIE_ORDERS = (*_sweep_names(), "neighbourhood")


def tie_order(image: np.ndarray, name: str, region: np.ndarray | None = None) -> np.ndarray:
    """One way to order the pixels of a grey level (ties): a secondary key of
    :func:`exact_order`, a float array [H, W] (lower comes first); ``name`` is one of
    :data:`TIE_ORDERS`.

    Sweeps (:data:`SWEEP_SLOPES`; ``down_0``: top to bottom, ``up_+1``: from the bottom,
    bent 45 degrees) give the pixels of a flat area the target's levels in a few large
    blocks with short boundaries, the arrangement that changes its local structure least;
    every sweep is mirror-symmetric about the face's vertical midline (the mean column of
    ``region``), so the two halves of a symmetric face stay equally bright (a lateral
    difference would be a confound in studies of visual hemifields). Within 1/16 pixel of
    one sweep line, pixels are taken row by row. ``neighbourhood`` orders by the sum of the
    3 x 3, then the 5 x 5 neighbourhood (Coltuc, Bolon & Chassery, 2006, as SHINE's
    histMatch does), then by row, which suits textured (photographic) faces.

    >>> tie_order(np.zeros((2, 3), np.uint8), "down_0").tolist()
    [[0.0, 1.0, 2.0], [99.0, 100.0, 101.0]]
    >>> len(TIE_ORDERS)
    17
    """
    if name not in TIE_ORDERS:
        raise ValueError(f"tie order {name!r}: expected one of {', '.join(TIE_ORDERS)}")
    return _TieKeys(image, region)(name)


class _TieKeys:
    """The keys of :func:`tie_order` for one image, sharing the pixel grid between them."""

    def __init__(self, image: np.ndarray, region: np.ndarray | None):
        self.image = image
        height, width = image.shape
        self.rows, columns = np.indices((height, width), dtype=np.float64)
        self.raster = self.rows * width + columns
        self.pixels = float(height * width)
        midline = (width - 1) / 2 if region is None else float(np.nonzero(region)[1].mean())
        self.aside = np.abs(columns - midline)

    def __call__(self, name: str) -> np.ndarray:
        if name == "neighbourhood":
            # one exact key from three: 3 x 3 sums (< 2296), 5 x 5 sums (< 6376), then row
            nine, twenty_five = (_neighbourhood_sum(self.image, r) for r in (1, 2))
            return (nine * 6400.0 + twenty_five) * self.pixels + self.raster
        direction, slope = name.split("_")
        sign = 1.0 if direction == "down" else -1.0
        lines = (sign * self.aside if slope == "midline"
                 else sign * self.rows + float(slope) * self.aside)
        lines = np.floor(lines * 16 + 1e-9)
        return (lines - lines.min()) * self.pixels + self.raster


def _neighbourhood_sum(image: np.ndarray, radius: int) -> np.ndarray:
    """Sum of the (2r+1)^2 grey levels around every pixel (edges replicated), exact, float64."""
    from scipy.ndimage import uniform_filter

    size = 2 * radius + 1
    return np.round(uniform_filter(image.astype(np.float64), size=size, mode="nearest")
                    * size * size)


def exact_order(image: np.ndarray, region: np.ndarray, ties: np.ndarray | None = None
                ) -> np.ndarray:
    """The region's pixels (flat indices) from darkest to brightest, equal grey levels in the
    order of ``ties`` (a key per pixel, see :func:`tie_order`; default: row by row).

    >>> exact_order(np.array([[5, 1], [5, 0]], np.uint8), np.ones((2, 2), bool)).tolist()
    [3, 1, 0, 2]
    """
    flat = np.flatnonzero(region)
    if ties is None:
        return flat[np.argsort(np.asarray(image).ravel()[flat], kind="stable")]
    return flat[np.lexsort((np.asarray(ties).ravel()[flat], np.asarray(image).ravel()[flat]))]


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
                    target: np.ndarray | None = None, *,
                    iterations: int = SSIM_ITERATIONS) -> list[np.ndarray]:
    """SHINE's histMatch: every region gets exactly the target histogram (up to whole pixels),
    arranged to keep each face's structure (:func:`specify_histogram`).

    The target defaults to the average of the regions' normalised histograms (SHINE averages
    the images' histograms; with regions of different sizes, fractions keep each image's
    weight equal). Pixels outside the regions are kept.

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
    return [specify_histogram(image, region, target, iterations=iterations)
            for image, region in zip(images, regions)]


def specify_histogram(image: np.ndarray, region: np.ndarray, target: np.ndarray, *,
                      iterations: int = SSIM_ITERATIONS) -> np.ndarray:
    """Exact histogram specification of one image's region, optimised for structural
    similarity to the image: the region gets exactly ``target``'s grey levels (up to whole
    pixels, :func:`specified_counts`) and keeps as much of its look as they allow.

    The region's pixels are ranked by grey level and the k-th gets the k-th level of the
    target, so a darker pixel never ends brighter (a monotone remapping, as in Coltuc, Bolon &
    Chassery, 2006). What is left to choose is the order of the pixels of one grey level, and
    on faces with large flat areas that choice is everything:

    1. Each of :data:`TIE_ORDERS` (:func:`tie_order`) is tried and the one whose result has
       the highest SSIM to the image (:func:`structural_similarity` over the region) is kept;
       regions of :data:`HALF_SIZE_CHOICE` pixels or more are compared on every other row and
       column. Sweeps give a flat area its new levels in a few large blocks; ties broken at
       random (SHINE's noise option) would turn it into fine grain, which SSIM and the eye
       both punish.
    2. ``iterations`` times, the image steps up the SSIM gradient and is specified again,
       each grey level's pixels now ranked by the stepped values (Avanaki 2009's
       SSIM-optimised specification, ``Y <- spec(Y + step * grad SSIM(X, Y))``, kept
       monotone): a step that does not raise SSIM is undone and the step halved, one that
       does lengthens it by 1.3. The result with the highest SSIM is returned.

    Nothing is random: the same image, region and target give the same bytes.

    Parameters
    ----------
    image : uint8 array [H, W]
    region : bool array [H, W]
        The pixels to specify; the others are kept.
    target : array [256]
        The histogram to give them (counts or fractions).
    iterations : int
        SSIM-gradient steps after the best ordering (default :data:`SSIM_ITERATIONS`).

    Returns
    -------
    uint8 array [H, W]

    Examples
    --------
    A flat area given two levels keeps two flat blocks, not salt and pepper:

    >>> flat = np.full((12, 12), 120, np.uint8)
    >>> target = np.zeros(256); target[[100, 140]] = 0.5
    >>> matched = specify_histogram(flat, np.ones((12, 12), bool), target, iterations=10)
    >>> np.bincount(matched.ravel(), minlength=256)[[100, 140]].tolist()
    [72, 72]
    >>> steps = [int((np.diff(matched.astype(int), axis=a) != 0).sum()) for a in (0, 1)]
    >>> sorted(steps)                                  # one straight boundary, 12 pixels long
    [0, 12]
    """
    if not 0 <= int(iterations) <= 1000:
        raise ValueError(f"iterations must be within 0-1000, got {iterations}")
    _check([image], [region])
    # everything within SSIM's window of the region: the rest cannot change its SSIM
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    margin = SSIM_RADIUS + 1
    box = (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
           slice(max(columns[0] - margin, 0), columns[-1] + margin + 1))
    face, inside = image[box], region[box]
    target = np.asarray(target, float)
    name = _best_tie_order(*((face[::2, ::2], inside[::2, ::2])
                             if inside.sum() >= HALF_SIZE_CHOICE else (face, inside)), target)
    specify = _Specification(face, inside, target)
    key = tie_order(face, name, inside)
    matched = specify(specify.by_grey_then_key(key))
    if iterations:
        matched = _ssim_steps(specify, matched, specify.by_key(key), int(iterations))
    out = image.copy()
    out[box] = matched.astype(np.uint8)
    return out


class _Specification:
    """Exact specification of one region: the target's levels given to its pixels in a rank
    order (:meth:`ranked`)."""

    def __init__(self, face: np.ndarray, inside: np.ndarray, target: np.ndarray):
        self.face, self.inside = face, inside
        self.flat = np.flatnonzero(inside)
        self.grey = face.ravel()[self.flat]               # uint8: numpy sorts it by radix
        self.levels = np.repeat(np.arange(LEVELS, dtype=np.float64),
                                specified_counts(target, len(self.flat)))
        self.unmatched = face.astype(np.float64)

    def by_key(self, key: np.ndarray) -> np.ndarray:
        """The region's pixels (positions in ``flat``) sorted by a tie key."""
        return np.argsort(key.ravel()[self.flat], kind="stable")

    def by_grey_then_key(self, key: np.ndarray) -> np.ndarray:
        """Region pixels by grey level, then by a tie key of distinct whole numbers (those of
        :func:`tie_order`): :meth:`ranked` without values, in one sort when the two keys
        fit one float exactly."""
        key = key.ravel()[self.flat]
        span = float(key.max()) + 1.0
        if span * LEVELS >= 2.0 ** 53:            # images of many megapixels
            return self.ranked(None, np.argsort(key, kind="stable"))
        return np.argsort(self.grey * span + key)

    def ranked(self, values: np.ndarray | None, by_ties: np.ndarray) -> np.ndarray:
        """Region pixels by grey level (a darker pixel never ends brighter), then by
        ``values`` (if given), then in the tie order ``by_ties``: stable sorts, last key first."""
        order = by_ties
        if values is not None:
            order = order[np.argsort(values.ravel()[self.flat][order], kind="stable")]
        return order[np.argsort(self.grey[order], kind="stable")]

    def __call__(self, order: np.ndarray) -> np.ndarray:
        """The face with the k-th pixel of ``order`` at the k-th level of the target."""
        result = self.unmatched.copy().ravel()
        result[self.flat[order]] = self.levels
        return result.reshape(self.face.shape)


def _best_tie_order(face: np.ndarray, inside: np.ndarray, target: np.ndarray) -> str:
    """The name of the :data:`TIE_ORDERS` whose specification of ``face`` has the highest
    SSIM to it (the first of equals)."""
    specify = _Specification(face, inside, target)
    objective = _SSIMObjective(face, inside)
    keys = _TieKeys(face, inside)
    scores = [objective.value(specify(specify.by_grey_then_key(keys(name))))
              for name in TIE_ORDERS]
    return TIE_ORDERS[int(np.argmax(scores))]


def _ssim_steps(specify: _Specification, matched: np.ndarray, by_ties: np.ndarray,
                iterations: int) -> np.ndarray:
    """Avanaki's projected SSIM ascent from ``matched``, ranks kept within grey levels."""
    objective = _SSIMObjective(specify.face, specify.inside)
    best = current = (*objective(matched), matched)
    step, pixels = SSIM_STEP, float(len(specify.flat))
    for _ in range(iterations):
        proposal = specify(specify.ranked(current[2] + step * pixels * current[1], by_ties))
        ssim, gradient = objective(proposal)
        if ssim > best[0]:
            best = current = (ssim, gradient, proposal)
            step *= SSIM_STEP_UP
        else:                                    # undo, and try a shorter step
            current = best
            step *= SSIM_STEP_DOWN
    return best[2]


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
