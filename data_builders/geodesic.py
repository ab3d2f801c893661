"""Geodesic weight maps of foreground masks (DESIGN §5), computed once when a dataset is built.

Errors at distal body parts (hands, feet) matter most and cover the fewest pixels, so the mask
losses weight every pixel:

    foreground: w_fg = exp(a * d_geo) + b, with d_geo the geodesic distance inside the
                foreground from a seed near the mask's centroid, normalized to [0, 1] by its max;
    background: w_bg = c * d_bg + e, with d_bg the Euclidean distance to the nearest foreground
                pixel, normalized to [0, 1] by its max.

With the defaults (a, b, c, e) = (2, 1, 3, 20) foreground weights lie in [2, e^2 + 1] and
background weights in [20, 23].

Conventions: the mask is binarized as foreground = (mask >= 0.5). Distances are in pixels on the
pixel-centre grid (rows and columns one pixel apart). Foreground connectivity is 4-neighbour
(the fast-marching stencil), so two pixels touching only at a corner are separate blobs.

Seeds: the main seed is the foreground pixel nearest to the centroid of the whole foreground
(the centroid's own pixel when it is foreground; for a ring or a U it is the nearest pixel of the
body). Every other blob (a 4-connected component not containing the main seed, e.g. a hand cut
off by the segmenter) is measured from its own seed, the pixel of that blob nearest to the blob's
centroid. All blobs share one normalization (the largest distance over the whole mask), so a
small stray blob stays near the minimum foreground weight and never outweighs real extremities.

Degenerate masks get a uniform weight of 1 (see `is_degenerate`): no foreground, no background,
or no two 4-adjacent foreground pixels (every blob a single pixel, so no geodesic extent).
"""

import numpy as np
import scipy.ndimage as ndi
import skfmm

DEFAULT_PARAMS = (2.0, 1.0, 3.0, 20.0)


def _foreground(mask_HxW):
    mask_HxW = np.asarray(mask_HxW)
    if mask_HxW.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask_HxW.shape}")
    return mask_HxW >= 0.5


def _has_adjacent_pair(fg_HxW):
    return bool(np.any(fg_HxW[1:] & fg_HxW[:-1]) or np.any(fg_HxW[:, 1:] & fg_HxW[:, :-1]))


def is_degenerate(mask_HxW) -> bool:
    """Whether `weight_map` falls back to a uniform weight for this mask.

    Args:
        mask_HxW: foreground mask, values in [0, 1] (binarized at 0.5).

    Returns:
        True when the mask has no foreground, no background, or no two 4-adjacent foreground
        pixels.
    """
    fg_HxW = _foreground(mask_HxW)
    return bool(fg_HxW.all() or not _has_adjacent_pair(fg_HxW))


def _nearest_to_centroid(rows, cols):
    """The (row, col) of these pixels nearest to their centroid; an exact tie (a centroid
    halfway between pixels) goes to the first pixel in the given order, whatever the rounding."""
    sq_dist = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
    best = np.argmin(np.round(sq_dist, 6))
    return int(rows[best]), int(cols[best])


def seed_pixels(mask_HxW) -> np.ndarray:
    """Fast-marching seeds: one (row, col) per 4-connected foreground blob, main seed first.

    Args:
        mask_HxW: foreground mask, values in [0, 1] (binarized at 0.5).

    Returns:
        int array Sx2 of (row, col), S = number of blobs (0 for an empty mask). Row 0 is the
        foreground pixel nearest to the centroid of the whole foreground; the others are, per
        remaining blob, its pixel nearest to its own centroid.
    """
    fg_HxW = _foreground(mask_HxW)
    if not fg_HxW.any():
        return np.zeros((0, 2), np.int64)
    labels_HxW, num_blobs = ndi.label(fg_HxW)
    rows, cols = np.nonzero(fg_HxW)  # row-major order: ties go to the first pixel
    seeds = [_nearest_to_centroid(rows, cols)]
    main_label = labels_HxW[seeds[0]]
    blob_of_pixel = labels_HxW[rows, cols]
    for label in range(1, num_blobs + 1):
        if label != main_label:
            mine = blob_of_pixel == label
            seeds.append(_nearest_to_centroid(rows[mine], cols[mine]))
    return np.asarray(seeds, np.int64).reshape(-1, 2)


def geodesic_distance(mask_HxW) -> np.ndarray:
    """Geodesic distance inside the foreground from the seeds of `seed_pixels`, by fast marching.

    Each blob is measured from its own seed (blobs are not connected to each other).

    Args:
        mask_HxW: foreground mask, values in [0, 1] (binarized at 0.5).

    Returns:
        float64 HxW, distance in pixels on the foreground; 0 on the background, everywhere for a
        mask with no two 4-adjacent foreground pixels, and at every seed.
    """
    fg_HxW = _foreground(mask_HxW)
    seeds_Sx2 = seed_pixels(mask_HxW)
    if len(seeds_Sx2) == 0 or not _has_adjacent_pair(fg_HxW):
        return np.zeros(fg_HxW.shape, np.float64)
    # phi = 0 puts the zero level set on the seed pixels themselves. Against a brute-force
    # shortest-path reference (tests) the result is never shorter and at most ~0.35 px + 2% of
    # the distance longer, the excess being largest along diagonals.
    phi_HxW = np.ones(fg_HxW.shape, np.float64)
    phi_HxW[seeds_Sx2[:, 0], seeds_Sx2[:, 1]] = 0.0
    dist = skfmm.distance(np.ma.MaskedArray(phi_HxW, mask=~fg_HxW), dx=1.0)
    dist_HxW = np.ma.filled(dist, 0.0).astype(np.float64)
    return np.where(fg_HxW, np.maximum(dist_HxW, 0.0), 0.0)


def weight_map(mask_HxW, params=DEFAULT_PARAMS) -> np.ndarray:
    """Per-pixel loss weight of one mask (DESIGN §5).

    Args:
        mask_HxW: foreground mask, values in [0, 1] (binarized at 0.5); any dtype.
        params: (a, b, c, e): w_fg = exp(a * d_geo) + b, w_bg = c * d_bg + e, with d_geo and d_bg
            normalized to [0, 1] (see the module docstring).

    Returns:
        float32 HxW weights; all ones for a degenerate mask (`is_degenerate`).
    """
    a, b, c, e = (float(p) for p in params)
    fg_HxW = _foreground(mask_HxW)
    if is_degenerate(mask_HxW):
        return np.ones(fg_HxW.shape, np.float32)
    geo_HxW = geodesic_distance(fg_HxW)
    geo_HxW = geo_HxW / geo_HxW.max()
    bg_HxW = ndi.distance_transform_edt(~fg_HxW)
    bg_HxW = bg_HxW / bg_HxW.max()
    weight_HxW = np.where(fg_HxW, np.exp(a * geo_HxW) + b, c * bg_HxW + e)
    return weight_HxW.astype(np.float32)
