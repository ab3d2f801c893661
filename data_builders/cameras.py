"""Human3.6M camera calibrations, converted to the project's conventions.

The bundled `assets/cameras/h36m_cameras.pkl` (from mmpose's test fixtures, values from the
Human3.6M release) holds, per (subject, camera_id): R (3x3), T (3x1, metres) with
X_cam = R^T (X_world - T), principal point c and focal length f (2x1, pixels), radial k (3x1),
tangential p (2x1), image w, h, and name / id. Here they become a `Camera` with K,
world -> camera extrinsics [R|t] in millimetres (R_ext = R^T, t = -R^T T * 1000) and distortion
(k1, k2, k3, p1, p2): the conventions of `maskpose_jax.geometry`.
"""

import pathlib
import pickle
from typing import NamedTuple

import numpy as np

ASSETS_DIR = pathlib.Path(__file__).resolve().parent / "assets"
H36M_CAMERAS_PATH = ASSETS_DIR / "cameras" / "h36m_cameras.pkl"


class Camera(NamedTuple):
    """One calibrated camera (NumPy float64 arrays).

    Attributes:
        intrinsics: K 3x3, pixels.
        extrinsics: [R|t] 3x4, world -> camera, mm.
        distortion: (k1, k2, k3, p1, p2), Human3.6M convention (see `geometry.distort`).
        width: image width, pixels.
        height: image height, pixels.
        name: the calibration's camera name (e.g. 'camera1').
        subject: subject the calibration belongs to (e.g. 'S1').
        camera_id: camera serial (e.g. '54138969').
    """

    intrinsics: np.ndarray
    extrinsics: np.ndarray
    distortion: np.ndarray
    width: int
    height: int
    name: str
    subject: str = ""
    camera_id: str = ""


def _camera_from_h36m(subject, camera_id, params):
    rot_cam_from_world = np.asarray(params["R"], np.float64).T
    center_world_mm = np.asarray(params["T"], np.float64).reshape(3) * 1000.0
    extrinsics = np.concatenate(
        [rot_cam_from_world, (-rot_cam_from_world @ center_world_mm)[:, None]], axis=1)
    fx, fy = np.asarray(params["f"], np.float64).reshape(2)
    cx, cy = np.asarray(params["c"], np.float64).reshape(2)
    intrinsics = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    distortion = np.concatenate([np.asarray(params["k"], np.float64).reshape(3),
                                 np.asarray(params["p"], np.float64).reshape(2)])
    return Camera(intrinsics=intrinsics, extrinsics=extrinsics, distortion=distortion,
                  width=int(params["w"]), height=int(params["h"]), name=str(params["name"]),
                  subject=subject, camera_id=camera_id)


def load_h36m_cameras(path=H36M_CAMERAS_PATH):
    """Loads the 44 Human3.6M cameras.

    Args:
        path: the calibration pickle (defaults to the bundled copy).

    Returns:
        dict mapping (subject, camera_id), e.g. ('S1', '54138969'), to `Camera`.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Human3.6M camera file not found: {path}")
    with path.open("rb") as f:
        raw = pickle.load(f)
    return {(str(subject), str(camera_id)): _camera_from_h36m(str(subject), str(camera_id), p)
            for (subject, camera_id), p in raw.items()}


def h36m_rig(subject="S1", path=H36M_CAMERAS_PATH):
    """Returns the 4 cameras of one Human3.6M subject, in camera-id order.

    Args:
        subject: e.g. 'S1'.
        path: the calibration pickle (defaults to the bundled copy).

    Returns:
        list of 4 `Camera`.

    Raises:
        KeyError: the subject has no cameras in the file.
    """
    cameras = load_h36m_cameras(path)
    rig = [cam for (subj, _), cam in cameras.items() if subj == subject]
    if not rig:
        subjects = sorted({subj for subj, _ in cameras})
        raise KeyError(f"No cameras for subject {subject!r}; the file has {subjects}")
    return sorted(rig, key=lambda cam: cam.camera_id)
