"""stimgen/matching.py against SHINE's definitions (Willenbockel et al., 2010): lumMatch gives
every region the mean mean and mean SD, histMatch the average histogram exactly (by rank
ordering), specMatch the average amplitude spectrum with each image's own phase."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stimgen.matching import (exact_order, histogram_match, luminance_match, match_images,
                              region_histogram, specified_counts, specify_histogram,
                              spectrum_match, ssim_map, structural_similarity, tie_order)


def faces(seed: int, n: int = 4, size: int = 32):
    """Grey images with different brightness and contrast, and oval-ish regions of
    different sizes (as identities' masks are)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    images, regions = [], []
    for index in range(n):
        base = rng.normal(80 + 30 * index, 10 + 8 * index, (size, size))
        images.append(np.clip(base, 0, 255).astype(np.uint8))
        radius = size * (0.3 + 0.04 * index)
        regions.append((x - size / 2) ** 2 + (y - size / 2) ** 2 < radius ** 2)
    return images, regions


def test_luminance_match_gives_every_region_the_average_mean_and_sd():
    images, regions = faces(0)
    means = [im[r].mean() for im, r in zip(images, regions)]
    sds = [im[r].std() for im, r in zip(images, regions)]
    out = luminance_match(images, regions)
    for image, region, matched in zip(images, regions, out):
        assert abs(matched[region].mean() - np.mean(means)) < 0.5       # rounding to levels
        assert abs(matched[region].std() - np.mean(sds)) < 0.5
        assert np.array_equal(matched[~region], image[~region])          # outside kept


def test_luminance_match_to_a_given_target():
    images, regions = faces(1)
    out = luminance_match(images, regions, target=(100.0, 20.0))
    assert all(abs(o[r].mean() - 100) < 0.5 and abs(o[r].std() - 20) < 0.5
               for o, r in zip(out, regions))


def test_histogram_match_is_exact_up_to_whole_pixels():
    images, regions = faces(2)
    target = np.mean([region_histogram(im, r) for im, r in zip(images, regions)], axis=0)
    out = histogram_match(images, regions)
    for image, region, matched in zip(images, regions, out):
        counts = np.bincount(matched[region], minlength=256)
        assert np.array_equal(counts, specified_counts(target, int(region.sum())))
        # each level's share is the target's to within one pixel (of rounding)
        assert np.abs(counts / region.sum() - target).max() <= 1.0 / region.sum() + 1e-12
        assert np.array_equal(matched[~region], image[~region])


def test_histogram_match_keeps_the_rank_order():
    """Exact specification is a rank-order remapping: a darker pixel never ends brighter."""
    images, regions = faces(3)
    for image, region, matched in zip(images, regions, histogram_match(images, regions)):
        before, after = image[region].astype(int), matched[region].astype(int)
        order = np.lexsort((after, before))        # by input level, ties by output level
        assert np.all(np.diff(after[order]) >= 0)


def test_histogram_match_equals_the_textbook_assignment_when_there_are_no_ties():
    """Without ties, the k-th darkest pixel gets the level where the target's cumulative
    count first exceeds k (an independent statement of the same definition)."""
    rng = np.random.default_rng(4)
    image = rng.permutation(256).reshape(16, 16).astype(np.uint8)      # every level once
    region = np.ones_like(image, bool)
    target = np.zeros(256)
    target[[10, 100, 200]] = [0.25, 0.5, 0.25]
    matched = histogram_match([image], [region], target=target)[0]
    cumulative = np.cumsum(specified_counts(target, image.size))
    ranks = np.argsort(np.argsort(image.ravel()))
    expected = np.searchsorted(cumulative, ranks, side="right").reshape(image.shape)
    assert np.array_equal(matched, expected)


def test_histogram_match_is_deterministic_with_ties():
    image = np.full((20, 20), 120, np.uint8)           # every pixel tied
    image[5:15, 5:15] = 130
    region = np.ones_like(image, bool)
    target = np.zeros(256)
    target[[50, 200]] = 0.5
    first = histogram_match([image], [region], target=target)[0]
    again = histogram_match([image.copy()], [region.copy()], target=target)[0]
    assert np.array_equal(first, again)
    assert np.bincount(first.ravel(), minlength=256)[[50, 200]].tolist() == [200, 200]
    # ties broken by the neighbourhood: the bright square's middle ends up bright
    assert (first[8:12, 8:12] == 200).all()


def test_exact_order_breaks_ties_by_neighbourhood_when_asked():
    image = np.zeros((5, 5), np.uint8)
    image[2, 2] = 50                  # a bright pixel lifts its 8 neighbours above the zeros
    everywhere = np.ones_like(image, bool)
    order = exact_order(image, everywhere, tie_order(image, "neighbourhood")).tolist()
    assert order[-1] == 12
    assert sorted(order[-9:-1]) == [6, 7, 8, 11, 13, 16, 17, 18]
    assert sorted(order) == list(range(25))
    assert exact_order(image, everywhere).tolist()[:3] == [0, 1, 2]     # default: top down


def random_tie_breaking(image, region, target):
    """SHINE's noise option: ties in a random order (the arrangement stimgen replaced)."""
    flat = np.flatnonzero(region)
    noise = np.random.default_rng(0).random(flat.size)
    order = flat[np.lexsort((noise, image.ravel()[flat]))]
    out = image.copy().ravel()
    out[order] = np.repeat(np.arange(256), specified_counts(target, flat.size))
    return out.reshape(image.shape)


def flat_face(size=48):
    """A schematic face: flat skin, two dark eyes, a mouth, in an oval region."""
    y, x = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2                      # a region symmetric about the midline
    region = ((x - centre) / (0.42 * size)) ** 2 + ((y - centre) / (0.48 * size)) ** 2 < 1
    image = np.full((size, size), 150, np.uint8)
    image[size // 3 - 2:size // 3 + 2, size // 3 - 3:size // 3 + 3] = 40
    image[size // 3 - 2:size // 3 + 2, 2 * size // 3 - 3:2 * size // 3 + 3] = 40
    image[2 * size // 3:2 * size // 3 + 2, size // 3:2 * size // 3] = 90
    return image, region


def test_a_flat_area_gets_large_blocks_not_grain_and_keeps_its_structure():
    """A flat cheek matched to a four-level histogram: exact, in a few blocks (short
    boundaries between levels), with a far higher SSIM than random tie-breaking."""
    image, region = flat_face()
    target = np.zeros(256)
    target[[30, 100, 160, 220]] = [0.1, 0.3, 0.3, 0.3]
    matched = specify_histogram(image, region, target, iterations=10)
    grain = random_tie_breaking(image, region, target)
    for result in (matched, grain):
        assert np.array_equal(np.bincount(result[region], minlength=256),
                              specified_counts(target, int(region.sum())))
        assert np.array_equal(result[~region], image[~region])
    def boundaries(result):
        inner = region[1:, :] & region[:-1, :]
        return int((np.diff(result.astype(int), axis=0)[inner] != 0).sum())
    assert boundaries(matched) < 0.2 * boundaries(grain)
    ours = structural_similarity(image, matched, region)
    assert ours > structural_similarity(image, grain, region) + 0.2
    # the SSIM steps only ever keep a better arrangement than the best ordering alone
    assert ours >= structural_similarity(image, specify_histogram(image, region, target,
                                                                  iterations=0), region)


def test_the_two_halves_of_a_symmetric_face_stay_equally_bright():
    image, region = flat_face()
    assert np.array_equal(image, image[:, ::-1]) and np.array_equal(region, region[:, ::-1])
    target = np.zeros(256)
    target[[30, 100, 160, 220]] = [0.1, 0.3, 0.3, 0.3]
    for iterations in (0, 10):
        matched = specify_histogram(image, region, target, iterations=iterations).astype(float)
        half = image.shape[1] // 2
        left, right = matched[:, :half][region[:, :half]], matched[:, half:][region[:, half:]]
        assert abs(left.mean() - right.mean()) < 2.0           # grey levels
        if iterations == 0:                 # the ordering alone: a mirror image, row by row
            assert (matched != matched[:, ::-1]).mean() < 0.05


def test_specify_histogram_is_deterministic_and_keeps_the_outside():
    image, region = flat_face(40)
    target = np.bincount(np.random.default_rng(1).integers(0, 256, 500), minlength=256)
    first = specify_histogram(image, region, target)
    assert np.array_equal(first, specify_histogram(image.copy(), region.copy(), target))
    assert np.array_equal(first[~region], image[~region])
    with pytest.raises(ValueError, match="iterations"):
        specify_histogram(image, region, target, iterations=-1)


def test_ssim_is_scikit_images_gaussian_ssim():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    _, theirs = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=255,
                                              full=True)
    np.testing.assert_allclose(ssim_map(a, b), theirs, atol=1e-12)
    region = rng.random(a.shape) < 0.5
    assert structural_similarity(a, b, region) == pytest.approx(theirs[region].mean())
    assert structural_similarity(a, a) == 1.0


def test_the_ssim_gradient_is_the_derivative():
    from stimgen.matching import _SSIMObjective

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (30, 30)).astype(float)
    y = np.clip(x + rng.normal(0, 25, x.shape), 0, 255)
    region = np.zeros(x.shape, bool)
    region[4:26, 6:24] = True
    value, gradient = _SSIMObjective(x, region, dtype=np.float64)(y)
    assert value == pytest.approx(structural_similarity(x, y, region))
    for i, j in ((10, 10), (4, 6), (2, 2), (25, 23)):
        bumped = [y.copy(), y.copy()]
        bumped[0][i, j] += 1e-4
        bumped[1][i, j] -= 1e-4
        numeric = (structural_similarity(x, bumped[0], region)
                   - structural_similarity(x, bumped[1], region)) / 2e-4
        assert gradient[i, j] == pytest.approx(numeric, rel=1e-4, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4), size=st.integers(8, 24))
def test_histogram_match_property(seed, n, size):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size)).astype(np.uint8) for _ in range(n)]
    regions = [rng.random((size, size)) < 0.7 for _ in range(n)]
    regions = [r if r.any() else np.ones_like(r) for r in regions]
    out = histogram_match(images, regions)
    target = np.mean([region_histogram(im, r) for im, r in zip(images, regions)], axis=0)
    for region, matched in zip(regions, out):
        assert np.array_equal(np.bincount(matched[region], minlength=256),
                              specified_counts(target, int(region.sum())))


def test_spectrum_match_gives_the_average_amplitude_and_keeps_each_phase():
    images, _ = faces(5, size=64)
    spectra = [np.fft.fft2(im.astype(float)) for im in images]
    target = np.mean([np.abs(s) for s in spectra], axis=0)
    out = spectrum_match(images)
    for spectrum, matched in zip(spectra, out):
        result = np.fft.fft2(matched.astype(float))
        # rounding to whole levels (and rare clipping) disturbs the amplitude only slightly
        assert np.abs(np.abs(result) - target).mean() < 0.02 * target.mean()
        strong = target > np.percentile(target, 90)
        phase_change = np.angle(result[strong] * np.conj(spectrum[strong]))
        assert np.abs(phase_change).mean() < 0.05


def test_histogram_plus_spectrum_ends_with_exact_histograms():
    images, regions = faces(6, size=48)
    out = match_images(images, regions, "histogram+spectrum")
    shares = [region_histogram(o, r) for o, r in zip(out, regions)]
    assert max(np.abs(s - shares[0]).max() for s in shares) < 2.0 / min(r.sum() for r in regions)


def test_errors_name_the_argument():
    images, regions = faces(7, n=2)
    with pytest.raises(ValueError, match="regions"):
        luminance_match(images, regions[:1])
    with pytest.raises(ValueError, match="empty"):
        histogram_match(images, [regions[0], np.zeros_like(regions[1])])
    with pytest.raises(ValueError, match="method"):
        match_images(images, regions, "colour")
    with pytest.raises(ValueError, match="one image size"):
        spectrum_match([images[0], images[1][:10]])


def test_the_protocols_default_is_the_functions():
    from stimgen.matching import SSIM_ITERATIONS
    from stimgen.protocol.models import Output

    assert Output().match_ssim_iterations == SSIM_ITERATIONS
