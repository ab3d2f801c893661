"""Tests for the procedural capsule body."""

import numpy as np
import pytest

from data_builders.synthetic import body as body_lib
from maskpose_jax import skeleton

_MIRROR_X = np.array([-1.0, 1.0, 1.0])


def _distance_to_segments(point_3, start_Cx3, end_Cx3):
    """float64 distance from one point to each segment (C,)."""
    axis_Cx3 = end_Cx3 - start_Cx3
    s_C = np.clip(np.sum((point_3 - start_Cx3) * axis_Cx3, -1)
                  / np.maximum(np.sum(axis_Cx3**2, -1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(point_3 - (start_Cx3 + s_C[:, None] * axis_Cx3), axis=-1)


def _mirrored_pose():
    """The standing pose made exactly symmetric about the plane X = 0."""
    joints_Jx3 = body_lib.standing_joints()
    mirrored_Jx3 = (joints_Jx3 * _MIRROR_X)[list(skeleton.FLIP_PERMUTATION)]
    return 0.5 * (joints_Jx3 + mirrored_Jx3)


@pytest.mark.parametrize("seed", range(5))
def test_sample_body_is_a_plausible_adult(seed):
    body = body_lib.sample_body(np.random.default_rng(seed))
    assert 45.0 < body.thigh_radius < 90.0 and 35.0 < body.shin_radius < 65.0
    assert 25.0 < body.forearm_radius < body.upper_arm_radius < 60.0
    assert 70.0 < body.chest_radius < 150.0 and 75.0 <= body.head_radius <= 95.0
    assert 200.0 < body.foot_length < 300.0 and 150.0 < body.hand_length < 200.0
    assert body.colors_Px3.shape == (body_lib.NUM_PARTS, 3)
    assert np.all((body.colors_Px3 >= 0.0) & (body.colors_Px3 <= 1.0))
    start_Cx3, end_Cx3, radius_C, _ = body_lib.capsules(body_lib.standing_joints(), body)
    top = np.max(np.maximum(start_Cx3[:, 2], end_Cx3[:, 2]) + radius_C)
    bottom = np.min(np.minimum(start_Cx3[:, 2], end_Cx3[:, 2]) - radius_C)
    assert 1600.0 < top < 1750.0 and abs(bottom) < 10.0          # soles on the floor
    # Hip breadth (pelvis and thighs at the hip joints) and chest depth of adults.
    legs = [body_lib.CAPSULE_NAMES.index(n) for n in ("hips", "r_thigh", "l_thigh")]
    hip_breadth = 2 * np.max(np.abs(start_Cx3[legs, 0]) + radius_C[legs])
    assert 300.0 < hip_breadth < 460.0
    assert 160.0 < 2 * body.chest_radius < 320.0


def test_same_seed_same_body():
    a = body_lib.sample_body(np.random.default_rng(7))
    b = body_lib.sample_body(np.random.default_rng(7))
    c = body_lib.sample_body(np.random.default_rng(8))
    assert a.thigh_radius == b.thigh_radius and np.array_equal(a.colors_Px3, b.colors_Px3)
    assert not np.array_equal(a.colors_Px3, c.colors_Px3)


@pytest.mark.parametrize("seed", range(4))
def test_capsules_shapes_and_parts(seed):
    body = body_lib.sample_body(np.random.default_rng(seed))
    start_Cx3, end_Cx3, radius_C, part_C = body_lib.capsules(body_lib.standing_joints(), body)
    count = body_lib.NUM_CAPSULES
    assert start_Cx3.shape == end_Cx3.shape == (count, 3)
    assert radius_C.shape == part_C.shape == (count,)
    assert np.all(radius_C > 10.0) and part_C.dtype.kind == "i"
    assert set(part_C.tolist()) <= set(range(body_lib.NUM_PARTS))
    names = body_lib.CAPSULE_NAMES
    assert part_C[names.index("r_foot")] == body_lib.SHOES
    assert part_C[names.index("hair")] == body_lib.HAIR
    assert part_C[names.index("r_forearm")] == (
        body_lib.UPPER if body.long_sleeves else body_lib.SKIN)


@pytest.mark.parametrize("seed", range(3))
def test_every_joint_is_inside_the_body(seed):
    rng = np.random.default_rng(seed)
    body = body_lib.sample_body(rng)
    joints_Jx3 = body_lib.standing_joints() + rng.normal(scale=30.0, size=(17, 3))
    start_Cx3, end_Cx3, radius_C, _ = body_lib.capsules(joints_Jx3, body)
    for joint_3 in joints_Jx3:
        assert np.any(_distance_to_segments(joint_3, start_Cx3, end_Cx3) < radius_C)


@pytest.mark.parametrize("seed", range(3))
def test_left_and_right_are_mirror_images_with_equal_colours(seed):
    body = body_lib.sample_body(np.random.default_rng(seed))
    start_Cx3, end_Cx3, radius_C, part_C = body_lib.capsules(_mirrored_pose(), body)
    names = body_lib.CAPSULE_NAMES
    for k, name in enumerate(names):
        if not name.startswith("r_"):
            continue
        m = names.index("l_" + name[2:])
        np.testing.assert_allclose(start_Cx3[m], start_Cx3[k] * _MIRROR_X, atol=1e-9)
        np.testing.assert_allclose(end_Cx3[m], end_Cx3[k] * _MIRROR_X, atol=1e-9)
        assert radius_C[m] == radius_C[k] and part_C[m] == part_C[k]
        np.testing.assert_array_equal(body.colors_Px3[part_C[m]], body.colors_Px3[part_C[k]])
    # Unpaired capsules lie on the symmetry plane (or are symmetric end to end).
    for k, name in enumerate(names):
        if name[:2] not in ("r_", "l_"):
            ends_2x3 = np.stack([start_Cx3[k], end_Cx3[k]])
            mirrored_2x3 = ends_2x3 * _MIRROR_X
            assert (np.allclose(ends_2x3, mirrored_2x3, atol=1e-9)
                    or np.allclose(ends_2x3, mirrored_2x3[::-1], atol=1e-9)), name


def test_feet_point_forward_and_hair_sits_behind_the_face():
    body = body_lib.sample_body(np.random.default_rng(0))
    joints_Jx3 = body_lib.standing_joints()
    start_Cx3, end_Cx3, _, _ = body_lib.capsules(joints_Jx3, body)
    names = body_lib.CAPSULE_NAMES
    for foot in ("r_foot", "l_foot"):
        toe_dir_3 = end_Cx3[names.index(foot)] - start_Cx3[names.index(foot)]
        assert toe_dir_3[1] > 0.95 * np.linalg.norm(toe_dir_3)       # the person faces +Y
    head, hair = names.index("head"), names.index("hair")
    assert start_Cx3[hair, 1] < end_Cx3[head, 1]

    # Turning the pose turns the feet with it.
    yaw = np.pi / 2
    rot_3x3 = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    turned_start_Cx3, turned_end_Cx3, _, _ = body_lib.capsules(joints_Jx3 @ rot_3x3.T, body)
    np.testing.assert_allclose(turned_start_Cx3, start_Cx3 @ rot_3x3.T, atol=1e-9)
    np.testing.assert_allclose(turned_end_Cx3, end_Cx3 @ rot_3x3.T, atol=1e-9)
