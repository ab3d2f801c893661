"""Reads the MPI-INF-3DHP release as its download scripts leave it (see README.md for the tree).

- `S*/Seq*/camera.calibration`: "Skeletool Camera Calibration File V1.0" text, one block per
  camera (`name`, `sensor`, `size`, `animated`, `intrinsic` and `extrinsic` as 4×4 row-major
  matrices, `radial`); the extrinsic maps the studio's world frame (Y up, mm) to the camera
  (OpenCV axes), so it is our [R|t] as it stands.
- `S*/Seq*/annot.mat` (MATLAB v5): cell arrays with one cell per camera (`cameras` gives each
  cell's camera); `annot3` holds T×(28·3) joints in that camera's frame, mm; `frames` the
  0-based frame number of each row.
- `S*/Seq*/FGmasks/video_<c>.avi`: the release's mask videos. The red channel marks what is not
  green screen (the person, and any studio equipment the screen does not cover); green and blue
  carry upper- and lower-body clothing masks where available (the release README).
- `mpi_inf_3dhp_test_set/TS*/annot_data.mat` (MATLAB v7.3 = HDF5, axes reversed): `annot3`
  T×1×17×3 (camera frame, mm, already the 17-joint subset), `valid_frame`,
  `activity_annotation` (1–7). The test set ships no calibration: the intrinsics are the bundled
  `assets/cameras/mpi_inf_3dhp_cameras_test.pkl` (fitted to the 2D/3D annotations), the camera
  frame is the world frame.

Joint order: the 28 release joints -> the standard 17-joint subset ("3DHP-17", the test set's
order) -> ours (`maskpose_jax.skeleton`).
"""

import os
import pickle
from typing import NamedTuple, Sequence

import h5py
import numpy as np
import scipy.io
from scipy import ndimage

from data_builders import cameras as cameras_lib
from data_builders.frames import BadInput

# mpii_get_joint_set('all') of the release, 0-based.
JOINT_NAMES_28 = (
        "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
        "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
        "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)
# 3DHP-17 (head_top, neck, r_shoulder, r_elbow, r_wrist, l_shoulder, l_elbow, l_wrist, r_hip,
# r_knee, r_ankle, l_hip, l_knee, l_ankle, pelvis, spine, head) as indices into the 28.
H17_FROM_28 = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)
# Our joint j is 3DHP-17 joint OURS_FROM_H17[j].
OURS_FROM_H17 = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)
OURS_FROM_28 = tuple(H17_FROM_28[k] for k in OURS_FROM_H17)

NUM_CAMERAS = 14
CALIBRATION_HEADER = "Skeletool Camera Calibration File V1.0"
TEST_SET_DIR = "mpi_inf_3dhp_test_set"
TEST_CAMERAS_PATH = os.path.join(cameras_lib.ASSETS_DIR, "cameras", "mpi_inf_3dhp_cameras_test.pkl")
# activity_annotation codes of the test set (names as in the release's evaluation tables).
ACTIVITIES = {1: "Stand/Walk", 2: "Exercise", 3: "Sit on Chair", 4: "Reach/Crouch",
              5: "On the Floor", 6: "Sports", 7: "Miscellaneous"}
FG_CHANNELS = {"red": 0, "green": 1, "blue": 2}
MASK_CLEANUPS = ("largest_inner", "largest", "none")
# largest_inner keeps an inner component only if it has at least this share of the largest.
MIN_INNER_SHARE = 0.05


class TrainAnnotations(NamedTuple):
    """Ground truth of one training sequence.

    Attributes:
        frames_T: video frame number of each annotation row (int64, 0-based).
        joints_cam: camera id -> T×17×3 joints in that camera's frame, mm, our joint order.
    """

    frames_T: np.ndarray
    joints_cam: dict


class TestAnnotations(NamedTuple):
    """Ground truth of one test sequence: joints T×17×3 (camera frame, mm, our order), valid_T
    (bool), activity_T (int codes 1–7)."""

    joints_cam_Tx17x3: np.ndarray
    valid_T: np.ndarray
    activity_T: np.ndarray


def train_paths(root_dir, subject, sequence, camera):
    """(image video, mask video) of one camera of one training sequence."""
    seq_dir = os.path.join(root_dir, subject, sequence)
    return (os.path.join(seq_dir, "imageSequence", f"video_{camera}.avi"),
            os.path.join(seq_dir, "FGmasks", f"video_{camera}.avi"))


def test_image_path(root_dir, sequence, frame):
    """The JPEG of 0-based `frame` of test sequence `sequence` ('TS1')."""
    return os.path.join(root_dir, TEST_SET_DIR, sequence, "imageSequence",
                        f"img_{frame + 1:06d}.jpg")


def load_calibration(path) -> dict:
    """Parses a `camera.calibration` file.

    Returns:
        dict camera id (int) -> `cameras.Camera` (K 3×3 px, [R|t] world -> camera mm, no
        distortion, image width/height).

    Raises:
        BadInput: missing file, wrong header, a malformed or unsupported block (animated or
            radially distorted camera, an extrinsic that is not a rigid transform).
    """
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such calibration file")
    with open(path, encoding="utf-8", errors="replace") as f:
        rows = [line.split() for line in f.read().splitlines() if line.strip()]
    if not rows or " ".join(rows[0]) != CALIBRATION_HEADER:
        raise BadInput(f"{path}: not a camera calibration (first line should be "
                       f"{CALIBRATION_HEADER!r})")
    blocks, current = {}, None
    for tokens in rows[1:]:
        key, values = tokens[0], tokens[1:]
        if key == "name":
            if len(values) != 1 or not values[0].isdigit() or int(values[0]) in blocks:
                raise BadInput(f"{path}: bad or repeated camera name {' '.join(values)!r}")
            current = blocks[int(values[0])] = {}
        elif current is None:
            raise BadInput(f"{path}: field {key!r} before the first camera name")
        else:
            current[key] = values
    return {camera: _camera(path, camera, fields) for camera, fields in sorted(blocks.items())}


def _camera(path, camera, fields):
    def numbers(key, count):
        try:
            values = [float(v) for v in fields[key]]
        except (KeyError, ValueError):
            values = []
        if len(values) != count:
            raise BadInput(f"{path}: camera {camera}: field {key!r} needs {count} numbers")
        return np.array(values)

    if fields.get("animated", ["0"]) != ["0"] or fields.get("radial", ["0"]) != ["0"]:
        raise BadInput(f"{path}: camera {camera}: animated or distorted cameras are not supported")
    width, height = numbers("size", 2)
    intrinsics = numbers("intrinsic", 16).reshape(4, 4)[:3, :3]
    extrinsics_4x4 = numbers("extrinsic", 16).reshape(4, 4)
    rot = extrinsics_4x4[:3, :3]
    if not (np.isfinite(intrinsics).all() and np.isfinite(extrinsics_4x4).all()):
        raise BadInput(f"{path}: camera {camera}: a NaN or infinite number in the intrinsic or "
                       "extrinsic")
    if (not np.allclose(extrinsics_4x4[3], [0, 0, 0, 1], atol=1e-6)
            or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0):
        raise BadInput(f"{path}: camera {camera}: the extrinsic is not a rotation and translation")
    if not np.allclose(intrinsics[2], [0, 0, 1]) or intrinsics[1, 0] != 0:
        raise BadInput(f"{path}: camera {camera}: the intrinsic is not a pinhole K")
    if not (intrinsics[0, 0] > 0 and intrinsics[1, 1] > 0) or not (width > 0 and height > 0):
        raise BadInput(f"{path}: camera {camera}: a singular camera (focal lengths "
                       f"{intrinsics[0, 0]:g}, {intrinsics[1, 1]:g} px, size {width:g}x{height:g}; "
                       "both must be > 0)")
    return cameras_lib.Camera(intrinsics=intrinsics, extrinsics=extrinsics_4x4[:3].copy(),
                              distortion=np.zeros(5), width=int(width), height=int(height),
                              name=str(camera))


def load_train_annotations(path, camera_ids: Sequence[int]) -> TrainAnnotations:
    """Reads `annot3` and `frames` of an `annot.mat` (MATLAB v5) for the cameras `camera_ids`.

    Raises:
        BadInput: missing or unreadable file, a missing variable or camera, a cell whose shape is
            not T×84.
    """
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such annotation file")
    if h5py.is_hdf5(path):
        raise BadInput(f"{path}: MATLAB v7.3 file; the release's annot.mat is v5 (re-save it with "
                       "`save(..., '-v7')` or use the file as downloaded)")
    try:
        raw = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError) as error:
        raise BadInput(f"{path}: cannot be read as a MATLAB file ({error})") from None
    missing = [k for k in ("annot3", "cameras", "frames") if k not in raw]
    if missing:
        raise BadInput(f"{path}: no variable {', '.join(missing)}")
    cells = list(np.asarray(raw["annot3"], dtype=object).ravel())
    cell_cameras = [int(c) for c in np.asarray(raw["cameras"]).ravel()]
    frames_T = np.asarray(raw["frames"]).ravel().astype(np.int64)
    if len(cell_cameras) != len(cells):
        raise BadInput(f"{path}: {len(cells)} annot3 cells for {len(cell_cameras)} cameras")
    joints_cam = {}
    for camera in camera_ids:
        if camera not in cell_cameras:
            raise BadInput(f"{path}: no annotations for camera {camera} (has {cell_cameras})")
        cell = np.asarray(cells[cell_cameras.index(camera)], np.float64)
        if cell.shape != (len(frames_T), 3 * len(JOINT_NAMES_28)):
            raise BadInput(f"{path}: annot3 of camera {camera} is {cell.shape}, expected "
                           f"({len(frames_T)}, {3 * len(JOINT_NAMES_28)})")
        joints_cam[camera] = cell.reshape(len(frames_T), len(JOINT_NAMES_28), 3)[:, OURS_FROM_28]
    return TrainAnnotations(frames_T=frames_T, joints_cam=joints_cam)


def _frames_joints_dims(array, dims, source, hdf5):
    """T×17×dims from the HDF5 order (T×1×17×dims) or MATLAB's (dims×17×1×T).

    The file format says which order to expect (HDF5 shows MATLAB's axes reversed); the other
    is accepted when the shape rules the expected one out.
    """
    array = np.asarray(array, np.float64)
    shape = list(array.shape)
    while len(shape) > 3 and 1 in shape[1:-1]:
        del shape[shape.index(1, 1, len(shape) - 1)]
    array = array.reshape(shape)
    num_joints = len(H17_FROM_28)
    frames_first = array.ndim == 3 and array.shape[1:] == (num_joints, dims)
    dims_first = array.ndim == 3 and array.shape[:2] == (dims, num_joints)
    if frames_first and (hdf5 or not dims_first):
        return array
    if dims_first:
        return array.transpose(2, 1, 0)
    raise BadInput(f"{source} has shape {np.shape(array)}, expected T×1×{num_joints}×{dims} "
                   f"or {dims}×{num_joints}×1×T")


def load_test_annotations(path) -> TestAnnotations:
    """Reads `annot3`, `valid_frame` and `activity_annotation` of a test `annot_data.mat`
    (v7.3/HDF5 as released, or v5).

    Raises:
        BadInput: missing or unreadable file, a missing variable, shapes that do not agree.
    """
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such annotation file")
    keys = ("annot3", "valid_frame", "activity_annotation")
    hdf5 = h5py.is_hdf5(path)
    try:
        if hdf5:
            with h5py.File(path, "r") as f:
                raw = {k: np.asarray(f[k]) for k in keys if k in f}
        else:
            raw = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError) as error:
        raise BadInput(f"{path}: cannot be read as a MATLAB file ({error})") from None
    missing = [k for k in keys if k not in raw]
    if missing:
        raise BadInput(f"{path}: no variable {', '.join(missing)}")
    joints = _frames_joints_dims(raw["annot3"], 3, f"{path}: annot3", hdf5)[:, OURS_FROM_H17]
    valid_T = np.asarray(raw["valid_frame"]).ravel()
    activity_T = np.asarray(raw["activity_annotation"]).ravel()
    if not len(joints) == len(valid_T) == len(activity_T):
        raise BadInput(f"{path}: {len(joints)} annot3 frames, {len(valid_T)} valid_frame flags, "
                       f"{len(activity_T)} activity codes")
    return TestAnnotations(joints_cam_Tx17x3=joints, valid_T=valid_T != 0,
                           activity_T=np.rint(activity_T).astype(np.int64))


def load_test_cameras(path=TEST_CAMERAS_PATH) -> dict:
    """Test cameras from a pickle in mmpose's `cameras_test.pkl` layout (TS -> f, c, w, h, name).

    Returns:
        dict 'TS1'.. -> `cameras.Camera` with extrinsics [I|0] (world = camera frame).

    Raises:
        FileNotFoundError: no such file (the message names it).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MPI-INF-3DHP test camera file not found: {path}")
    with open(path, "rb") as f:
        raw = pickle.load(f)
    rig = {}
    for sequence, params in raw.items():
        fx, fy = np.asarray(params["f"], np.float64).ravel()
        cx, cy = np.asarray(params["c"], np.float64).ravel()
        rig[str(sequence)] = cameras_lib.Camera(
                intrinsics=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
                extrinsics=np.eye(3, 4), distortion=np.zeros(5), width=int(params["w"]),
                height=int(params["h"]), name=str(params.get("name", sequence)),
                subject=str(sequence))
    return rig


def activity_name(code: int, source: str) -> str:
    """Name of a test `activity_annotation` code (1–7); BadInput naming `source` otherwise."""
    if int(code) not in ACTIVITIES:
        raise BadInput(f"{source}: unknown activity code {code} (expected 1–7)")
    return ACTIVITIES[int(code)]


def fg_mask(frame_HxWx3, channel="red", threshold=128, cleanup="largest_inner") -> np.ndarray:
    """Person mask from one frame of an `FGmasks` video.

    Args:
        frame_HxWx3: uint8 frame of the mask video.
        channel: "red" (not green screen), "green" (upper body) or "blue" (lower body).
        threshold: a pixel is foreground where the channel is above it (0–255).
        cleanup: "largest_inner": the largest connected component that does not touch the image
            border (studio equipment outside the green screen does), falling back to the largest
            component when no inner one has `MIN_INNER_SHARE` of its area; "largest": the
            largest component; "none": every foreground pixel.

    Returns:
        H×W float32 mask in {0, 1} (all zeros when nothing is above the threshold).
    """
    fg_HxW = np.asarray(frame_HxWx3)[..., FG_CHANNELS[channel]] > threshold
    if cleanup == "none":
        return fg_HxW.astype(np.float32)
    labels, count = ndimage.label(fg_HxW)
    if count == 0:
        return np.zeros(fg_HxW.shape, np.float32)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    keep = int(np.argmax(sizes))
    if cleanup == "largest_inner":
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        inner = sizes.copy()
        inner[np.unique(border)] = 0
        if inner.max() >= MIN_INNER_SHARE * sizes[keep]:
            keep = int(np.argmax(inner))
    return (labels == keep).astype(np.float32)


def world_from_views(joints_cam_Vx17x3, extrinsics_Vx3x4):
    """Moves each view's camera-frame joints to the world frame and averages them.

    Args:
        joints_cam_Vx17x3: the same pose as annotated in V cameras' frames, mm.
        extrinsics_Vx3x4: those cameras' [R|t], world -> camera, mm.

    Returns:
        (17×3 world joints, mm; largest distance of a view's joint from that mean, mm).
    """
    joints = np.asarray(joints_cam_Vx17x3, np.float64)
    ext = np.asarray(extrinsics_Vx3x4, np.float64)
    world_Vx17x3 = np.einsum("vjc,vcd->vjd", joints - ext[:, None, :, 3], ext[:, :, :3])
    mean_17x3 = world_Vx17x3.mean(axis=0)
    return mean_17x3, float(np.linalg.norm(world_Vx17x3 - mean_17x3, axis=-1).max())

