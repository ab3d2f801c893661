"""Tests for the synthetic capture set: camera rigs, person placement, room."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from data_builders import cameras as cameras_lib
from data_builders.synthetic import body as body_lib
from data_builders.synthetic import raycast
from data_builders.synthetic import rig as rig_lib
from maskpose_jax import geometry


def test_h36m_cameras_are_the_real_calibration_as_pinholes():
    real = cameras_lib.h36m_rig("S9")
    pinholes = rig_lib.h36m_cameras_for("S9")
    assert len(pinholes) == 4
    for cam, ref in zip(pinholes, real):
        np.testing.assert_array_equal(cam.intrinsics, ref.intrinsics)
        np.testing.assert_array_equal(cam.extrinsics, ref.extrinsics)
        np.testing.assert_array_equal(cam.distortion, np.zeros(5))
        assert (cam.width, cam.height, cam.camera_id) == (ref.width, ref.height, ref.camera_id)


@pytest.mark.parametrize("count", [3, 4, 7])
def test_ring_rig_cameras_look_at_the_target(count):
    rig = rig_lib.ring_rig(count, radius_mm=4500.0, height_mm=1600.0, focal_px=300.0,
                           image_size_px=256, target_height_mm=1000.0, start_angle=0.3)
    assert len(rig) == count
    target_3 = np.array([0.0, 0.0, 1000.0])
    angles = []
    for cam in rig:
        rot_3x3 = cam.extrinsics[:, :3]
        np.testing.assert_allclose(rot_3x3 @ rot_3x3.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot_3x3) == pytest.approx(1.0)
        center_3 = np.asarray(geometry.camera_center(cam.extrinsics))
        assert np.hypot(center_3[0], center_3[1]) == pytest.approx(4500.0)
        assert center_3[2] == pytest.approx(1600.0)
        angles.append(np.arctan2(center_3[1], center_3[0]))
        # The target projects onto the image centre, and the world's up is up in the image.
        uv_2x2 = np.asarray(geometry.project(np.stack([target_3, target_3 + [0, 0, 100.0]]),
                                             cam.intrinsics, cam.extrinsics))
        np.testing.assert_allclose(uv_2x2[0], [127.5, 127.5], atol=1e-4)
        assert uv_2x2[1, 1] < uv_2x2[0, 1] and abs(uv_2x2[1, 0] - 127.5) < 1e-4
    steps = np.diff(np.unwrap(angles))
    np.testing.assert_allclose(steps, 2 * np.pi / count, atol=1e-9)
    assert angles[0] == pytest.approx(0.3)


def _walk_clip(frames=12, stride_mm=60.0):
    """The standing pose sliding along +Y with a swinging arm (a stand-in for a mocap clip)."""
    standing_Jx3 = body_lib.standing_joints()
    clip = np.repeat(standing_Jx3[None], frames, axis=0)
    clip[:, :, 1] += stride_mm * np.arange(frames)[:, None]
    clip[:, 13, 1] += 150.0 * np.sin(np.arange(frames) / 2.0)
    return clip


def test_place_person_moves_the_clip_rigidly_inside_the_area():
    rng = np.random.default_rng(0)
    clip_TxJx3 = _walk_clip()
    for _ in range(20):
        placed_TxJx3, yaw, offset_3 = rig_lib.place_person(clip_TxJx3, rng, area_radius_mm=800.0)
        assert placed_TxJx3.shape == clip_TxJx3.shape
        np.testing.assert_allclose(placed_TxJx3[..., 2], clip_TxJx3[..., 2], atol=1e-9)
        # One rigid motion for the whole clip: every pairwise distance is kept.
        before = np.linalg.norm(clip_TxJx3[:, :, None] - clip_TxJx3[:, None], axis=-1)
        after = np.linalg.norm(placed_TxJx3[:, :, None] - placed_TxJx3[:, None], axis=-1)
        np.testing.assert_allclose(after, before, atol=1e-9)
        rot_3x3 = np.asarray(geometry.rotation_about_z(yaw))
        np.testing.assert_allclose(placed_TxJx3[5] - placed_TxJx3[0],
                                   (clip_TxJx3[5] - clip_TxJx3[0]) @ rot_3x3.T, atol=1e-9)
        center_2 = placed_TxJx3[:, 0, :2].mean(axis=0)
        assert np.linalg.norm(center_2) <= 800.0 + 1e-9
        assert offset_3[2] == 0.0 and 0.0 <= yaw < 2 * np.pi
    frame_Jx3 = body_lib.standing_joints()
    placed_Jx3, _, _ = rig_lib.place_person(frame_Jx3, rng, area_radius_mm=500.0)
    assert placed_Jx3.shape == (17, 3)


def test_in_view_detects_people_outside_the_images():
    rig = rig_lib.h36m_cameras_for("S1")
    frame_Jx3 = body_lib.standing_joints()
    assert rig_lib.in_view(frame_Jx3, rig)
    far_Jx3 = frame_Jx3 + [6000.0, 0.0, 0.0]
    np.testing.assert_array_equal(rig_lib.in_view(np.stack([frame_Jx3, far_Jx3]), rig),
                                  [True, False])
    # Right next to a camera (closer than the margin, partly behind it): not seen.
    ring = rig_lib.ring_rig(2, 3000.0, 1500.0, 100.0, 128)
    assert rig_lib.in_view(frame_Jx3, ring)
    assert not rig_lib.in_view(frame_Jx3 + [2900.0, 0.0, 0.0], ring)


@pytest.mark.parametrize("subject", ["S1", "S11"])
def test_placed_people_are_rendered_inside_every_h36m_view(subject):
    rng = np.random.default_rng(1)
    rig = rig_lib.h36m_cameras_for(subject)
    body = body_lib.sample_body(rng)
    for _ in range(3):
        placed_TxJx3, _, _ = rig_lib.place_person(_walk_clip(), rng, area_radius_mm=1000.0,
                                                  rig=rig)
        assert np.all(rig_lib.in_view(placed_TxJx3, rig))
        for frame_Jx3 in placed_TxJx3[[0, -1]]:
            capsules = body_lib.capsules(frame_Jx3, body)
            for cam in rig:
                # Nothing of the rendered body is cut off by the image border.
                bbox = raycast.full_image_mask_bbox(capsules, cam.intrinsics, cam.extrinsics,
                                                    cam.width, cam.height)
                assert bbox is not None
                assert bbox[0] > 0.0 and bbox[1] > 0.0
                assert bbox[2] < cam.width - 1.0 and bbox[3] < cam.height - 1.0


def test_place_person_with_a_rig_falls_back_to_the_best_try():
    rng = np.random.default_rng(2)
    rig = rig_lib.ring_rig(4, 4000.0, 1500.0, 100.0, 128)
    long_walk_TxJx3 = _walk_clip(frames=60, stride_mm=200.0)     # 12 m: cannot fit whole
    placed_TxJx3, _, _ = rig_lib.place_person(long_walk_TxJx3, rng, 500.0, rig=rig,
                                              max_tries=8)
    seen_T = rig_lib.in_view(placed_TxJx3, rig)
    assert 0 < seen_T.sum() < len(seen_T)


def test_room_color_floor_checker_and_wall():
    scene = rig_lib.sample_scene(np.random.default_rng(0))
    scene = dataclasses.replace(scene, checker_mm=500.0, checker_angle=0.0, checker_contrast=1.0,
                                shadow=0.0, waves_Kx5=scene.waves_Kx5 * [1, 1, 1, 1, 0])
    origin_3 = np.array([0.0, 0.0, 1000.0])
    points_Nx3 = np.array([[250.0, 250.0, 0.0],        # floor cell (0, 0)
                           [750.0, 250.0, 0.0],        # floor cell (1, 0)
                           [-250.0, 250.0, 0.0],       # floor cell (-1, 0)
                           [0.0, scene.wall_radius_mm, 1000.0]])    # wall, level with the eye
    dir_Nx3 = points_Nx3 - origin_3
    dir_Nx3 /= np.linalg.norm(dir_Nx3, axis=-1, keepdims=True)
    colors_Nx3 = np.asarray(rig_lib.room_color(
        jnp.asarray(origin_3, jnp.float32), jnp.asarray(dir_Nx3, jnp.float32),
        rig_lib.scene_arrays(scene), jnp.zeros(2)))
    floor_2x3, wall_2x3 = scene.floor_colors_2x3, scene.wall_colors_2x3
    np.testing.assert_allclose(colors_Nx3[:3], floor_2x3[[0, 1, 1]], atol=1e-5)
    # The wall point at azimuth pi/2 lies in panel floor(pi/2 R / panel_mm).
    panel = np.floor(np.pi / 2 * scene.wall_radius_mm / scene.panel_mm)
    mix = (panel * 0.618034) % 1.0
    np.testing.assert_allclose(colors_Nx3[3], wall_2x3[0] * (1 - mix) + wall_2x3[1] * mix,
                               atol=1e-4)
