"""Tests of `data_builders.background`: a random static background with a blob moving over it."""

import numpy as np
import pytest

from data_builders import background

H, W, T = 60, 80, 9
BLOB_COLOUR = np.array([250, 20, 240], np.uint8)


def _scene():
    """Random background, a disc of radius 9 px that moves 7 px right per frame, its masks."""
    rng = np.random.default_rng(0)
    back = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:H, 0:W]
    frames, masks = [], []
    for t in range(T):
        disc = (cols - (12 + 7 * t)) ** 2 + (rows - 30) ** 2 <= 9 ** 2
        frame = back.copy()
        frame[disc] = BLOB_COLOUR
        frames.append(frame)
        masks.append(disc)
    return back, frames, masks


def test_median_recovers_the_background():
    back, frames, _ = _scene()
    # Every pixel is covered by the disc in at most 3 of 9 frames.
    np.testing.assert_array_equal(background.median_background(frames), back.astype(np.float32))
    assert background.median_background(frames).dtype == np.float32


def test_mask_recovers_the_blob_and_drops_speckle():
    back, frames, masks = _scene()
    estimate = background.median_background(frames)
    frame = frames[4].copy()
    # Isolated bright pixels, far from the disc and touching its right edge (column 49 is the
    # disc's last), where only the opening, not the largest-component rule, can remove them.
    speckle = [(5, 5), (50, 70), (10, 60), (55, 3), (30, 50), (24, 47)]
    for row, col in speckle:
        frame[row, col] = 255 - back[row, col]
    mask = background.foreground_mask(frame, estimate)
    assert mask.shape == (H, W) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    truth = masks[4]
    iou = np.logical_and(mask > 0, truth).sum() / np.logical_or(mask > 0, truth).sum()
    assert iou > 0.95
    for row, col in speckle:
        assert mask[row, col] == 0.0


def test_a_body_cut_by_the_frame_edge_keeps_its_edge():
    back, _, _ = _scene()
    rows, cols = np.mgrid[0:H, 0:W]
    legs = ((cols - 40) / 10.0) ** 2 + ((rows - 55) / 20.0) ** 2 <= 1  # runs out of the bottom
    frame = back.copy()
    frame[legs] = BLOB_COLOUR
    for row, col in [(0, 5), (0, 79), (59, 0)]:  # speckle on the edges and in the corners
        frame[row, col] = 255 - back[row, col]
    mask = background.foreground_mask(frame, back.astype(np.float32)) > 0
    np.testing.assert_array_equal(mask[H - 1], legs[H - 1])
    assert not (mask & ~legs).any()
    assert (mask & legs).sum() / legs.sum() > 0.98


def test_only_the_largest_component_is_kept():
    back, frames, masks = _scene()
    frame = frames[4].copy()
    frame[5:12, 60:67] = 255 - back[5:12, 60:67]  # a second, smaller object survives opening
    mask = background.foreground_mask(frame, back.astype(np.float32))
    assert mask[8, 63] == 0.0 and mask[30, 40] == 1.0


def test_holes_are_filled():
    back, frames, masks = _scene()
    frame = frames[4].copy()
    frame[29:32, 39:42] = back[29:32, 39:42]  # a 3×3 patch inside the disc matches the background
    mask = background.foreground_mask(frame, back.astype(np.float32))
    assert np.all(mask[29:32, 39:42] == 1.0)


def test_empty_when_nothing_moved():
    back, _, _ = _scene()
    still = [back] * 5
    mask = background.foreground_mask(back, background.median_background(still))
    assert mask.shape == (H, W) and not mask.any()


def test_bad_frame_lists_raise():
    back, frames, _ = _scene()
    with pytest.raises(ValueError, match="different sizes"):
        background.median_background([back, back[:, :70]])
    with pytest.raises(ValueError, match="at least one frame"):
        background.median_background([])
