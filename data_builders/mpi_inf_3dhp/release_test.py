"""Checks the readers of the MPI-INF-3DHP layouts against their writers (`make_dummy_data`), the
bundled real calibrations and annotated frames, and NumPy float64 references."""

import os
import pickle

import h5py
import numpy as np
import pytest
import scipy.io

from data_builders.frames import BadInput
from data_builders.mpi_inf_3dhp import make_dummy_data
from data_builders.mpi_inf_3dhp import release
from maskpose_jax import geometry
from maskpose_jax import skeleton

DUMMY_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")
ASSETS = os.path.join(os.path.dirname(__file__), "..", "assets", "cameras")


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


def _random_rig(rng, count):
    rig = {}
    for camera in range(count):
        intrinsics = np.array([[rng.uniform(500, 2000), 0, rng.uniform(400, 1200)],
                               [0, rng.uniform(500, 2000), rng.uniform(400, 1200)], [0, 0, 1]])
        extrinsics = np.concatenate([_rotation(rng), rng.uniform(-5000, 5000, (3, 1))], axis=1)
        rig[camera] = (intrinsics, extrinsics)
    return rig


def test_calibration_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rig = _random_rig(rng, release.NUM_CAMERAS)
    sizes = {c: (int(rng.integers(100, 3000)), int(rng.integers(100, 3000))) for c in rig}
    path = tmp_path / "camera.calibration"
    make_dummy_data.write_calibration(path, rig, sizes)
    parsed = release.load_calibration(path)
    assert sorted(parsed) == list(range(release.NUM_CAMERAS))
    for camera, (intrinsics, extrinsics) in rig.items():
        np.testing.assert_allclose(parsed[camera].intrinsics, intrinsics, rtol=1e-10)
        np.testing.assert_allclose(parsed[camera].extrinsics, extrinsics, rtol=1e-10, atol=1e-9)
        assert (parsed[camera].width, parsed[camera].height) == sizes[camera]
        assert not parsed[camera].distortion.any()


def test_committed_calibration_holds_the_real_cameras():
    """The dummy calibration carries mmpose's copy of the release's cameras (K scaled to 96 px)."""
    with open(os.path.join(ASSETS, "mpi_inf_3dhp_cameras_train.pkl"), "rb") as f:
        real = pickle.load(f)
    parsed = release.load_calibration(os.path.join(DUMMY_DIR, "S1", "Seq1", "camera.calibration"))
    scale = 96 / 2048
    for camera in (0, 1, 2, 4, 5, 6, 7, 8):
        params = real[f"S1_Seq1_Cam{camera}"]
        np.testing.assert_allclose(parsed[camera].extrinsics[:, :3], params["R"], atol=1e-12)
        np.testing.assert_allclose(parsed[camera].extrinsics[:, 3], params["T"].ravel() * 1000,
                                   atol=1e-9)
        np.testing.assert_allclose(np.diag(parsed[camera].intrinsics)[:2],
                                   params["f"].ravel() * scale, rtol=1e-12)


@pytest.mark.parametrize("edit, fault", [
        (lambda text: "Some Other Format\n" + text.split("\n", 1)[1], "not a camera calibration"),
        (lambda text: text.replace("  size        96 96\n", "", 1), "'size' needs 2 numbers"),
        (lambda text: text.replace("0.9650164 ", "1.9650164 ", 1), "not a rotation"),
        (lambda text: text.replace("animated    0", "animated    1", 1), "not supported"),
        (lambda text: text.replace("70.204359375 ", "nan ", 1), "camera 0: a NaN"),
        (lambda text: text.replace(" -562.8666 ", " inf ", 1), "camera 0: a NaN or infinite"),
        (lambda text: text.replace("70.204359375 ", "0 ", 1), "camera 0: a singular camera"),
])
def test_calibration_errors_name_the_file(tmp_path, edit, fault):
    with open(os.path.join(DUMMY_DIR, "S1", "Seq1", "camera.calibration")) as f:
        text = f.read()
    path = tmp_path / "camera.calibration"
    path.write_text(edit(text))
    with pytest.raises(BadInput, match=fault) as info:
        release.load_calibration(path)
    assert str(path) in str(info.value)
    with pytest.raises(BadInput, match="no such calibration file"):
        release.load_calibration(tmp_path / "missing.calibration")


def test_joint_tables_follow_the_release_names():
    ours_to_release = {
            "pelvis": "pelvis", "r_hip": "right_hip", "r_knee": "right_knee",
            "r_ankle": "right_ankle", "l_hip": "left_hip", "l_knee": "left_knee",
            "l_ankle": "left_ankle", "spine": "spine", "thorax": "neck", "neck": "head",
            "head": "head_top", "l_shoulder": "left_shoulder", "l_elbow": "left_elbow",
            "l_wrist": "left_wrist", "r_shoulder": "right_shoulder", "r_elbow": "right_elbow",
            "r_wrist": "right_wrist"}
    expected = [release.JOINT_NAMES_28.index(ours_to_release[n]) for n in skeleton.JOINT_NAMES]
    assert list(release.OURS_FROM_28) == expected
    h17 = ("head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
           "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
           "left_knee", "left_ankle", "pelvis", "spine", "head")
    assert [release.JOINT_NAMES_28[i] for i in release.H17_FROM_28] == list(h17)


def test_real_annotated_frames_through_our_conventions(tmp_path):
    """Two real training frames (3DHP-17, camera frame) reordered to ours, moved to the world with
    their camera (written and parsed as camera.calibration) and projected back with
    `geometry.project`, land on the release's 2D annotations; the pose is a plausible body."""
    samples = np.load(os.path.join(ASSETS, "mpi_inf_3dhp_samples_train.npz"))
    with open(os.path.join(ASSETS, "mpi_inf_3dhp_cameras_train.pkl"), "rb") as f:
        real = pickle.load(f)
    for name, s_17x4, part_17x3 in zip(samples["imgname"], samples["S"], samples["part"]):
        params = real[str(name)[:str(name).rfind("_")]]
        intrinsics = make_dummy_data.scaled_intrinsics(*params["f"].ravel(),
                                                       *params["c"].ravel(), 1.0)
        extrinsics = np.concatenate([params["R"], params["T"] * 1000.0], axis=1)
        make_dummy_data.write_calibration(tmp_path / "c", {0: (intrinsics, extrinsics)},
                                          {0: (2048, 2048)})
        camera = release.load_calibration(tmp_path / "c")[0]
        joints_cam = s_17x4[list(release.OURS_FROM_H17), :3] * 1000.0
        world, spread = release.world_from_views(joints_cam[None], camera.extrinsics[None])
        assert spread < 1e-6
        uv = np.asarray(geometry.project(world, camera.intrinsics, camera.extrinsics))
        np.testing.assert_allclose(uv, part_17x3[list(release.OURS_FROM_H17), :2], atol=3.0)
        # Bones of human length; mirrored limbs alike (not the thighs: the second frame's knees
        # sit 80 mm apart along them in the release); pelvis at the hips' midpoint; thorax near
        # the shoulders' midpoint; the head above the pelvis (world Y up).
        for parent, child in skeleton.LIMBS:
            assert 80 < np.linalg.norm(world[parent] - world[child]) < 550
        for (a, b), (c, d) in skeleton.SYMMETRIC_LIMBS:
            if b not in (2, 5):
                assert abs(np.linalg.norm(world[a] - world[b])
                           - np.linalg.norm(world[c] - world[d])) < 20
        assert np.linalg.norm(world[0] - world[[1, 4]].mean(0)) < 20
        assert np.linalg.norm(world[8] - world[[11, 14]].mean(0)) < 60
        assert world[10, 1] > world[0, 1]


def test_train_annotations(tmp_path):
    rng = np.random.default_rng(1)
    rig = _random_rig(rng, release.NUM_CAMERAS)
    joints = {c: rng.normal(size=(4, 28, 3)) * 500 + [0, 0, 4000] for c in rig}
    path = tmp_path / "annot.mat"
    make_dummy_data.write_annot_mat(path, joints, rig)
    loaded = release.load_train_annotations(path, (0, 2, 13))
    np.testing.assert_array_equal(loaded.frames_T, np.arange(4))
    for camera in (0, 2, 13):
        by_name = [joints[camera][:, release.JOINT_NAMES_28.index(n)] for n in (
                "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
                "left_ankle", "spine", "neck", "head", "head_top", "left_shoulder", "left_elbow",
                "left_wrist", "right_shoulder", "right_elbow", "right_wrist")]
        np.testing.assert_allclose(loaded.joints_cam[camera], np.stack(by_name, 1), rtol=1e-6)
    with pytest.raises(BadInput, match="no annotations for camera 14"):
        release.load_train_annotations(path, (14,))
    scipy.io.savemat(tmp_path / "short.mat", {"annot3": np.zeros((1, 1)), "frames": np.zeros(1)})
    with pytest.raises(BadInput, match="no variable cameras"):
        release.load_train_annotations(tmp_path / "short.mat", (0,))
    hdf5_path = os.path.join(DUMMY_DIR, release.TEST_SET_DIR, "TS1", "annot_data.mat")
    with pytest.raises(BadInput, match="v7.3"):
        release.load_train_annotations(hdf5_path, (0,))


@pytest.mark.parametrize("num_frames", [5, 3, 17])
def test_test_annotations_in_both_matlab_orders(tmp_path, num_frames):
    """v7.3 (HDF5 order T×1×17×3) and v5 (MATLAB order 3×17×1×T) give the same joints, also
    when T equals 3 or 17 and the shape alone is ambiguous."""
    rng = np.random.default_rng(num_frames)
    h17 = rng.normal(size=(num_frames, 17, 3)) * 400 + [0, 0, 4000]
    valid = rng.integers(0, 2, num_frames)
    activity = rng.integers(1, 8, num_frames)
    make_dummy_data.write_annot_data_mat(tmp_path / "v73.mat", h17, np.eye(3), valid, activity)
    scipy.io.savemat(tmp_path / "v5.mat", {"annot3": h17[:, None].transpose(3, 2, 1, 0),
                                            "valid_frame": valid[None],
                                            "activity_annotation": activity[None]})
    for name in ("v73.mat", "v5.mat"):
        loaded = release.load_test_annotations(tmp_path / name)
        np.testing.assert_allclose(loaded.joints_cam_Tx17x3, h17[:, list(release.OURS_FROM_H17)])
        np.testing.assert_array_equal(loaded.valid_T, valid != 0)
        np.testing.assert_array_equal(loaded.activity_T, activity)
    with h5py.File(tmp_path / "v73.mat", "a") as f:
        del f["valid_frame"]
    with pytest.raises(BadInput, match="no variable valid_frame"):
        release.load_test_annotations(tmp_path / "v73.mat")


def test_test_cameras_and_activities():
    rig = release.load_test_cameras()
    assert sorted(rig) == [f"TS{i}" for i in range(1, 7)]
    assert (rig["TS1"].width, rig["TS1"].height) == (2048, 2048)
    assert (rig["TS5"].width, rig["TS5"].height) == (1920, 1080)
    np.testing.assert_allclose(rig["TS1"].intrinsics[[0, 1, 0, 1], [0, 1, 2, 2]],
                               [1500.068613599573, 1500.6590966853373, 1017.3794860438501,
                                1043.062824876025])
    np.testing.assert_array_equal(rig["TS3"].extrinsics, np.eye(3, 4))
    assert [release.activity_name(c, "x") for c in range(1, 8)] == [
            "Stand/Walk", "Exercise", "Sit on Chair", "Reach/Crouch", "On the Floor", "Sports",
            "Miscellaneous"]
    with pytest.raises(BadInput, match="somewhere: unknown activity code 0"):
        release.activity_name(0, "somewhere")


def test_fg_mask_channels_and_cleanup():
    frame = np.zeros((40, 50, 3), np.uint8)
    frame[:6, :, 0] = 250            # studio strip along the top border, larger than the person
    frame[15:35, 20:28, 0] = 200     # the person
    frame[15:25, 20:28, 1] = 200     # upper body
    frame[30, 40, 0] = 255           # one-pixel speckle
    person = np.zeros((40, 50), bool)
    person[15:35, 20:28] = True
    np.testing.assert_array_equal(release.fg_mask(frame), person)
    np.testing.assert_array_equal(release.fg_mask(frame, cleanup="largest")[:6], 1)
    assert release.fg_mask(frame, cleanup="none").sum() == 6 * 50 + person.sum() + 1
    assert release.fg_mask(frame, channel="green").sum() == 80
    # Above 220 only the strip and the speckle pass: a speckle is no person, the strip is kept.
    assert release.fg_mask(frame, threshold=220).sum() == 6 * 50
    # Nothing inside: the largest component (the strip) is kept, not nothing.
    frame[15:35, 20:28] = 0
    np.testing.assert_array_equal(release.fg_mask(frame)[:6], 1)
    assert release.fg_mask(np.zeros((8, 8, 3), np.uint8)).sum() == 0


def test_world_from_views_matches_reference():
    rng = np.random.default_rng(3)
    rig = _random_rig(rng, 4)
    world = rng.normal(size=(17, 3)) * 500
    extrinsics = np.stack([e for _, e in rig.values()])
    joints_cam = np.stack([world @ e[:, :3].T + e[:, 3] for e in extrinsics])
    mean, spread = release.world_from_views(joints_cam, extrinsics)
    np.testing.assert_allclose(mean, world, atol=1e-8)
    assert spread < 1e-8
    joints_cam[2] += [0.0, 0.0, 30.0]
    assert release.world_from_views(joints_cam, extrinsics)[1] > 20
