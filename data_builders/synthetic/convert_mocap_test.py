"""Tests for the motion-capture converter: against an independent BVH forward kinematics, bad
inputs, and the npz round trip through `motion.load_motions` (short cuts of bundled clips)."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from data_builders.synthetic import convert_mocap
from data_builders.synthetic import motion
from maskpose_jax import skeleton

MOCAP_DIR = pathlib.Path(__file__).resolve().parents[1] / "assets" / "mocap"
UNIT_MM = 25.4 / 0.45  # CMU's length unit, 1/0.45 inch.
# Our 17 joints (skeleton.JOINT_NAMES order) -> BVH joints; a pair is averaged, "*_end" is the
# joint's End Site. Written out here, independently of motion._BVH_NAMINGS.
MOTIONBUILDER = ("LeftUpLeg RightUpLeg", "RightUpLeg", "RightLeg", "RightFoot", "LeftUpLeg",
                 "LeftLeg", "LeftFoot", "Spine", "Neck1", "Head", "Head_end", "LeftArm",
                 "LeftForeArm", "LeftHand", "RightArm", "RightForeArm", "RightHand")
MAX3DS = ("LeftHip RightHip", "RightHip", "RightKnee", "RightAnkle", "LeftHip", "LeftKnee",
          "LeftAnkle", "Chest", "Neck", "Head", "Head_end", "LeftShoulder", "LeftElbow",
          "LeftWrist", "RightShoulder", "RightElbow", "RightWrist")


def _rotation(axis, degrees):
    """3x3 rotation by `degrees` about the coordinate axis "X", "Y" or "Z"."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _independent_fk(text):
    """Every BVH joint's global position (file units, Y up) per frame, by a plain per-frame
    loop. Returns ({name: index}, positions_TxNx3 float64, frame_time)."""
    head, body = text.split("MOTION", 1)
    tokens, joints, stack, i = head.split(), [], [], 1
    while i < len(tokens):
        t = tokens[i]
        if t in ("ROOT", "JOINT", "End"):
            name = tokens[i + 1] if t != "End" else joints[stack[-1]]["name"] + "_end"
            joints.append({"name": name, "parent": stack[-1] if stack else -1, "channels": []})
            i += 2
        elif t == "{":
            stack.append(len(joints) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            joints[stack[-1]]["offset"] = np.array(tokens[i + 1:i + 4], np.float64)
            i += 4
        else:
            assert t == "CHANNELS", t
            n = int(tokens[i + 1])
            joints[stack[-1]]["channels"] = tokens[i + 2:i + 2 + n]
            i += 2 + n
    words = body.split()
    num_frames, frame_time = int(words[1]), float(words[4])
    values = np.array(words[5:], np.float64).reshape(num_frames, -1)
    positions = np.zeros((num_frames, len(joints), 3))
    for f in range(num_frames):
        column, rotations = 0, []
        for k, joint in enumerate(joints):
            local, translation = np.eye(3), joint["offset"].copy()
            for channel in joint["channels"]:
                if channel.endswith("position"):
                    translation["XYZ".index(channel[0])] += values[f, column]
                else:
                    local = local @ _rotation(channel[0], values[f, column])
                column += 1
            if joint["parent"] < 0:
                positions[f, k], rotation = translation, local
            else:
                parent_rotation = rotations[joint["parent"]]
                positions[f, k] = positions[f, joint["parent"]] + parent_rotation @ translation
                rotation = parent_rotation @ local
            rotations.append(rotation)
    return {j["name"]: k for k, j in enumerate(joints)}, positions, frame_time


def _expected_joints_mm(text, naming, drop_first):
    """Our 17 joints by the independent FK: mm, world (x, -z, y), every 4th 120 Hz frame."""
    index, positions, frame_time = _independent_fk(text)
    assert abs(1.0 / frame_time - 120.0) < 0.01
    ours = np.stack([positions[:, [index[n] for n in entry.split()]].mean(axis=1)
                     for entry in naming], axis=1)
    ours = ours[1:] if drop_first else ours
    x, y, z = np.moveaxis(ours[::4] * UNIT_MM, -1, 0)
    return np.stack([x, -z, y], axis=-1)


def _cut_bvh(source, num_frames):
    """The text of `source` (a BVH file) cut to its first `num_frames` frames."""
    head, body = source.read_text().split("MOTION", 1)
    lines = [line for line in body.strip().splitlines() if line.strip()]
    assert lines[0].startswith("Frames:") and lines[1].startswith("Frame Time:")
    return (head + f"MOTION\nFrames: {num_frames}\n{lines[1].strip()}\n"
            + "\n".join(lines[2:2 + num_frames]) + "\n")


@pytest.mark.parametrize("clip, naming, t_pose, frames", [("01_01", MOTIONBUILDER, True, 10),
                                                           ("131_01", MAX3DS, False, 11)])
def test_converter_matches_independent_forward_kinematics(tmp_path, clip, naming, t_pose,
                                                          frames):
    # 41 frames at 120 Hz (01_01: a T-pose, then 40) -> every 4th at 30 Hz.
    text = _cut_bvh(MOCAP_DIR / "cmu" / f"{clip}.bvh", 41)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{clip}.bvh").write_text(text)
    records = convert_mocap.convert([tmp_path / "src"], tmp_path / "out")

    with np.load(tmp_path / "out" / f"{clip}.npz") as data:
        joints, fps, source = data["joints_world_TxJx3"], float(data["fps"]), str(data["source"])
    expected = _expected_joints_mm(text, naming, drop_first=t_pose)
    assert joints.dtype == np.float32 and fps == 30.0 and source.endswith(f"src/{clip}.bvh")
    assert joints.shape == expected.shape == (frames, skeleton.NUM_JOINTS, 3)
    assert np.abs(joints - expected).max() < 1.0  # mm
    assert records[clip]["frames"] == frames and records[clip]["source_fps"] == 120.0
    # The T-pose of 01_01 is dropped by read_bvh, so the converter finds none left.
    assert records[clip]["t_pose_dropped"] is False
    assert convert_mocap.is_t_pose(expected[0]) is False
    index = json.loads((tmp_path / "out" / "clips.json").read_text())
    assert index[clip]["category"] == "unknown" and index[clip]["frames"] == frames


def test_t_pose_detection_and_drop():
    # Frame 0 of 01_01 is the T-pose that the cgspeed release adds.
    t_pose = _expected_joints_mm(_cut_bvh(MOCAP_DIR / "cmu" / "01_01.bvh", 1), MOTIONBUILDER,
                                 drop_first=False)[0]
    assert convert_mocap.is_t_pose(t_pose)
    walking = motion.read_bvh(MOCAP_DIR / "cmu" / "131_01.bvh").joints_world_TxJx3[:50]
    kept, dropped = convert_mocap.drop_t_pose(np.concatenate([t_pose[None], walking]))
    assert dropped and np.array_equal(kept, walking)
    assert convert_mocap.drop_t_pose(walking)[1] is False


def test_refuses_a_folder_with_a_bad_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "131_01.bvh").write_text(_cut_bvh(MOCAP_DIR / "cmu" / "131_01.bvh", 41))
    truncated = _cut_bvh(MOCAP_DIR / "cmu" / "131_03.bvh", 41)
    (src / "truncated.bvh").write_text(truncated[:len(truncated) - 500])
    with pytest.raises(ValueError, match=r"truncated\.bvh"):
        convert_mocap.convert([src], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # Nothing is written when any input is bad.

    # A clip that reads fine but is implausible (lengths in the wrong unit) is refused too.
    (src / "truncated.bvh").unlink()
    catalog = {"sources": {}, "clips": {"tiny": {"source": "x", "path": "src/131_01.bvh",
                                                 "category": "walk", "description": "d",
                                                 "length_unit_mm": 10.0}}}
    with pytest.raises(ValueError, match=r"131_01\.bvh.*head height"):
        convert_mocap.convert([src], tmp_path / "out", catalog)
    with pytest.raises(FileNotFoundError, match="no_such"):
        convert_mocap.convert([tmp_path / "no_such"], tmp_path / "out")


def test_npz_round_trip_through_load_motions(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "131_02.bvh").write_text(_cut_bvh(MOCAP_DIR / "cmu" / "131_02.bvh", 81))
    catalog = {"sources": {"bundled": {"repository": "example.org/bundled", "commit": "0" * 40,
                                       "licence": "CMU terms"}},
               "clips": {"walk_cut": {"source": "bundled", "path": "src/131_02.bvh",
                                      "category": "walk", "description": "start, walk"}}}
    mocap = tmp_path / "mocap"
    shutil.copytree(MOCAP_DIR / "deepmimic", mocap / "deepmimic",
                    ignore=lambda d, names: [n for n in names if n not in
                                             ("walk.txt", "humanoid.urdf")])
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    assert convert_mocap.main([str(src), "--out", str(mocap / "cmu_npz"),
                               "--catalog", str(tmp_path / "catalog.json")]) == 0

    motions = {m.name: m for m in motion.load_motions(mocap)}  # clips.json is not a clip.
    assert sorted(motions) == ["walk", "walk_cut"]
    clip = motions["walk_cut"]
    assert clip.source == "npz" and clip.fps == 30.0
    assert clip.joints_world_TxJx3.dtype == np.float64
    expected = motion.resample(motion.read_bvh(src / "131_02.bvh"), 30.0).joints_world_TxJx3
    assert clip.joints_world_TxJx3.shape == expected.shape == (21, skeleton.NUM_JOINTS, 3)
    assert np.abs(clip.joints_world_TxJx3 - expected).max() < 1e-3
    assert motions["walk"].source == "deepmimic"

    index = json.loads((mocap / "cmu_npz" / "clips.json").read_text())
    assert index["walk_cut"]["source"] == "example.org/bundled@" + "0" * 40 + ":src/131_02.bvh"
    assert index["walk_cut"]["category"] == "walk" and index["walk_cut"]["frames"] == 21
    markdown = (mocap / "cmu_npz" / "CLIPS.md").read_text()
    assert "| walk_cut | walk | start, walk | 21 |" in markdown
    assert convert_mocap.CMU_ACKNOWLEDGEMENT in markdown

    (mocap / "cmu_npz" / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"broken\.npz"):
        motion.load_motions(mocap)
