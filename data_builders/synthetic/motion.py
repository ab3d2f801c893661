"""Motion capture for the synthetic dataset: readers, resampling, retargeting and the clip split.

Readers return `Motion`s in the project's world frame: millimetres, Z up, X/Y on the floor, in the
17-joint order of `maskpose_jax.skeleton`. Both sources are Y-up; `_WORLD_FROM_YUP` maps
(x, y, z) -> (x, -z, y), a proper rotation (det +1), so a person's left stays on their left.
The files' floor (y = 0) becomes z = 0; readers do not re-ground or recentre (`retarget` does).

Sources (data_builders/assets/mocap/, formats in its README):
- CMU BVH, both releases: MotionBuilder-friendly (`01_01`, whose frame 0 is an added T-pose and
  is dropped) and 3dsMax-friendly (`131_*`); length unit 1/0.45 inch.
- DeepMimic JSON clips with `humanoid.urdf` (URDF unit 0.25 m).
"""

import json
import math
import pathlib
import re
import xml.etree.ElementTree as ET
from typing import NamedTuple

import numpy as np

from maskpose_jax import skeleton

_WORLD_FROM_YUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_CMU_UNIT_MM = 25.4 / 0.45
_URDF_UNIT_MM = 250.0


class Motion(NamedTuple):
    """One clip. `joints_world_TxJx3`: float64, mm, world frame (Z up); `fps`: frames per second."""
    name: str
    source: str
    joints_world_TxJx3: np.ndarray
    fps: float


def _snap_fps(fps):
    """Rates are stored as rounded frame times (0.0083333 s, 0.016666 s): snap to the integer."""
    rounded = round(fps)
    return float(rounded) if rounded > 0 and abs(fps - rounded) <= 1e-3 * rounded else float(fps)


def _axis_angle_matrices(axis_3, angles_T):
    """Rotations by `angles_T` (radians) about the unit axis `axis_3` (Rodrigues). Returns Tx3x3."""
    x, y, z = np.asarray(axis_3, np.float64) / np.linalg.norm(axis_3)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    s, c = np.sin(angles_T)[:, None, None], np.cos(angles_T)[:, None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _quaternion_matrices(wxyz_Tx4):
    """Rotation matrices of quaternions (w, x, y, z), normalized first. Returns Tx3x3."""
    q = wxyz_Tx4 / np.linalg.norm(wxyz_Tx4, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _interpolate(times_in_T, values_TxD, times_out_N):
    """Piecewise-linear interpolation along the first axis; times outside are clamped."""
    if len(times_in_T) == 1:
        return np.repeat(values_TxD[:1], len(times_out_N), axis=0)
    i = np.clip(np.searchsorted(times_in_T, times_out_N, side="right") - 1, 0, len(times_in_T) - 2)
    w = np.clip((times_out_N - times_in_T[i]) / (times_in_T[i + 1] - times_in_T[i]), 0.0, 1.0)
    w = w.reshape((-1,) + (1,) * (values_TxD.ndim - 1))
    return (1.0 - w) * values_TxD[i] + w * values_TxD[i + 1]


# CMU BVH

# Our 17 joints -> BVH joints (`A+B`: their midpoint; `X.end`: X's End Site), per release; the
# first naming whose joints are all present is used. Thorax is the upper neck
# joint (MotionBuilder `Neck1`, 3dsMax `Neck`): it sits ~3 cm above the shoulders, ~10 cm below
# `Head`; the lower neck joint (`Neck` / `lowerneck`) coincides with the top of the thoracic spine.
_BVH_NAMINGS = {
    "MotionBuilder": tuple(entry.split("+") for entry in (
        "LeftUpLeg+RightUpLeg RightUpLeg RightLeg RightFoot LeftUpLeg LeftLeg LeftFoot Spine "
        "Neck1 Head Head.end LeftArm LeftForeArm LeftHand RightArm RightForeArm RightHand"
    ).split()),
    "3dsMax": tuple(entry.split("+") for entry in (
        "LeftHip+RightHip RightHip RightKnee RightAnkle LeftHip LeftKnee LeftAnkle Chest Neck "
        "Head Head.end LeftShoulder LeftElbow LeftWrist RightShoulder RightElbow RightWrist"
    ).split()),
    # Daz-friendly release (cgspeed, retargeted onto one generic figure, length unit 1 cm, so a
    # caller rescales by 10 / _CMU_UNIT_MM). `head` has no End Site: the eyes' midpoint stands
    # in for the head joint (8 cm above and 8 cm in front of `head`); spine is the midpoint of
    # `abdomen` and `chest` (~24 cm above the hips, as in H36M).
    "Daz": tuple(entry.split("+") for entry in (
        "lThigh+rThigh rThigh rShin rFoot lThigh lShin lFoot abdomen+chest neck head "
        "leftEye+rightEye lShldr lForeArm lHand rShldr rForeArm rHand"
    ).split()),
}
_BVH_CHANNELS = frozenset(f"{a}{k}" for a in "XYZ" for k in ("position", "rotation"))


def _parse_bvh_hierarchy(tokens):
    """Joints (dicts: name, parent, offset, channels) in file order, from HIERARCHY's tokens."""
    if tokens[:1] != ["HIERARCHY"]:
        raise ValueError("does not start with HIERARCHY")
    joints, stack, i = [], [], 1
    while i < len(tokens):
        token = tokens[i]
        opens = token in ("ROOT", "JOINT", "End") and tokens[i + 2] == "{"
        opens = opens and (token == "ROOT") == (not stack)  # One root, enclosing all joints.
        if opens and (token != "End" or tokens[i + 1] == "Site"):
            name = joints[stack[-1]]["name"] + ".end" if token == "End" else tokens[i + 1]
            joints.append({"name": name, "parent": stack[-1] if stack else -1, "channels": ()})
            stack.append(len(joints) - 1)
            i += 3
        elif token == "}" and stack:
            stack.pop()
            i += 1
        elif token == "OFFSET" and stack:
            joints[stack[-1]]["offset"] = np.array(tokens[i + 1:i + 4], np.float64)
            i += 4
        elif token == "CHANNELS" and stack:
            n = int(tokens[i + 1])
            channels = tuple(tokens[i + 2:i + 2 + n])
            if len(channels) != n or not set(channels) <= _BVH_CHANNELS:
                raise ValueError(f"bad CHANNELS {channels} of {joints[stack[-1]]['name']}")
            joints[stack[-1]]["channels"] = channels
            i += 2 + n
        else:
            raise ValueError(f"unexpected {token!r} at token {i} of the hierarchy")
    if stack or not joints:
        raise ValueError("unbalanced braces or empty hierarchy")
    for joint in joints:
        if joint.get("offset", np.zeros(0)).shape != (3,):
            raise ValueError(f"joint {joint['name']} has no OFFSET of 3 numbers")
    return joints


def _bvh_forward_kinematics(joints, channels_TxC):
    """Global joint positions (file units, file frame) of every BVH joint. Returns TxNx3.

    Local rotation = product of the joint's rotation channels in listed order (degrees);
    position = parent position + parent global rotation @ (offset + position channels).
    """
    num_frames = channels_TxC.shape[0]
    positions = np.zeros((num_frames, len(joints), 3))
    rotations = np.zeros((num_frames, len(joints), 3, 3))
    column = 0
    for k, joint in enumerate(joints):
        local = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
        translation = np.broadcast_to(joint["offset"], (num_frames, 3)).copy()
        for channel in joint["channels"]:
            axis = "XYZ".index(channel[0])
            values = channels_TxC[:, column]
            column += 1
            if channel.endswith("position"):
                translation[:, axis] += values
            else:
                local = local @ _axis_angle_matrices(np.eye(3)[axis], np.deg2rad(values))
        parent = joint["parent"]
        if parent < 0:
            positions[:, k], rotations[:, k] = translation, local
        else:
            positions[:, k] = positions[:, parent] + np.einsum(
                "tij,tj->ti", rotations[:, parent], translation)
            rotations[:, k] = rotations[:, parent] @ local
    return positions


def read_bvh(path):
    """Reads a CMU BVH clip (either release) into our 17 joints.

    Args:
      path: a `.bvh` file.
    Returns:
      Motion with source "cmu", name = file stem, joints in mm (world frame, Z up) at the file's
      rate (120 Hz for CMU).
    Raises:
      ValueError naming the file if it is malformed or lacks joints of both known namings.
    """
    path = pathlib.Path(path)
    text = path.read_text(errors="replace")
    try:
        head, body = re.split(r"^\s*MOTION\s*$", text, maxsplit=1, flags=re.MULTILINE)
    except ValueError:
        raise ValueError(f"malformed BVH file {path}: no MOTION section") from None
    try:
        joints = _parse_bvh_hierarchy(head.split())
        tokens = body.split()
        if tokens[:1] != ["Frames:"] or tokens[2:4] != ["Frame", "Time:"]:
            raise ValueError("MOTION must start with 'Frames:' and 'Frame Time:'")
        num_frames, frame_time = int(tokens[1]), float(tokens[4])
        num_channels = sum(len(j["channels"]) for j in joints)
        values = np.array(tokens[5:], dtype=np.float64)
        if num_frames < 1 or frame_time <= 0 or values.size != num_frames * num_channels:
            raise ValueError(f"{values.size} values for {num_frames} frames x {num_channels} "
                             f"channels, frame time {frame_time}")
    except (ValueError, IndexError) as err:
        raise ValueError(f"malformed BVH file {path}: {err}") from err
    names = {joint["name"]: k for k, joint in enumerate(joints)}
    missing = {}
    for naming, sources in _BVH_NAMINGS.items():
        missing[naming] = sorted({n for group in sources for n in group} - names.keys())
        if not missing[naming]:
            break
    else:
        raise ValueError(f"BVH file {path} lacks joints we need: " + "; ".join(
            f"{naming} naming misses {m}" for naming, m in missing.items()))
    channels_TxC = values.reshape(num_frames, num_channels)
    if naming == "MotionBuilder" and num_frames > 1:  # This release prepends a T-pose frame.
        channels_TxC = channels_TxC[1:]
    positions = _bvh_forward_kinematics(joints, channels_TxC)
    joints_TxJx3 = np.stack(
        [positions[:, [names[n] for n in group]].mean(axis=1) for group in sources], axis=1)
    joints_TxJx3 = (joints_TxJx3 * _CMU_UNIT_MM) @ _WORLD_FROM_YUP.T
    return Motion(path.stem, "cmu", joints_TxJx3, _snap_fps(1.0 / frame_time))


# DeepMimic

# Channels of a DeepMimic frame after dt (1), root position (3) and root rotation (4).
_DEEPMIMIC_CHANNELS = {
    "chest": 4, "neck": 4, "right_hip": 4, "right_knee": 1, "right_ankle": 4,
    "right_shoulder": 4, "right_elbow": 1, "left_hip": 4, "left_knee": 1, "left_ankle": 4,
    "left_shoulder": 4, "left_elbow": 1}
_DEEPMIMIC_FRAME_SIZE = 8 + sum(_DEEPMIMIC_CHANNELS.values())
# Our 17 joints -> URDF links, whose frame origins are the joints that move them; the humanoid has
# no head joints, see `_head_points_in_neck_link`. The pelvis is the root link's origin, which
# is the hips' midpoint (hip origins are (0, 0, +-0.3395)); spine is the chest joint (23.6 cm
# above the pelvis); thorax is the neck joint, the base of the neck at shoulder height.
_DEEPMIMIC_LINKS = (
    "root", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "chest", "neck", "<nose>", "<head>", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist")


def _xml_vector(element, key, default):
    """The numbers of an XML attribute (`default` if the element or attribute is absent)."""
    return np.array((default if element is None else element.get(key, default)).split(), float)


def _read_urdf(path):
    """URDF joints {name: (parent link, child link, type, origin_3, axis_3)} in file order, and the
    `neck` link's collision sphere (centre_3, radius); URDF units."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepMimic skeleton {path} not found")
    try:
        root = ET.fromstring(path.read_bytes().split(b"\0", 1)[0])
        joints = {}
        for e in root.iter("joint"):
            if np.any(_xml_vector(e.find("origin"), "rpy", "0 0 0")):
                raise ValueError(f"joint {e.get('name')} has a rotated origin (rpy)")
            joints[e.get("name")] = (
                e.find("parent").get("link"), e.find("child").get("link"), e.get("type"),
                _xml_vector(e.find("origin"), "xyz", "0 0 0"),
                _xml_vector(e.find("axis"), "xyz", "1 0 0"))
        neck = root.find("./link[@name='neck']/collision")
        sphere = (_xml_vector(neck.find("origin"), "xyz", "0 0 0"),
                  float(neck.find("geometry/sphere").get("radius")))
    except (ET.ParseError, AttributeError, ValueError) as err:
        raise ValueError(f"malformed URDF {path}: {err}") from err
    return joints, sphere


def _head_points_in_neck_link(head_sphere):
    """Nose and head top in the `neck` link frame (URDF units), from its collision sphere.

    The link's +y runs up the neck and +x points forward (the feet's boxes extend along +x).
    nose = front of the sphere at the centre's height (centre + r x); head = top of the sphere
    (centre + r y). Standing, they lie 17.5 cm and 27.8 cm above the neck joint.
    """
    centre, radius = head_sphere
    return {"<nose>": centre + radius * np.array([1.0, 0.0, 0.0]),
            "<head>": centre + radius * np.array([0.0, 1.0, 0.0])}


def read_deepmimic(path, urdf_path=None):
    """Reads a DeepMimic clip (JSON frames) into our 17 joints by URDF forward kinematics.

    Frames sit at their time stamps (cumulated dt); a clip with uneven dt is linearly
    interpolated onto an even grid at its median rate.
    Args:
      path: the clip (`.txt` or `.json`).
      urdf_path: the humanoid's URDF; default `humanoid.urdf` beside the clip.
    Returns:
      Motion with source "deepmimic", name = file stem, joints in mm (world frame, Z up).
    Raises:
      FileNotFoundError naming the URDF if it is missing; ValueError naming the file if either
      is malformed.
    """
    path = pathlib.Path(path)
    urdf_joints, head_sphere = _read_urdf(urdf_path or path.parent / "humanoid.urdf")
    try:
        frames = np.array(json.loads(path.read_text())["Frames"], dtype=np.float64)
        if frames.ndim != 2 or frames.shape[1] != _DEEPMIMIC_FRAME_SIZE or len(frames) < 1:
            raise ValueError(f"Frames must be a list of {_DEEPMIMIC_FRAME_SIZE}-number lists, "
                             f"got shape {frames.shape}")
        dt = frames[:-1, 0]
        if not np.all(dt > 0):
            raise ValueError("frame durations (first number of each frame) must be > 0")
        missing = sorted(set(_DEEPMIMIC_CHANNELS) - urdf_joints.keys())
        if missing:
            raise ValueError(f"URDF lacks joints {missing}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed DeepMimic clip {path}: {err}") from err

    sizes = list(_DEEPMIMIC_CHANNELS.values())
    channels = dict(zip(_DEEPMIMIC_CHANNELS, np.split(frames[:, 8:], np.cumsum(sizes)[:-1], 1)))
    # Link frames (origin mm, rotation) in the file's Y-up world; the URDF lists parents first.
    links = {"root": (frames[:, 1:4] * 1000.0, _quaternion_matrices(frames[:, 4:8]))}
    for name, (parent, child, kind, origin, axis) in urdf_joints.items():
        if parent == "base":
            continue
        if parent not in links or (kind != "fixed" and name not in channels):
            raise ValueError(f"{path}: URDF joint {name} precedes its parent or has no channels")
        local = np.eye(3)
        if kind != "fixed" and channels[name].shape[1] == 4:
            local = _quaternion_matrices(channels[name])
        elif kind != "fixed":
            local = _axis_angle_matrices(axis, channels[name][:, 0])
        parent_origin, parent_rotation = links[parent]
        links[child] = (parent_origin + parent_rotation @ (_URDF_UNIT_MM * origin),
                        parent_rotation @ local)
    missing = sorted({n for n in _DEEPMIMIC_LINKS if n[0] != "<"} - links.keys())
    if missing:
        raise ValueError(f"{path}: URDF lacks links {missing}")
    neck_origin, neck_rotation = links["neck"]
    for name, point in _head_points_in_neck_link(head_sphere).items():
        links[name] = (neck_origin + neck_rotation @ (_URDF_UNIT_MM * point), None)
    joints_TxJx3 = np.stack([links[n][0] for n in _DEEPMIMIC_LINKS], 1) @ _WORLD_FROM_YUP.T

    times = np.concatenate([[0.0], np.cumsum(dt)])
    fps = _snap_fps(1.0 / np.median(dt)) if len(dt) else 30.0
    if len(dt) and np.ptp(dt) > 0.01 * np.median(dt):
        num = int(math.floor(times[-1] * fps + 1e-2)) + 1
        joints_TxJx3 = _interpolate(times, joints_TxJx3, np.arange(num) / fps)
    return Motion(path.stem, "deepmimic", joints_TxJx3, fps)


# Converted clips (`convert_mocap`)

def read_npz(path):
    """Reads a clip written by `convert_mocap`: `joints_world_TxJx3` (mm, world frame, Z up,
    our 17 joints) and `fps`.

    Returns:
      Motion with source "npz", name = file stem, joints as float64.
    Raises:
      ValueError naming the file if it is malformed.
    """
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            joints_TxJx3 = np.asarray(data["joints_world_TxJx3"], np.float64)
            fps = float(data["fps"])
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"malformed npz clip {path}: {err}") from err
    if (joints_TxJx3.ndim != 3 or joints_TxJx3.shape[1:] != (skeleton.NUM_JOINTS, 3)
            or len(joints_TxJx3) < 1 or not fps > 0):
        raise ValueError(f"malformed npz clip {path}: joints {joints_TxJx3.shape} (need "
                         f"Tx{skeleton.NUM_JOINTS}x3), fps {fps}")
    return Motion(path.stem, "npz", joints_TxJx3, fps)


def load_motions(mocap_dir):
    """Reads every clip under `mocap_dir` (recursively): `.bvh`, `.txt`/`.json` DeepMimic clips
    (JSON objects; other text files such as licences are skipped) and `.npz` clips of
    `convert_mocap`, sorted by path. JSON files in a folder of `.npz` clips are their indexes
    (`clips.json`, `catalog.json`) and are skipped too.

    Args:
      mocap_dir: a folder.
    Returns:
      list of Motion, at their files' rates.
    Raises:
      FileNotFoundError naming the folder if it is missing (or a DeepMimic clip's URDF is);
      ValueError naming it if it holds no clips or two clips share a name.
    """
    mocap_dir = pathlib.Path(mocap_dir)
    if not mocap_dir.is_dir():
        raise FileNotFoundError(f"motion-capture folder {mocap_dir} not found")
    motions = []
    npz_folders = {p.parent for p in mocap_dir.rglob("*.npz") if p.is_file()}
    for path in sorted(p for p in mocap_dir.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix == ".bvh":
            motions.append(read_bvh(path))
        elif suffix == ".npz":
            motions.append(read_npz(path))
        elif (suffix in (".txt", ".json") and path.parent not in npz_folders
              and path.read_bytes()[:256].lstrip()[:1] == b"{"):
            motions.append(read_deepmimic(path))
    if not motions:
        raise ValueError(f"no motion clips (.bvh, DeepMimic .txt/.json, .npz) in {mocap_dir}")
    names = [m.name for m in motions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"clip names {duplicates} occur twice in {mocap_dir}")
    return motions


def resample(motion, fps=30.0):
    """Resamples a clip to `fps` by linear interpolation of joint positions in time.

    Frame k of the result is at time k / fps; the last one at or before the clip's end. From
    120 Hz or 60 Hz to 30 Hz every output time hits a source frame, so nothing is blended.
    Returns:
      Motion with the same name and source.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    num_in = motion.joints_world_TxJx3.shape[0]
    num_out = int(math.floor((num_in - 1) * fps / motion.fps + 1e-6)) + 1
    joints = _interpolate(np.arange(num_in) / motion.fps, motion.joints_world_TxJx3,
                          np.arange(num_out) / fps)
    return motion._replace(joints_world_TxJx3=joints, fps=float(fps))


# Retargeting

# Length (mm) of the link from each joint's parent (0 for the pelvis): the Human3.6M motion-
# capture skeleton (32-joint offsets of Martinez et al., "human-motion-prediction", CVPR 2017,
# forward_kinematics.py, left/right equal to 0.01 mm) reduced to our 17 joints; the pelvis->spine
# link adds the 0.1 mm spacer joint. Standing height with these is ~1.75 m.
H36M_BONE_LENGTHS_MM = (
    0.0, 132.95, 442.89, 454.21, 132.95, 442.89, 454.21,  # pelvis; right, left hip-knee-ankle
    233.48, 257.08, 121.13, 115.00,  # spine, thorax, neck/nose, head
    151.03, 278.88, 251.73, 151.03, 278.88, 251.73)  # left, right shoulder-elbow-wrist

# Distance (mm) from each joint to the body surface below it, to put the clip on the floor. The
# ankle's is the ankle height above the sole (80 mm), so a clip on its feet has its lowest ankle
# at z = 80 mm; knees, hands, pelvis or head ground crawling, rolling and lying clips.
_FLOOR_CLEARANCE_MM = (100.0, 90.0, 50.0, 80.0, 90.0, 50.0, 80.0, 100.0, 100.0, 80.0, 100.0,
                       50.0, 40.0, 30.0, 50.0, 40.0, 30.0)
_LEG_JOINTS = tuple(skeleton.JOINT_INDEX[n] for n in ("r_knee", "r_ankle", "l_knee", "l_ankle"))


def sample_bone_lengths(rng, scale_range=0.08, jitter_range=0.05):
    """Bone lengths of a random subject: H36M lengths x one overall scale x per-bone jitter.

    Args:
      rng: numpy Generator.
      scale_range: overall scale uniform in [1 - scale_range, 1 + scale_range].
      jitter_range: each bone's factor uniform in [1 - jitter_range, 1 + jitter_range], the same
        for a left bone and its right mirror.
    Returns:
      float64 J, mm; entry j is the length of the link (PARENTS[j], j); 0 for the pelvis.
    """
    scale = rng.uniform(1.0 - scale_range, 1.0 + scale_range)
    jitter = rng.uniform(1.0 - jitter_range, 1.0 + jitter_range, size=skeleton.NUM_JOINTS)
    for a, b in skeleton.LR_PAIRS:
        jitter[b] = jitter[a]
    return np.asarray(H36M_BONE_LENGTHS_MM) * scale * jitter


def retarget(joints_world_TxJx3, bone_lengths_J):
    """Gives a clip new bone lengths, keeping every bone's direction in every frame.

    Joints are rebuilt along `skeleton.PARENTS` from the pelvis. The pelvis trajectory is scaled
    by the ratio of new to old leg length (thigh + shin, clip mean), so strides match the legs.
    The clip is then moved so its mean pelvis position is at X = Y = 0 and its lowest point
    touches the floor: min over frames and joints of z - `_FLOOR_CLEARANCE_MM` = 0 (on its feet,
    the lowest ankle at z = 80 mm).
    Args:
      joints_world_TxJx3: mm, world frame (Z up).
      bone_lengths_J: mm, as from `sample_bone_lengths`.
    Returns:
      float64 TxJx3, mm, world frame.
    """
    joints = np.asarray(joints_world_TxJx3, np.float64)
    lengths = np.asarray(bone_lengths_J, np.float64)
    parents = np.array(skeleton.PARENTS[1:])
    vectors = joints[:, 1:] - joints[:, parents]
    old_lengths = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if np.any(old_lengths < 1e-6):
        raise ValueError("retarget needs bones of non-zero length")
    directions = vectors / old_lengths
    leg = [j - 1 for j in _LEG_JOINTS]
    ratio = lengths[list(_LEG_JOINTS)].sum() / old_lengths[:, leg, 0].mean(axis=0).sum()
    out = np.empty_like(joints)
    out[:, 0] = joints[:, 0] * ratio
    for j in range(1, skeleton.NUM_JOINTS):
        out[:, j] = out[:, skeleton.PARENTS[j]] + lengths[j] * directions[:, j - 1]
    out[..., :2] -= out[:, 0, :2].mean(axis=0)
    out[..., 2] -= np.min(out[..., 2] - np.asarray(_FLOOR_CLEARANCE_MM))
    return out


# Split

# Whole clips held out for testing (the rest, and any clip not named here, train): a CMU walk
# (131_02; 131_01 walks in train), DeepMimic walk, dance, punch and get-up from the back (train
# keeps spin/jump, kick and get-up from the front as their nearest relatives). At 30 Hz: 579 of
# 2,428 frames (24%).
# Splits (Human3.6M's logic: test = unseen takes of the kinds of motion trained on, played by
# unseen subjects; motion kinds never trained on form a second, separate test split).
# Category of every bundled clip that is not in a `clips.json` index (converted clips carry theirs).
BUNDLED_CATEGORIES = {
    "01_01": "jump", "131_01": "walk", "131_02": "walk", "131_03": "jump",
    "backflip": "acrobatics", "cartwheel": "acrobatics", "crawl": "crawl", "dance_a": "dance",
    "getup_facedown": "getup", "getup_faceup": "getup", "jump": "jump", "kick": "martial",
    "punch": "martial", "roll": "acrobatics", "run": "run", "spin": "martial", "walk": "walk",
}
# Categories absent from train, val and test: the `test_unseen` split.
UNSEEN_CATEGORIES = ("acrobatics", "crawl", "fall")
# Shares of each seen category's frames that go to test and val (whole clips).
TEST_SHARE, VAL_SHARE = 0.15, 0.1
SPLITS = ("train", "val", "test", "test_unseen")


def clip_categories(mocap_dir):
    """{clip name: category} from every `clips.json` under `mocap_dir` and BUNDLED_CATEGORIES."""
    categories = dict(BUNDLED_CATEGORIES)
    for index in sorted(pathlib.Path(mocap_dir).rglob("clips.json")):
        try:
            entries = json.loads(index.read_text())
            categories.update({name: str(e["category"]) for name, e in entries.items()})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{index}: not a clip index ({{name: {{category: ...}}}}): {err}")
    return categories


def assign_splits(frames_by_clip, categories):
    """Whole clips to splits: {clip name: split}.

    Clips of UNSEEN_CATEGORIES go to test_unseen. In every other category (a clip without one is
    "misc"), clips are taken largest first (ties by name): the first stays in train, and each next
    one goes to test while test holds less than TEST_SHARE of the category's frames, else to val
    while val holds less than VAL_SHARE, else to train. Deterministic, and a category of one clip
    trains.

    Args:
        frames_by_clip: {clip name: number of frames}.
        categories: {clip name: category}.
    """
    split_of = {}
    by_category = {}
    for name, frames in frames_by_clip.items():
        category = categories.get(name, "misc")
        if category in UNSEEN_CATEGORIES:
            split_of[name] = "test_unseen"
        else:
            by_category.setdefault(category, []).append((-int(frames), name))
    for clips in by_category.values():
        clips.sort()
        total = -sum(f for f, _ in clips)
        held = {"test": 0, "val": 0}
        for k, (neg_frames, name) in enumerate(clips):
            split = "train"
            if k > 0 and held["test"] < TEST_SHARE * total:
                split = "test"
            elif k > 0 and held["val"] < VAL_SHARE * total:
                split = "val"
            held[split] = held.get(split, 0) - neg_frames
            split_of[name] = split
    return split_of


def mirror(motion):
    """The clip mirrored left to right (world Y -> -Y) with left and right labels swapped, so a
    left limb stays a left limb: a new, anatomically valid clip named `<name>_mirror`."""
    joints_TxJx3 = motion.joints_world_TxJx3 * np.array([1.0, -1.0, 1.0])
    return motion._replace(name=motion.name + "_mirror",
                           joints_world_TxJx3=joints_TxJx3[:, skeleton.FLIP_PERMUTATION])
