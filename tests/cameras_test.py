"""Tests for data_builders.cameras: the Human3.6M calibrations, checked on real 2D/3D joints."""

import pickle
import re

import jax
import numpy as np
import pytest

from data_builders import cameras
from maskpose_jax import geometry

SAMPLES_PATH = cameras.ASSETS_DIR / "cameras" / "h36m_samples_body3d.npz"
SUBJECTS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11")


def test_load_h36m_cameras_conventions():
    loaded = cameras.load_h36m_cameras()
    with cameras.H36M_CAMERAS_PATH.open("rb") as f:
        raw = pickle.load(f)
    assert len(loaded) == 44
    assert {subject for subject, _ in loaded} == set(SUBJECTS)
    for key, cam in loaded.items():
        assert isinstance(key[0], str) and isinstance(key[1], str)
        assert (cam.subject, cam.camera_id) == key
        assert cam.intrinsics.shape == (3, 3) and cam.extrinsics.shape == (3, 4)
        assert cam.distortion.shape == (5,)
        rot = cam.extrinsics[:, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-6)
        assert np.isclose(np.linalg.det(rot), 1.0, atol=1e-6)
        # The calibration's T is the camera centre in world metres.
        np.testing.assert_allclose(geometry.camera_center(cam.extrinsics),
                                   raw[key]["T"].reshape(3) * 1000.0, rtol=1e-5, atol=1e-2)
        np.testing.assert_allclose(cam.intrinsics[[0, 1], [0, 1]], raw[key]["f"].reshape(2))
        np.testing.assert_allclose(cam.intrinsics[:2, 2], raw[key]["c"].reshape(2))
        np.testing.assert_allclose(cam.distortion[:3], raw[key]["k"].reshape(3))
        np.testing.assert_allclose(cam.distortion[3:], raw[key]["p"].reshape(2))
        assert (cam.width, cam.height) == (raw[key]["w"], raw[key]["h"])
        # Cameras stand above the floor (world Z up) and look roughly horizontally.
        assert 500.0 < raw[key]["T"][2, 0] * 1000.0 < 3000.0
        assert abs(rot[2, 2]) < 0.5


def test_h36m_rig_order_and_errors(tmp_path):
    rig = cameras.h36m_rig("S9")
    assert [cam.camera_id for cam in rig] == ["54138969", "55011271", "58860488", "60457274"]
    assert all(cam.subject == "S9" for cam in rig)
    with pytest.raises(KeyError, match="S42"):
        cameras.h36m_rig("S42")
    missing = tmp_path / "nowhere" / "h36m_cameras.pkl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        cameras.load_h36m_cameras(missing)


def test_real_joints_reproject_to_stored_2d():
    """Real Human3.6M frames: camera-frame joints -> world -> project == the stored 2D."""
    samples = np.load(SAMPLES_PATH)
    loaded = cameras.load_h36m_cameras()
    assert samples["S"].shape[1:] == (17, 4) and samples["part"].shape[1:] == (17, 3)
    with jax.enable_x64(True):
        for joints_cam_m, part, image_name in zip(samples["S"], samples["part"],
                                                   samples["imgname"]):
            subject, sequence = str(image_name).split("/")[:2]
            cam = loaded[(subject, sequence.split(".")[1])]
            joints_world = geometry.world_from_cam(joints_cam_m[:, :3] * 1000.0, cam.extrinsics)
            uv = np.asarray(geometry.project(joints_world, cam.intrinsics, cam.extrinsics,
                                             cam.distortion))
            assert np.abs(uv - part[:, :2]).max() < 0.5
            # Distortion matters at this precision: the pinhole alone is off by over a pixel.
            pinhole = np.asarray(geometry.project(joints_world, cam.intrinsics, cam.extrinsics))
            assert np.abs(pinhole - part[:, :2]).max() > 1.0
