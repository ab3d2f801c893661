"""Tests for data_builders.geodesic: brute-force float64 references and degenerate masks."""

import functools
import math

import numpy as np
import pytest

from data_builders import geodesic

PARAMS = (2.0, 1.0, 3.0, 20.0)
A, B, C, E = PARAMS


def _u_shape():
    """A U (arms up, base down): its centroid lies in the gap, outside the mask."""
    mask = np.zeros((30, 26), np.float32)
    mask[2:28, 3:8] = 1.0     # left arm
    mask[2:28, 18:23] = 1.0   # right arm
    mask[23:28, 3:23] = 1.0   # base
    return mask


def _ring():
    rows, cols = np.mgrid[:33, :33]
    r = np.hypot(rows - 16.0, cols - 16.0)
    return ((r >= 9.0) & (r <= 13.0)).astype(np.float32)


def _ref_seed(fg):
    """Foreground pixel nearest to the foreground centroid, by brute force."""
    pixels = np.argwhere(fg)
    centroid = pixels.mean(0)
    return tuple(pixels[np.argmin(((pixels - centroid) ** 2).sum(1))])


@functools.cache
def _ref_for(make):
    fg = make() >= 0.5
    return _ref_geodesic(fg, _ref_seed(fg))


def _ref_geodesic(fg, seed):
    """Shortest paths through the visibility graph of foreground pixel centres, float64.

    The domain is the region spanned by the foreground pixel centres (what fast marching sees):
    two centres see each other when every sample of the segment between them (every 0.25 px)
    lies in a grid cell whose four corner pixels are all foreground (on a grid line, whose two
    end pixels are). Dijkstra on the straight-line lengths then gives the geodesic distance up
    to the choice of path vertices (pixel centres).
    """
    pixels = np.argwhere(fg).astype(np.float64)
    n = len(pixels)
    lengths = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)
    steps = int(math.ceil(lengths.max() * 4)) + 2
    t = np.linspace(0.0, 1.0, steps)[:, None, None, None]
    visible = np.ones((n, n), bool)
    for chunk in np.array_split(np.arange(n), max(1, n // 64)):
        pts = pixels[chunk][None, :, None] * (1 - t) + pixels[None, None] * t
        lo = np.floor(pts).astype(int)
        hi = np.minimum(lo + 1, np.array(fg.shape) - 1)
        frac = pts - lo
        inside = np.ones(pts.shape[:-1], bool)
        for rows, w_r in ((lo[..., 0], 1 - frac[..., 0]), (hi[..., 0], frac[..., 0])):
            for cols, w_c in ((lo[..., 1], 1 - frac[..., 1]), (hi[..., 1], frac[..., 1])):
                inside &= fg[rows, cols] | (w_r * w_c < 1e-9)
        visible[chunk] = inside.all(axis=0)
    graph = np.where(visible, lengths, np.inf)
    start = int(np.flatnonzero((pixels == seed).all(1))[0])
    dist = np.full(n, np.inf)
    dist[start] = 0.0
    done = np.zeros(n, bool)
    for _ in range(n):
        k = int(np.argmin(np.where(done, np.inf, dist)))
        done[k] = True
        dist = np.minimum(dist, dist[k] + graph[k])
    out = np.zeros(fg.shape)
    out[tuple(pixels.astype(int).T)] = dist
    return out


def _ref_background(fg):
    pixels = np.argwhere(fg)
    rows, cols = np.mgrid[:fg.shape[0], :fg.shape[1]]
    d = np.sqrt(((rows[..., None] - pixels[:, 0]) ** 2 +
                 (cols[..., None] - pixels[:, 1]) ** 2).min(-1))
    return np.where(fg, 0.0, d)


@pytest.mark.parametrize("make", [_u_shape, _ring])
def test_geodesic_matches_brute_force_when_centroid_is_outside(make):
    mask = make()
    fg = mask >= 0.5
    seed = _ref_seed(fg)
    centroid = np.argwhere(fg).mean(0)
    assert not fg[tuple(np.floor(centroid + 0.5).astype(int))]
    assert tuple(geodesic.seed_pixels(mask)[0]) == seed
    dist = geodesic.geodesic_distance(mask)
    ref = _ref_for(make)
    assert dist[seed] == 0.0 and np.all(dist[~fg] == 0.0)
    # Fast marching overestimates slightly (most along diagonals near the seed), never under.
    assert np.all(dist[fg] >= ref[fg] - 0.05)
    np.testing.assert_allclose(dist[fg], ref[fg], rtol=0.03, atol=0.4)


def test_u_far_arm_tip_is_far_geodesically():
    mask = _u_shape()
    fg = mask >= 0.5
    seed = np.array(_ref_seed(fg))
    assert seed[1] < 8                              # the seed sits on the left arm
    dist = geodesic.geodesic_distance(mask)
    near_tip, far_tip = np.array([2, 5]), np.array([2, 20])
    # In sight of the seed, geodesic = Euclidean; around the base, much longer.
    assert abs(dist[tuple(near_tip)] - np.linalg.norm(near_tip - seed)) < 0.5
    assert dist[tuple(far_tip)] > 1.8 * np.linalg.norm(far_tip - seed)
    assert np.unravel_index(np.argmax(dist), dist.shape)[0] == 2
    assert np.unravel_index(np.argmax(dist), dist.shape)[1] >= 18


def test_ring_opposite_point_is_half_the_circumference_away():
    mask = _ring()
    seed = geodesic.seed_pixels(mask)[0]
    dist = geodesic.geodesic_distance(mask)
    opposite = tuple(np.array([32, 32]) - seed)
    assert mask[opposite] == 1.0
    # Through the hole it would be ~2 r = 22 px; around the ring, more than ~pi * 9.
    assert dist[opposite] > math.pi * 9.0 > 2 * 11.0 + 5.0


@pytest.mark.parametrize("make", [_u_shape, _ring])
def test_weight_map_is_the_normalized_formula(make):
    mask = make()
    fg = mask >= 0.5
    weight = geodesic.weight_map(mask, PARAMS)
    assert weight.dtype == np.float32 and weight.shape == mask.shape
    geo = _ref_for(make)
    d_fg = np.log(weight[fg].astype(np.float64) - B) / A
    np.testing.assert_allclose(d_fg, (geo / geo.max())[fg], atol=0.03)
    bg = _ref_background(fg)
    np.testing.assert_allclose(weight[~fg], (C * bg / bg.max() + E)[~fg], rtol=1e-6)
    assert weight[fg].min() == pytest.approx(1.0 + B)
    assert weight[fg].max() == pytest.approx(math.exp(A) + B, rel=1e-6)
    assert weight[~fg].max() == pytest.approx(C + E)
    assert weight[~fg].min() > E


def test_border_touching_mask():
    mask = np.zeros((21, 17), np.float32)
    mask[:, 7:10] = 1.0    # touches top and bottom
    mask[9:12, :] = 1.0    # touches left and right
    mask[0:3, 0:3] = 1.0   # a blob in the corner
    weight = geodesic.weight_map(mask)
    fg = mask >= 0.5
    assert not geodesic.is_degenerate(mask)
    assert np.all(np.isfinite(weight)) and weight.dtype == np.float32
    assert np.all((weight[fg] >= 1 + B - 1e-6) & (weight[fg] <= math.exp(A) + B + 1e-5))
    assert np.all((weight[~fg] > E) & (weight[~fg] <= C + E + 1e-5))


def test_several_blobs_are_measured_from_their_own_seeds():
    big = np.zeros((24, 30), np.float32)
    big[2:22, 2:12] = 1.0
    small = np.zeros_like(big)
    small[4:9, 18:28] = 1.0
    speck = np.zeros_like(big)
    speck[20, 27] = 1.0
    mask = big + small + speck
    seeds = geodesic.seed_pixels(mask)
    assert len(seeds) == 3 and tuple(seeds[0]) == _ref_seed(mask >= 0.5)
    dist = geodesic.geodesic_distance(mask)
    alone = geodesic.geodesic_distance(small)
    np.testing.assert_array_equal(dist[small >= 0.5], alone[small >= 0.5])
    assert dist[20, 27] == 0.0
    weight = geodesic.weight_map(mask)
    assert np.all(np.isfinite(weight))
    # One normalization for all blobs: the big blob holds the largest distance.
    assert weight[big >= 0.5].max() == pytest.approx(math.exp(A) + B, rel=1e-6)
    assert weight[small >= 0.5].max() < weight[big >= 0.5].max()
    assert weight[20, 27] == pytest.approx(1 + B)


def _checkerboard():
    return (np.indices((6, 6)).sum(0) % 2).astype(np.float32)


@pytest.mark.parametrize("mask", [
    np.zeros((9, 7), np.float32),                    # empty
    np.pad(np.ones((1, 1), np.float32), 4),          # single pixel
    np.ones((9, 7), np.float32),                     # full: no background
    np.full((5, 5), 0.7, np.float32),                # full after binarization
    _checkerboard(),                                 # only diagonal contacts
    np.zeros((0, 0), np.float32),                    # no pixels at all
])
def test_degenerate_masks_give_uniform_weight(mask):
    assert geodesic.is_degenerate(mask)
    weight = geodesic.weight_map(mask)
    assert weight.dtype == np.float32 and weight.shape == mask.shape
    np.testing.assert_array_equal(weight, np.ones(mask.shape, np.float32))


def test_two_pixel_mask_is_not_degenerate():
    mask = np.zeros((5, 6), np.float32)
    mask[2, 2:4] = 1.0
    assert not geodesic.is_degenerate(mask)
    weight = geodesic.weight_map(mask)
    np.testing.assert_allclose(sorted(weight[mask > 0]), [1 + B, math.exp(A) + B], rtol=1e-6)


def test_binarizes_soft_and_integer_masks():
    mask = _u_shape()
    rng = np.random.default_rng(0)
    soft = np.where(mask > 0, rng.uniform(0.5, 1.0, mask.shape),
                    rng.uniform(0.0, 0.49, mask.shape))
    expected = geodesic.weight_map(mask)
    np.testing.assert_array_equal(geodesic.weight_map(soft), expected)
    np.testing.assert_array_equal(geodesic.weight_map(mask.astype(bool)), expected)
    np.testing.assert_array_equal(geodesic.weight_map(mask.astype(np.uint8)), expected)
    with pytest.raises(ValueError):
        geodesic.weight_map(mask[None])
