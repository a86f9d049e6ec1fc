"""stimgen/matching.py against SHINE's definitions (Willenbockel et al., 2010): lumMatch gives
every region the mean mean and mean SD, histMatch the average histogram exactly (by rank
ordering), specMatch the average amplitude spectrum with each image's own phase."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stimgen.matching import (exact_order, histogram_match, luminance_match, match_images,
                              region_histogram, spectrum_match, specified_counts)


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


def test_exact_order_breaks_ties_by_neighbourhood_first():
    image = np.zeros((5, 5), np.uint8)
    image[2, 2] = 50                  # a bright pixel lifts its 8 neighbours above the zeros
    order = exact_order(image, np.ones_like(image, bool)).tolist()
    assert order[-1] == 12
    assert sorted(order[-9:-1]) == [6, 7, 8, 11, 13, 16, 17, 18]
    assert sorted(order) == list(range(25))
    assert exact_order(image, np.ones_like(image, bool)).tolist() == order     # deterministic


def test_a_flat_area_gets_the_target_levels_spread_over_it_not_in_bands():
    """A flat cheek matched to a two-level histogram: each half of it gets both levels in
    about equal shares (breaking ties by position would put all dark pixels on top)."""
    image = np.full((40, 40), 120, np.uint8)
    target = np.zeros(256)
    target[[100, 140]] = 0.5
    matched = histogram_match([image], [np.ones_like(image, bool)], target=target)[0]
    for half in (matched[:20], matched[20:], matched[:, :20], matched[:, 20:]):
        assert abs(half.mean() - 120) < 3


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
