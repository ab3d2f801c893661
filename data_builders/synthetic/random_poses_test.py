"""Random poses of the procedural body and their rendered silhouettes."""

import numpy as np
import pytest

from data_builders.synthetic import body as body_lib
from data_builders.synthetic import random_poses
from maskpose_jax import fused
from maskpose_jax import skeleton


def _poses(seed, count):
    rng = np.random.default_rng(seed)
    return np.stack([random_poses.random_pose(rng) for _ in range(count)])


@pytest.mark.parametrize("seed", range(3))
def test_every_bone_keeps_the_standing_length(seed):
    stand = body_lib.standing_joints().astype(np.float64)
    for pose in _poses(seed, 50):
        for joint, parent in enumerate(skeleton.PARENTS):
            if parent >= 0:
                np.testing.assert_allclose(np.linalg.norm(pose[joint] - pose[parent]),
                                           np.linalg.norm(stand[joint] - stand[parent]),
                                           rtol=1e-9)


def test_knees_bend_backwards_and_poses_vary():
    poses = _poses(0, 300)
    # fused.bend_loss (an independent formula: thigh x shin against the left axis) is 0 for a
    # knee that bends the anatomical way, > 0 for one that bends forwards.
    assert max(float(fused.bend_loss(p)) for p in poses) < 1e-6
    assert np.isfinite(poses).all()
    np.testing.assert_allclose(poses[:, :, 2].min(axis=1), 80.0)  # above the floor
    assert poses.std(axis=0).mean() > 100.0                       # not one pose, mm


def test_left_and_right_are_drawn_alike():
    poses = _poses(1, 2000)
    mirrored = (poses * np.array([-1.0, 1.0, 1.0]))[:, list(skeleton.FLIP_PERMUTATION)]
    # The mean pose equals its own mirror image within sampling noise (std ~300 mm / sqrt(2000)).
    np.testing.assert_allclose(poses.mean(axis=0), mirrored.mean(axis=0), atol=40.0)


def test_same_seed_same_pose():
    np.testing.assert_array_equal(_poses(5, 3), _poses(5, 3))
    assert np.abs(_poses(5, 3) - _poses(6, 3)).max() > 10.0


def test_silhouettes_cover_their_joints_and_repeat():
    size = 32
    pairs = random_poses.silhouettes(3, 3, num_views=2, image_size=size)
    assert pairs["mask"].shape == (3, 2, size, size) and pairs["crop"].shape == (3, 2, 2, 3)
    assert pairs["joints_world"].shape == (3, 17, 3)
    assert all(v.dtype == np.float32 for v in pairs.values())
    for example in range(3):
        views = {k: pairs[k][example] for k in ("crop", "intrinsics", "extrinsics")}
        kp_VxJx2 = np.asarray(fused.project_pose(pairs["joints_world"][example], views["crop"],
                                                 views["intrinsics"], views["extrinsics"],
                                                 np.zeros((2, 5), np.float32), size))
        assert np.abs(kp_VxJx2).max() < 1.0          # crops around the masks hold the joints
        pixels = np.rint((kp_VxJx2 + 1.0) / 2.0 * (size - 1)).astype(int)
        for view in range(2):
            column, row = pixels[view, skeleton.PELVIS]
            assert pairs["mask"][example, view, row, column] > 0.5
    again = random_poses.silhouettes(3, 3, num_views=2, image_size=size)
    for key, value in pairs.items():
        np.testing.assert_array_equal(value, again[key], err_msg=key)


@pytest.mark.parametrize("kwargs", [dict(count=0), dict(count=2, num_views=5),
                                    dict(count=2, image_size=4)])
def test_silhouettes_refuse_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="silhouettes needs"):
        random_poses.silhouettes(0, **kwargs)
