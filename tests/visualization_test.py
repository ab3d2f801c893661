"""Tests of maskpose_jax.visualization: drawn pixels, limb colours, mask overlays, panel layout."""

import numpy as np
import pytest

from maskpose_jax import skeleton
from maskpose_jax import visualization as vis

BACKGROUND = (30, 40, 50)


def normalized(u, v, size):
    """Crop pixel (u, v) -> normalized crop coordinates, written out from the convention."""
    return -1.0 + 2.0 * u / (size - 1), -1.0 + 2.0 * v / (size - 1)


def keypoints_with(size, **joints_uv):
    """17x2 keypoints, NaN (not drawn) except the named joints placed at crop pixels (u, v)."""
    keypoints = np.full((skeleton.NUM_JOINTS, 2), np.nan)
    for name, (u, v) in joints_uv.items():
        keypoints[skeleton.JOINT_INDEX[name]] = normalized(u, v, size)
    return keypoints


def background(size):
    image = np.empty((size, size, 3), np.uint8)
    image[...] = BACKGROUND
    return image


@pytest.mark.parametrize("joint, color", [("l_hip", (1, 2, 250)), ("r_hip", (250, 2, 1))])
def test_horizontal_limb_exact_pixels(joint, color):
    size = 64
    image = background(size)
    keypoints = keypoints_with(size, pelvis=(10, 20), **{joint: (40, 20)})
    out = vis.draw_skeleton(image, keypoints, color_left=(1, 2, 250), color_right=(250, 2, 1),
                            min_size=0)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    expected_changed = np.zeros((size, size), bool)
    expected_changed[20, 10:41] = True
    changed = np.any(out != image, axis=-1)
    np.testing.assert_array_equal(changed, expected_changed)
    np.testing.assert_array_equal(out[20, 10:41], np.broadcast_to(color, (31, 3)))
    assert np.all(image == BACKGROUND)  # the input is not modified


def test_trunk_is_white_and_vertical():
    size = 48
    keypoints = keypoints_with(size, spine=(7, 30), thorax=(7, 12))
    out = vis.draw_skeleton(background(size), keypoints, min_size=0)
    changed = np.any(out != background(size), axis=-1)
    expected_changed = np.zeros((size, size), bool)
    expected_changed[12:31, 7] = True
    np.testing.assert_array_equal(changed, expected_changed)
    assert np.all(out[12:31, 7] == vis.TRUNK_COLOR)


def test_enlarged_crop_maps_pixel_centres():
    size, min_size = 32, 128  # enlarged 4x, lines 2 px wide
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    keypoints = keypoints_with(size, thorax=(5, 20), l_shoulder=(25, 20))
    out = vis.draw_skeleton(image, keypoints, color_left=(0, 255, 0), min_size=min_size)
    enlarged = np.kron(image, np.ones((4, 4, 1), np.uint8))
    assert out.shape == (128, 128, 3)
    # Pixel centre u maps to 4 u + 1.5: the 2-px line is centred on row 81.5 (rows 81 and 82)
    # and runs from column 21.5 to 101.5 (columns 21 to 101).
    expected_changed = np.zeros((128, 128), bool)
    expected_changed[81:83, 21:102] = True
    changed = np.any(out != enlarged, axis=-1)
    np.testing.assert_array_equal(changed, expected_changed)
    assert np.all(out[81:83, 21:102] == (0, 255, 0))


def test_limb_sides_and_skipped_limbs():
    sides = dict(zip(skeleton.LIMBS, vis.LIMB_SIDES))
    assert sorted(vis.LIMB_SIDES).count("left") == 6
    assert sorted(vis.LIMB_SIDES).count("right") == 6
    assert sides[(0, 4)] == sides[(8, 11)] == sides[(12, 13)] == "left"
    assert sides[(0, 1)] == sides[(8, 14)] == sides[(15, 16)] == "right"
    assert sides[(0, 7)] == sides[(9, 10)] == "trunk"
    # No finite keypoint: nothing drawn, only the 2x enlargement.
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = vis.draw_skeleton(image, np.full((17, 3), np.nan), min_size=32)
    np.testing.assert_array_equal(out, np.kron(image, np.ones((2, 2, 1), np.uint8)))


def test_full_pose_left_right_colours():
    size = 64
    rng = np.random.default_rng(2)
    keypoints = rng.uniform(-0.8, 0.8, (17, 3))
    black = np.zeros((size, size, 3), np.uint8)
    left, right = (0, 0, 255), (255, 0, 0)
    out = vis.draw_skeleton(black, keypoints, color_left=left, color_right=right, min_size=0)
    colors = {tuple(c) for c in out.reshape(-1, 3)}
    assert colors <= {(0, 0, 0), left, right, vis.TRUNK_COLOR}
    assert {left, right} <= colors
    # r_elbow -> r_wrist is the last limb of LIMBS, drawn over the others: its end is right's.
    u, v = np.round((keypoints[16, :2] + 1.0) * (size - 1) / 2.0).astype(int)
    assert tuple(out[v, u]) == right


def test_float_image_accepted():
    image = np.full((8, 8, 3), 0.5, np.float32)
    out = vis.draw_skeleton(image, np.full((17, 2), np.nan), min_size=0)
    assert out.dtype == np.uint8 and np.all(out == 128)


def test_mask_comparison_channels():
    rng = np.random.default_rng(3)
    pred, target = rng.uniform(size=(2, 10, 12))
    out = vis.mask_comparison(pred, target)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.round(pred * 255).astype(np.uint8))
    np.testing.assert_array_equal(out[..., 2], np.round(pred * 255).astype(np.uint8))
    np.testing.assert_array_equal(out[..., 1], np.round(target * 255).astype(np.uint8))
    ones, zeros = np.ones((2, 2)), np.zeros((2, 2))
    assert np.all(vis.mask_comparison(ones, ones) == 255)           # overlap: white
    assert np.all(vis.mask_comparison(zeros, ones) == (0, 255, 0))  # missed: green
    assert np.all(vis.mask_comparison(ones * 2.0, zeros) == (255, 0, 255))  # clipped


@pytest.mark.parametrize("with_physique", [True, False])
def test_training_panel_layout(with_physique):
    num_views, size, gap = 3, 32, 2
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (num_views, size, size, 3), dtype=np.uint8)
    keypoints = rng.uniform(-0.9, 0.9, (num_views, 17, 3)).astype(np.float32)
    skel, phys, masks = rng.uniform(size=(3, num_views, size, size)).astype(np.float32)
    panel = vis.training_panel(images, keypoints, skel, phys if with_physique else None, masks,
                               min_size=128, gap=gap)
    tile, columns = 128, 3 if with_physique else 2
    assert panel.dtype == np.uint8
    assert panel.shape == (num_views * tile + (num_views - 1) * gap,
                           columns * tile + (columns - 1) * gap, 3)
    enlarge = np.ones((4, 4, 1), np.uint8)
    for v in range(num_views):
        top = v * (tile + gap)
        np.testing.assert_array_equal(panel[top:top + tile, :tile],
                                      vis.draw_skeleton(images[v], keypoints[v], min_size=128))
        left = tile + gap
        np.testing.assert_array_equal(panel[top:top + tile, left:left + tile],
                                      np.kron(vis.mask_comparison(skel[v], masks[v]), enlarge))
        if with_physique:
            left = 2 * (tile + gap)
            np.testing.assert_array_equal(panel[top:top + tile, left:left + tile],
                                          np.kron(vis.mask_comparison(phys[v], masks[v]), enlarge))
    assert np.all(panel[tile:tile + gap] == vis.GAP_COLOR)
    assert np.all(panel[:, tile:tile + gap] == vis.GAP_COLOR)
