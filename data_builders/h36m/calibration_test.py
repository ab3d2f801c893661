"""`cameras.json` against the pickle it is made from, and K for rescaled videos."""

import numpy as np
import pytest

from data_builders import cameras as cameras_lib
from data_builders import frames
from data_builders.h36m import calibration


def test_cameras_json_is_the_pickle_conversion():
    from_pickle = cameras_lib.load_h36m_cameras()
    from_json = calibration.load_cameras()
    assert sorted(from_json) == sorted(from_pickle)
    assert len(from_json) == 44
    for key, cam in from_pickle.items():
        got = from_json[key]
        for field in ("intrinsics", "extrinsics", "distortion"):
            np.testing.assert_array_equal(getattr(got, field), getattr(cam, field),
                                          err_msg=f"{key} {field}")
        assert (got.width, got.height, got.name, got.subject, got.camera_id) == (
            cam.width, cam.height, cam.name, cam.subject, cam.camera_id)
    # The committed file is exactly what the converter writes today.
    assert calibration.CAMERAS_JSON.read_text() == calibration.cameras_to_json(from_pickle)


def test_missing_calibration_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        calibration.load_cameras(tmp_path / "nope.json")


@pytest.mark.parametrize("size", [(1000, 1002), (128, 128), (500, 501), (250, 250)])
def test_scaled_intrinsics_match_resampled_pixels(size):
    """Projecting with the scaled K lands where the full-size pixel lands after resampling."""
    cam = calibration.load_cameras()["S1", "54138969"]  # a 1000×1002 camera
    width, height = size
    k_scaled = calibration.scaled_intrinsics(cam, width, height)
    rng = np.random.default_rng(0)
    xy1_Nx3 = np.concatenate([rng.uniform(-0.4, 0.4, (20, 2)), np.ones((20, 1))], axis=1)
    uv_full = (xy1_Nx3 @ cam.intrinsics.T)[:, :2]
    # Pixel edges 0 and W of the full image map to the edges of the small one (centres at ints).
    scale = np.array([width / cam.width, height / cam.height])
    expected = (uv_full + 0.5) * scale - 0.5
    np.testing.assert_allclose((xy1_Nx3 @ k_scaled.T)[:, :2], expected, rtol=0, atol=1e-9)
    if size == (cam.width, cam.height):
        assert k_scaled is not cam.intrinsics and np.array_equal(k_scaled, cam.intrinsics)


def test_non_uniform_rescale_is_bad_input():
    cam = calibration.load_cameras()["S1", "55011271"]  # 1000×1000
    with pytest.raises(frames.BadInput, match=r"clip.mp4: frames are 128×96 pixels.*1000×1000"):
        calibration.scaled_intrinsics(cam, 128, 96, source="clip.mp4")
