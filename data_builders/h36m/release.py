"""The layout of the official Human3.6M release: subjects, sequences, poses, videos, mask files.

Per subject, as extracted from the subject archives:

    <root>/S1/MyPoseFeatures/D3_Positions/<sequence>.cdf            (CDF "Pose": 1 × T × 96, mm)
    <root>/S1/Videos/<sequence>.<camera_id>.mp4                      (50 fps)
    <root>/S1/MySegmentsMat/ground_truth_bs/<sequence>.<camera_id>.mat   (MATLAB v7.3 "Masks")

A sequence is named by its action and, for the second recording of the same action, a take
number ("Directions", "Directions 1"). Its base action (`base_action`) groups the 15 actions of
the per-action tables: the take number is dropped and the naming variants of some subjects are
mapped to one name (`ACTION_ALIASES`). Files named "_ALL..." (whole-session concatenations in some
archives) are not sequences.
"""

import os
import re
from typing import NamedTuple

import av
import cdflib
import numpy as np

from data_builders import frames

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")

# The 15 actions of the Human3.6M protocol, as `meta.action` names them.
ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing",
           "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking",
           "WalkTogether")
# Naming variants between subjects (S1 says "TakingPhoto" and "WalkingDog") -> the names above.
ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}

# The 32 joints of the release's "Pose" (0-based): 0 pelvis, 1–3 right hip/knee/ankle, 4–5 right
# foot, 6–8 left hip/knee/ankle, 9–10 left foot, 11 pelvis (again), 12 spine (torso), 13 thorax
# (neck base), 14 neck/nose (head low), 15 head (top), 16 neck base (again), 17–19 left
# shoulder/elbow/wrist, 20–23 left wrist again and hand, 24 neck base (again), 25–27 right
# shoulder/elbow/wrist, 28–31 right wrist again and hand. Picking these gives
# `maskpose_jax.skeleton.JOINT_NAMES` in order.
JOINTS_FROM_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

_TAKE = re.compile(r"^(?P<action>.*?)(?: (?P<take>\d+))?$")


class Sequence(NamedTuple):
    """One recording of a subject (the same for all cameras).

    Attributes:
        subject: e.g. "S1".
        name: the release's sequence name, e.g. "Directions 1".
        action: base action, e.g. "Directions" (see `base_action`).
        poses_path: its D3_Positions CDF file.
    """

    subject: str
    name: str
    action: str
    poses_path: str


def base_action(sequence_name: str) -> str:
    """Base action of a sequence name: "TakingPhoto 1" -> "Photo", "Directions" -> "Directions".

    Names outside `ACTIONS` and `ACTION_ALIASES` are returned without their take number.
    """
    action = _TAKE.match(sequence_name.strip()).group("action")
    return ACTION_ALIASES.get(action, action)


def subject_dir(root_dir, subject) -> str:
    """The folder of `subject`; BadInput naming it when missing."""
    path = os.path.join(root_dir, subject)
    if not os.path.isdir(path):
        raise frames.BadInput(f"{path}: no such subject folder (subject {subject} is missing "
                              f"from the release at {root_dir})")
    return path


def list_sequences(root_dir, subject) -> list[Sequence]:
    """The sequences of `subject`, from its D3_Positions CDF files, sorted by name.

    Raises:
        BadInput: the subject folder or its MyPoseFeatures/D3_Positions folder is missing, or it
            holds no CDF file.
    """
    poses_dir = os.path.join(subject_dir(root_dir, subject), "MyPoseFeatures", "D3_Positions")
    if not os.path.isdir(poses_dir):
        raise frames.BadInput(f"{poses_dir}: no such folder (the 3D poses of {subject})")
    names = sorted(f[:-len(".cdf")] for f in os.listdir(poses_dir)
                   if f.endswith(".cdf") and not f.startswith("_ALL"))
    if not names:
        raise frames.BadInput(f"{poses_dir}: no .cdf pose file")
    return [Sequence(subject, name, base_action(name), os.path.join(poses_dir, name + ".cdf"))
            for name in names]


def video_path(root_dir, subject, sequence_name, camera_id) -> str:
    return os.path.join(root_dir, subject, "Videos", f"{sequence_name}.{camera_id}.mp4")


def bs_mask_path(root_dir, subject, sequence_name, camera_id) -> str:
    return os.path.join(root_dir, subject, "MySegmentsMat", "ground_truth_bs",
                        f"{sequence_name}.{camera_id}.mat")


def png_mask_path(mask_dir, subject, sequence_name, camera_id, frame: int) -> str:
    """`<mask_dir>/<subject>/<sequence>.<camera_id>/<frame:06d>.png` (0-based video frame)."""
    return os.path.join(mask_dir, subject, f"{sequence_name}.{camera_id}", f"{frame:06d}.png")


def load_poses(path) -> np.ndarray:
    """The 17 joints of every frame of a D3_Positions CDF file.

    Args:
        path: CDF file with variable "Pose" of shape (1, T, 96) (or (T, 96)): 32 joints × (x, y, z)
            per frame, mm, world frame (Z up).

    Returns:
        T×17×3 float64, mm, world frame, in `skeleton.JOINT_NAMES` order.

    Raises:
        BadInput: missing or unreadable file, no "Pose" variable, or another shape.
    """
    if not os.path.isfile(path):
        raise frames.BadInput(f"{path}: no such pose file")
    try:
        pose = np.asarray(cdflib.CDF(path).varget("Pose"), np.float64)
    except Exception as error:  # cdflib raises bare Exception / OSError / ValueError variants.
        raise frames.BadInput(f"{path}: cannot read variable 'Pose' ({error})") from None
    if pose.ndim == 3 and pose.shape[0] == 1:
        pose = pose[0]
    if pose.ndim != 2 or pose.shape[1] != 96 or pose.shape[0] == 0:
        raise frames.BadInput(f"{path}: 'Pose' has shape {pose.shape}, expected (1, T, 96)")
    return pose.reshape(-1, 32, 3)[:, JOINTS_FROM_32]


def count_video_frames(path) -> int:
    """Number of frames of a video, by reading its packets without decoding them.

    Raises:
        BadInput: missing file, not a video, or unreadable (e.g. truncated) data.
    """
    if not os.path.isfile(path):
        raise frames.BadInput(f"{path}: no such video file")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise frames.BadInput(f"{path}: has no video stream")
            return sum(1 for packet in container.demux(container.streams.video[0])
                       if packet.size > 0)
    except av.FFmpegError as error:
        raise frames.BadInput(f"{path}: cannot be read as a video ({error})") from None
