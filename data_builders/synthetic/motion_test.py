"""Tests for the motion-capture readers, resampling, retargeting and split (real bundled clips)."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_builders.synthetic import motion
from maskpose_jax import skeleton

MOCAP_DIR = pathlib.Path(__file__).resolve().parents[1] / "assets" / "mocap"
J = skeleton.JOINT_INDEX
CMU_CLIPS = ("01_01", "131_01", "131_02", "131_03")
DEEPMIMIC_CLIPS = ("backflip", "cartwheel", "crawl", "dance_a", "getup_facedown", "getup_faceup",
                   "jump", "kick", "punch", "roll", "run", "spin", "walk")
# Links (named by child joint) that are one rigid segment in both sources. In CMU the other four
# span several source joints (the spine bends, the collar bones shrug).
RIGID = ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "neck", "head",
         "l_elbow", "l_wrist", "r_elbow", "r_wrist")
FLEXIBLE_IN_CMU = ("spine", "thorax", "l_shoulder", "r_shoulder")


@pytest.fixture(scope="module")
def motions():
    return {m.name: m for m in motion.load_motions(MOCAP_DIR)}


@pytest.fixture(scope="module")
def motions_30(motions):
    return {name: motion.resample(m, 30.0) for name, m in motions.items()}


def bone_lengths(joints_TxJx3):
    parents = list(skeleton.PARENTS[1:])
    return np.linalg.norm(joints_TxJx3[:, 1:] - joints_TxJx3[:, parents], axis=-1)


def test_loads_every_clip_sorted(motions):
    converted = json.loads((MOCAP_DIR / "cmu_npz" / "clips.json").read_text())
    # Sorted by path: cmu/*.bvh, cmu_npz/*.npz, deepmimic/*.txt.
    assert list(motions) == list(CMU_CLIPS) + sorted(converted) + list(DEEPMIMIC_CLIPS)
    for m in motions.values():
        assert m.joints_world_TxJx3.shape[1:] == (skeleton.NUM_JOINTS, 3)
        assert m.joints_world_TxJx3.dtype == np.float64
        assert np.all(np.isfinite(m.joints_world_TxJx3))
        assert m.source == ("cmu" if m.name in CMU_CLIPS else
                            "deepmimic" if m.name in DEEPMIMIC_CLIPS else "npz")
    assert motions["01_01"].joints_world_TxJx3.shape[0] == 2751  # T-pose frame dropped.
    assert motions["131_01"].joints_world_TxJx3.shape[0] == 994
    assert {motions[n].fps for n in CMU_CLIPS} == {120.0}
    assert [motions[n].fps for n in ("backflip", "walk", "cartwheel", "spin")] == [16, 30, 60, 24]


def test_bone_lengths_constant_within_each_clip(motions):
    rigid = [J[n] - 1 for n in RIGID]
    for m in motions.values():
        lengths = bone_lengths(m.joints_world_TxJx3)
        rel_std = lengths.std(axis=0) / lengths.mean(axis=0)
        assert rel_std[rigid].max() < 0.01, m.name
        # Converted CMU clips (npz) have CMU's flexible spine and collar links too.
        assert rel_std.max() < (0.06 if m.source in ("cmu", "npz") else 0.01), m.name


def test_standing_head_height(motions):
    # Upright frames on the floor: pelvis->thorax within ~18 deg of vertical, both ankles low.
    # CMU's head joint is Head's End Site, ~10 cm below the crown: subject 131 measures ~1.40 m
    # there (shoulders at 1.27 m), subject 01 ~1.52 m; the DeepMimic humanoid 1.60 m.
    for name in ("01_01", "131_01", "131_02", "walk", "punch"):
        x = motions[name].joints_world_TxJx3
        trunk = x[:, J["thorax"]] - x[:, J["pelvis"]]
        upright = ((trunk[:, 2] / np.linalg.norm(trunk, axis=1) > 0.95)
                   & (x[:, [J["l_ankle"], J["r_ankle"]], 2].max(axis=1) < 200.0))
        assert upright.mean() > 0.5, name
        assert 1350.0 < np.median(x[upright, J["head"], 2]) < 1900.0, name


def test_feet_on_the_floor_while_walking(motions):
    for name in ("131_01", "131_02", "walk"):
        x = motions[name].joints_world_TxJx3
        lowest_ankle_T = x[:, [J["l_ankle"], J["r_ankle"]], 2].min(axis=1)
        assert np.mean(lowest_ankle_T < 150.0) > 0.85, name
        assert lowest_ankle_T.min() > 30.0, name


def test_left_hip_on_the_persons_left(motions_30):
    # Forward = horizontal pelvis displacement over 1 s (less in short clips); left = up x forward.
    for name in ("01_01", "131_01", "131_02", "walk", "run"):
        x = motions_30[name].joints_world_TxJx3
        h = min(15, (len(x) - 1) // 4)
        step = x[2 * h:, J["pelvis"]] - x[:-2 * h, J["pelvis"]]
        step[:, 2] = 0.0
        moving = np.linalg.norm(step, axis=1) > 200.0 * 2 * h / 30.0
        left = np.cross([0.0, 0.0, 1.0], step[moving])
        hips = (x[h:len(x) - h, J["l_hip"]] - x[h:len(x) - h, J["r_hip"]])[moving]
        assert moving.sum() >= 10, name
        assert np.mean(np.sum(hips * left, axis=1) > 0) > 0.75, name


def test_bvh_forward_kinematics_matches_scipy_per_frame():
    text = (MOCAP_DIR / "cmu" / "131_01.bvh").read_text()
    joints = motion._parse_bvh_hierarchy(text.split("MOTION")[0].split())
    num_channels = sum(len(j["channels"]) for j in joints)
    rng = np.random.default_rng(0)
    channels_TxC = rng.uniform(-180.0, 180.0, size=(3, num_channels))
    got = motion._bvh_forward_kinematics(joints, channels_TxC)
    for t in range(3):
        column, positions, rotations = 0, [], []
        for joint in joints:
            names = joint["channels"]
            values = channels_TxC[t, column:column + len(names)]
            column += len(names)
            rot_names = [c[0] for c in names if c.endswith("rotation")]
            rot_values = [v for c, v in zip(names, values) if c.endswith("rotation")]
            local = (Rotation.from_euler("".join(rot_names), rot_values, degrees=True)
                     if rot_names else Rotation.identity())
            offset = joint["offset"] + np.array(
                [sum(v for c, v in zip(names, values) if c == f"{a}position") for a in "XYZ"])
            if joint["parent"] < 0:
                positions.append(offset)
                rotations.append(local)
            else:
                parent_rotation = rotations[joint["parent"]]
                positions.append(positions[joint["parent"]] + parent_rotation.apply(offset))
                rotations.append(parent_rotation * local)
        np.testing.assert_allclose(got[t], np.array(positions), atol=1e-9)


def test_quaternion_matrices_match_scipy():
    wxyz = np.random.default_rng(1).normal(size=(8, 4))
    expected = Rotation.from_quat(wxyz[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(motion._quaternion_matrices(wxyz), expected, atol=1e-12)


def _deepmimic_frame(root_m, root_wxyz, r_knee_rad=0.0, dt=1.0 / 30.0):
    identity = [1.0, 0.0, 0.0, 0.0]
    return ([dt] + list(root_m) + list(root_wxyz) + identity * 2 + identity + [r_knee_rad]
            + identity * 2 + [0.0] + identity + [0.0] + identity * 2 + [0.0])


def test_deepmimic_forward_kinematics_by_hand(tmp_path):
    shutil.copy(MOCAP_DIR / "deepmimic" / "humanoid.urdf", tmp_path)
    half = np.sqrt(0.5)
    frames = [_deepmimic_frame([0.1, 0.9, 0.2], [1, 0, 0, 0], r_knee_rad=-np.pi / 2),
              _deepmimic_frame([0.1, 0.9, 0.2], [half, 0, half, 0])]  # 90 deg about up.
    (tmp_path / "pose.txt").write_text(json.dumps({"Loop": "none", "Frames": frames}))
    m = motion.read_deepmimic(tmp_path / "pose.txt")
    assert m.name == "pose" and m.fps == 30.0 and m.joints_world_TxJx3.shape == (2, 17, 3)

    def world(file_xyz_m):  # File Y-up metres -> world Z-up mm: (x, y, z) -> (x, -z, y).
        x, y, z = 1000.0 * np.asarray(file_xyz_m)
        return np.array([x, -z, y])

    root, u = np.array([0.1, 0.9, 0.2]), 0.25  # URDF unit in metres.
    got = m.joints_world_TxJx3[0]
    np.testing.assert_allclose(got[J["pelvis"]], world(root), atol=1e-9)
    np.testing.assert_allclose(got[J["r_hip"]], world(root + [0, 0, u * 0.339548]), atol=1e-9)
    r_knee = root + [0, -u * 1.686184, u * 0.339548]
    np.testing.assert_allclose(got[J["r_knee"]], world(r_knee), atol=1e-9)
    # Knee bent 90 deg about local z: the shin points backwards (-x, the body faces +x).
    np.testing.assert_allclose(got[J["r_ankle"]], world(r_knee + [-u * 1.63948, 0, 0]), atol=1e-9)
    l_ankle = root + [0, -u * (1.686184 + 1.63948), -u * 0.339548]
    np.testing.assert_allclose(got[J["l_ankle"]], world(l_ankle), atol=1e-9)
    chest = root + [0, u * 0.944604, 0]
    neck = chest + [0, u * 0.895576, 0]
    np.testing.assert_allclose(got[J["spine"]], world(chest), atol=1e-9)
    np.testing.assert_allclose(got[J["thorax"]], world(neck), atol=1e-9)
    np.testing.assert_allclose(got[J["neck"]], world(neck + [u * 0.41, u * 0.7, 0]), atol=1e-9)
    np.testing.assert_allclose(got[J["head"]], world(neck + [0, u * 1.11, 0]), atol=1e-9)
    l_shoulder = chest + u * np.array([-0.0962, 0.974, -0.73244])
    np.testing.assert_allclose(got[J["l_shoulder"]], world(l_shoulder), atol=1e-9)
    l_wrist = l_shoulder + [0, -u * (1.099152 + 1.035788), 0]
    np.testing.assert_allclose(got[J["l_wrist"]], world(l_wrist), atol=1e-9)
    # Root turned 90 deg about up: file +z (the right hip's side) becomes file +x.
    np.testing.assert_allclose(m.joints_world_TxJx3[1, J["r_hip"]],
                               world(root + [u * 0.339548, 0, 0]), atol=1e-9)


def test_resample_counts_fps_and_values(motions):
    m = motions["131_01"]
    r = motion.resample(m, 30.0)
    assert r.fps == 30.0 and r.name == m.name and r.source == m.source
    assert len(r.joints_world_TxJx3) == (len(m.joints_world_TxJx3) - 1) // 4 + 1 == 249
    np.testing.assert_allclose(r.joints_world_TxJx3, m.joints_world_TxJx3[::4], atol=1e-9)

    m = motions["spin"]  # 24 Hz -> 30 Hz: blended between frames.
    r = motion.resample(m, 30.0)
    num_in = len(m.joints_world_TxJx3)
    assert len(r.joints_world_TxJx3) == int((num_in - 1) * 30 / 24) + 1 == 133
    flat = m.joints_world_TxJx3.reshape(num_in, -1)
    expected = np.stack([np.interp(np.arange(133) / 30.0, np.arange(num_in) / 24.0, flat[:, k])
                         for k in range(flat.shape[1])], axis=1)
    np.testing.assert_allclose(r.joints_world_TxJx3.reshape(133, -1), expected, atol=1e-9)
    assert len(motion.resample(m, 24.0).joints_world_TxJx3) == num_in


def test_sample_bone_lengths():
    h36m = np.array(motion.H36M_BONE_LENGTHS_MM)
    assert h36m.shape == (skeleton.NUM_JOINTS,) and h36m[skeleton.PELVIS] == 0.0
    assert 420.0 < h36m[J["r_knee"]] < 470.0 and 260.0 < h36m[J["l_elbow"]] < 300.0
    draws = [motion.sample_bone_lengths(np.random.default_rng(seed)) for seed in range(50)]
    np.testing.assert_array_equal(draws[0], motion.sample_bone_lengths(np.random.default_rng(0)))
    assert not np.allclose(draws[0], draws[1])
    for lengths in draws:
        for a, b in skeleton.LR_PAIRS:
            assert lengths[a] == lengths[b]
        ratio = lengths[1:] / h36m[1:]
        assert np.all(ratio >= 0.92 * 0.95 - 1e-12) and np.all(ratio <= 1.08 * 1.05 + 1e-12)
    ratios = np.array([d[1:] / h36m[1:] for d in draws])
    assert ratios.max() - ratios.min() > 0.15  # Both the scale and the jitter vary.


def test_retarget_lengths_directions_and_placement(motions_30):
    for seed, name in enumerate(("walk", "131_02", "crawl", "backflip")):
        x = motions_30[name].joints_world_TxJx3
        lengths = motion.sample_bone_lengths(np.random.default_rng(seed))
        y = motion.retarget(x, lengths)
        assert y.shape == x.shape
        np.testing.assert_allclose(bone_lengths(y), np.broadcast_to(lengths[1:], (len(x), 16)),
                                   rtol=1e-12)
        parents = list(skeleton.PARENTS[1:])
        before, after = x[:, 1:] - x[:, parents], y[:, 1:] - y[:, parents]
        cosine = np.sum(before * after, -1) / np.linalg.norm(before, axis=-1) / lengths[1:]
        np.testing.assert_allclose(cosine, 1.0, atol=1e-12)
        np.testing.assert_allclose(y[:, J["pelvis"], :2].mean(axis=0), 0.0, atol=1e-9)
        assert y[..., 2].min() >= 0.0, name
        old_leg = bone_lengths(x)[:, [J[n] - 1 for n in ("r_knee", "r_ankle")]].sum(1).mean()
        old_leg += bone_lengths(x)[:, [J[n] - 1 for n in ("l_knee", "l_ankle")]].sum(1).mean()
        ratio = 2.0 * (lengths[J["r_knee"]] + lengths[J["r_ankle"]]) / old_leg
        np.testing.assert_allclose(y[:, 0] - y[:1, 0], ratio * (x[:, 0] - x[:1, 0]), atol=1e-9)
    for name in ("walk", "131_02"):  # On their feet: the lowest ankle 80 mm above the floor.
        y = motion.retarget(motions_30[name].joints_world_TxJx3, motion.H36M_BONE_LENGTHS_MM)
        assert abs(y[:, [J["l_ankle"], J["r_ankle"]], 2].min() - 80.0) < 1e-9
        assert 1550.0 < np.median(y[:, J["head"], 2]) < 1800.0


def test_splits_are_whole_clips_by_category_and_deterministic(motions_30):
    categories = motion.clip_categories(MOCAP_DIR)
    assert set(motions_30) <= set(categories)  # every bundled clip has a category
    frames = {n: len(m.joints_world_TxJx3) for n, m in motions_30.items()}
    split_of = motion.assign_splits(frames, categories)
    assert set(split_of) == set(frames) and set(split_of.values()) == set(motion.SPLITS)
    by_split = {s: {n for n in frames if split_of[n] == s} for s in motion.SPLITS}
    seen = {categories[n] for n in by_split["train"]}
    # test_unseen holds exactly the unseen categories; test and val only categories of train.
    assert {categories[n] for n in by_split["test_unseen"]} == set(motion.UNSEEN_CATEGORIES)
    assert not seen & set(motion.UNSEEN_CATEGORIES)
    assert {categories[n] for n in by_split["test"] | by_split["val"]} <= seen
    total = sum(frames.values())
    train_frames = sum(frames[n] for n in by_split["train"])
    assert train_frames >= 20_000  # issue: at least 20,000 distinct training frames at 30 Hz
    for split, share in (("test", motion.TEST_SHARE), ("val", motion.VAL_SHARE)):
        held = sum(frames[n] for n in by_split[split]) / total
        assert 0.5 * share < held < 1.5 * share, split
    assert motion.assign_splits(dict(reversed(list(frames.items()))), categories) == split_of
    # A clip of its own category trains; an unknown one is "misc".
    assert motion.assign_splits({"lonely": 10}, {}) == {"lonely": "train"}


def test_mirror_swaps_labels_and_keeps_bone_lengths(motions_30):
    clip = motions_30["131_01"]
    mirrored = motion.mirror(clip)
    assert mirrored.name == "131_01_mirror"
    x, y = clip.joints_world_TxJx3, mirrored.joints_world_TxJx3
    flipped = skeleton.FLIP_PERMUTATION
    np.testing.assert_allclose(y[:, flipped] * [1, -1, 1], x)
    np.testing.assert_allclose(bone_lengths(y)[:, [J[n] - 1 for n in ("l_knee", "l_ankle")]],
                               bone_lengths(x)[:, [J[n] - 1 for n in ("r_knee", "r_ankle")]])
    # Still the same kind of person (a mirror image without the swap is not): the left hip lies
    # on the same side of (knees' forward bend) x (up) in both.
    def handedness(joints):
        left = joints[:, J["l_hip"]] - joints[:, J["r_hip"]]
        up = joints[:, J["thorax"]] - joints[:, J["pelvis"]]
        forward = sum(joints[:, J[k]] - 0.5 * (joints[:, J[h]] + joints[:, J[a]])
                      for h, k, a in (("r_hip", "r_knee", "r_ankle"), ("l_hip", "l_knee", "l_ankle")))
        return np.sign(np.median(np.einsum("ti,ti->t", np.cross(forward, up), left)))
    assert handedness(x) == handedness(y) != 0
    assert handedness(x * [1, -1, 1]) == -handedness(x)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        motion.load_motions(tmp_path / "no_such_folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "LICENSE.txt").write_text("notice\n")
    with pytest.raises(ValueError, match="empty"):
        motion.load_motions(tmp_path / "empty")


def test_malformed_bvh_files(tmp_path):
    bad = tmp_path / "bad.bvh"
    bad.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition "
                   "Zposition\n}\nMOTION\nFrames: 2\nFrame Time: 0.01\n1 2 3\n")
    with pytest.raises(ValueError, match="bad.bvh"):
        motion.read_bvh(bad)
    with pytest.raises(ValueError, match="bad.bvh"):
        motion.load_motions(tmp_path)
    bad.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0\n")
    with pytest.raises(ValueError, match="bad.bvh"):
        motion.read_bvh(bad)
    renamed = tmp_path / "renamed.bvh"
    renamed.write_text((MOCAP_DIR / "cmu" / "131_01.bvh").read_text()
                       .replace("JOINT RightKnee", "JOINT RightKneeCap"))
    with pytest.raises(ValueError, match=r"renamed\.bvh.*RightKnee"):
        motion.read_bvh(renamed)


def test_malformed_deepmimic_clips(tmp_path):
    clip = tmp_path / "clip.txt"
    clip.write_text(json.dumps({"Frames": [_deepmimic_frame([0, 0.9, 0], [1, 0, 0, 0])[:-1]]}))
    with pytest.raises(FileNotFoundError, match="humanoid.urdf"):
        motion.read_deepmimic(clip)
    shutil.copy(MOCAP_DIR / "deepmimic" / "humanoid.urdf", tmp_path)
    with pytest.raises(ValueError, match="clip.txt"):
        motion.read_deepmimic(clip)
    clip.write_text('{"Frames": [[0.1, 0.2')
    with pytest.raises(ValueError, match="clip.txt"):
        motion.load_motions(tmp_path)
