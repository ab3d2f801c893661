"""The release layout (`release.py`) and the mask sources (`masks.py`) over `dummy_data/` and
small files written here."""

import os

import av
import h5py
import numpy as np
import pytest
from cdflib import cdfwrite
from PIL import Image
from scipy.io import matlab

from data_builders import frames
from data_builders import video
from data_builders.h36m import make_dummy_data
from data_builders.h36m import masks
from data_builders.h36m import release
from maskpose_jax import skeleton

DUMMY_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")

# Sequence names found across the subjects of the release ("_ALL" files aside).
RELEASE_SEQUENCES = (
        "Directions", "Directions 1", "Directions 2", "Discussion", "Discussion 1", "Discussion 2",
        "Discussion 3", "Eating", "Eating 1", "Eating 2", "Greeting", "Greeting 1", "Greeting 2",
        "Phoning", "Phoning 1", "Phoning 2", "Phoning 3", "Photo", "Photo 1", "Photo 2", "Posing",
        "Posing 1", "Posing 2", "Purchases", "Purchases 1", "Sitting", "Sitting 1", "Sitting 2",
        "SittingDown", "SittingDown 1", "SittingDown 2", "Smoking", "Smoking 1", "Smoking 2",
        "TakingPhoto", "TakingPhoto 1", "Waiting", "Waiting 1", "Waiting 2", "Waiting 3",
        "WalkDog", "WalkDog 1", "Walking", "Walking 1", "Walking 2", "WalkingDog", "WalkingDog 1",
        "WalkTogether", "WalkTogether 1", "WalkTogether 2")

# The release's 32 joint names (its metadata), in "Pose" order.
RELEASE_JOINTS = (
        "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "Site", "LeftUpLeg",
        "LeftLeg", "LeftFoot", "LeftToeBase", "Site", "Spine", "Spine1", "Neck", "Head", "Site",
        "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandThumb", "Site",
        "L_Wrist_End", "Site", "RightShoulder", "RightArm", "RightForeArm", "RightHand",
        "RightHandThumb", "Site", "R_Wrist_End", "Site")
OURS_IN_RELEASE = {"pelvis": "Hips", "r_hip": "RightUpLeg", "r_knee": "RightLeg",
                   "r_ankle": "RightFoot", "l_hip": "LeftUpLeg", "l_knee": "LeftLeg",
                   "l_ankle": "LeftFoot", "spine": "Spine1", "thorax": "Neck", "neck": "Head",
                   "head": "Site", "l_shoulder": "LeftArm", "l_elbow": "LeftForeArm",
                   "l_wrist": "LeftHand", "r_shoulder": "RightArm", "r_elbow": "RightForeArm",
                   "r_wrist": "RightHand"}


def test_base_actions_group_the_15_actions():
    assert {release.base_action(n) for n in RELEASE_SEQUENCES} == set(release.ACTIONS)
    assert release.base_action("TakingPhoto 1") == "Photo"
    assert release.base_action("WalkingDog") == "WalkDog"
    assert release.base_action("WalkTogether 2") == "WalkTogether"
    assert release.base_action("SittingDown") == "SittingDown"


def test_joint_selection_follows_the_release_names():
    assert [RELEASE_JOINTS[i] for i in release.JOINTS_FROM_32] == [
        OURS_IN_RELEASE[name] for name in skeleton.JOINT_NAMES]
    assert release.JOINTS_FROM_32[10] == 15  # "Site" after Head: the head top


def test_load_poses_picks_17_of_32(tmp_path):
    num_frames = 4
    t, j, a = np.meshgrid(np.arange(num_frames), np.arange(32), np.arange(3), indexing="ij")
    pose_Tx32x3 = 1000.0 * t + 10.0 * j + a
    path = str(tmp_path / "Walking 1.cdf")
    make_dummy_data.write_cdf(path, pose_Tx32x3)
    got = release.load_poses(path)
    assert got.shape == (num_frames, 17, 3) and got.dtype == np.float64
    for k, source in enumerate(release.JOINTS_FROM_32):
        expected_y = 1000.0 * np.arange(num_frames) + 10 * source + 1
        np.testing.assert_array_equal(got[:, k, 1], expected_y)
    bad = str(tmp_path / "bad.cdf")
    cdf = cdfwrite.CDF(bad)
    cdf.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": [3, 90]}, var_data=np.zeros((1, 3, 90)))
    cdf.close()
    with pytest.raises(frames.BadInput, match=r"bad.cdf: 'Pose' has shape"):
        release.load_poses(bad)
    with pytest.raises(frames.BadInput, match="nope.cdf: no such pose file"):
        release.load_poses(str(tmp_path / "nope.cdf"))
    (tmp_path / "text.cdf").write_text("not a cdf")
    with pytest.raises(frames.BadInput, match="text.cdf: cannot read"):
        release.load_poses(str(tmp_path / "text.cdf"))


def test_list_sequences_and_paths():
    sequences = release.list_sequences(DUMMY_DIR, "S1")  # "_ALL 1.cdf" is not a sequence
    assert [(s.name, s.action) for s in sequences] == [("Directions 1", "Directions"),
                                                      ("TakingPhoto", "Photo")]
    assert os.path.isfile(sequences[0].poses_path)
    assert os.path.isfile(release.video_path(DUMMY_DIR, "S1", "TakingPhoto", "60457274"))
    assert os.path.isfile(release.bs_mask_path(DUMMY_DIR, "S9", "WalkDog", "54138969"))
    with pytest.raises(frames.BadInput, match=os.path.join(DUMMY_DIR, "S7")):
        release.list_sequences(DUMMY_DIR, "S7")


def test_count_video_frames(tmp_path):
    path = release.video_path(DUMMY_DIR, "S1", "Directions 1", "55011271")
    assert release.count_video_frames(path) == 10 == len(video.read_frames(path))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(open(path, "rb").read()[:3000])
    with pytest.raises(frames.BadInput, match="cut.mp4"):
        release.count_video_frames(str(cut))
    with pytest.raises(frames.BadInput, match="none.mp4: no such video file"):
        release.count_video_frames(str(tmp_path / "none.mp4"))


def test_count_video_frames_sees_a_cut_faststart_mp4(tmp_path):
    """With the index at the front, a cut file still opens: its packets are counted short."""
    path = str(tmp_path / "faststart.mp4")
    rng = np.random.default_rng(0)
    with av.open(path, "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=50)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(12):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    assert release.count_video_frames(path) == 12
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) * 2 // 3])
    assert 0 < release.count_video_frames(path) < 12


def test_bs_mat_masks_round_trip_matlab_layout(tmp_path):
    rng = np.random.default_rng(0)
    masks_TxHxW = (rng.uniform(size=(3, 6, 10)) > 0.5).astype(np.uint8)  # 10 wide, 6 high
    path = str(tmp_path / "Eating.54138969.mat")
    make_dummy_data.write_mat_masks(path, list(masks_TxHxW))
    assert matlab.matfile_version(path) == (2, 0)  # scipy reads the header as MATLAB v7.3
    with h5py.File(path, "r") as f:
        stored = f[f["Masks"][1, 0]]
        assert stored.shape == (10, 6)  # column-major: W×H
        assert stored.attrs["MATLAB_class"] == b"logical"
    with masks.BsMatMasks(path, 3) as source:
        for t in range(3):
            mask, where = source(t)
            assert mask.dtype == np.float32
            np.testing.assert_array_equal(mask, masks_TxHxW[t])
            assert where.endswith(f"(mask of frame {t})") and path in where
    with pytest.raises(frames.BadInput, match=r"Eating.54138969.mat: holds 3 masks.* 5 frames"):
        masks.BsMatMasks(path, 5)
    with pytest.raises(frames.BadInput, match="absent.mat: no such mask file"):
        masks.BsMatMasks(str(tmp_path / "absent.mat"), 3)
    (tmp_path / "v5.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(frames.BadInput, match="v5.mat: not a MATLAB v7.3"):
        masks.BsMatMasks(str(tmp_path / "v5.mat"), 3)


def test_png_masks(tmp_path):
    folder = tmp_path / "S1" / "Eating.54138969"
    folder.mkdir(parents=True)
    Image.fromarray(np.array([[0, 255], [128, 0]], np.uint8)).save(folder / "000004.png")
    source = masks.PngMasks(str(tmp_path), "S1", "Eating", "54138969", [4])
    mask, path = source(4)
    np.testing.assert_allclose(mask, [[0, 1], [128 / 255, 0]])
    assert path == str(folder / "000004.png")
    with pytest.raises(frames.BadInput, match=r"000002.png: no such mask PNG \(frame 2\)"):
        masks.PngMasks(str(tmp_path), "S1", "Eating", "54138969", [4, 2])


def test_camera_background_is_the_median_of_evenly_spread_frames(tmp_path):
    videos = [release.video_path(DUMMY_DIR, "S1", name, "58860488")
              for name in ("Directions 1", "TakingPhoto")]
    every = [f for path in videos for f in video.read_frames(path).values()]  # 10 + 9 frames
    num = 6
    picked = [every[int((k + 0.5) * len(every) / num)] for k in range(num)]
    expected = np.median(np.stack(picked).astype(np.float64), axis=0)
    got = masks.camera_background(videos, num, label="S1/58860488")
    assert got.shape == every[0].shape
    np.testing.assert_array_equal(got, expected)
    # A missing video gives no frame; with none left it is an error naming the camera.
    missing = str(tmp_path / "gone.mp4")
    np.testing.assert_array_equal(masks.camera_background([missing, videos[0]], 2),
                                  np.median(np.stack([every[2], every[7]]), axis=0))
    with pytest.raises(frames.BadInput, match="S1/x: no readable video frame"):
        masks.camera_background([missing], 4, label="S1/x")


def test_median_masks_find_the_person():
    videos = [release.video_path(DUMMY_DIR, "S9", name, "55011271")
              for name in ("Photo 1", "WalkDog")]
    source = masks.MedianMasks(masks.camera_background(videos, 60), videos[1])
    frame = video.read_frames(videos[1], [3])[3]
    found, where = source(3, frame)
    with masks.BsMatMasks(release.bs_mask_path(DUMMY_DIR, "S9", "WalkDog", "55011271"),
                          10) as truth_source:
        truth = truth_source(3)[0] > 0
    found = found > 0
    assert (found & truth).sum() / (found | truth).sum() > 0.75  # IoU with the drawn silhouette
    assert "WalkDog.55011271.mp4 (frame 3" in where
    with pytest.raises(frames.BadInput, match="frame is 64×64 pixels"):
        source(0, np.zeros((64, 64, 3), np.uint8))


def test_dummy_data_is_small():
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(DUMMY_DIR) for f in fs)
    assert size < 1_000_000
