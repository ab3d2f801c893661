"""Human3.6M camera calibrations for the `h36m` builder: `cameras.json`, and videos at other sizes.

`cameras.json` (beside this file) holds the 44 calibrations (S1–S11 × 4 cameras) in the
project's conventions: K (pixels), extrinsics [R|t] world -> camera (mm), distortion
(k1, k2, k3, p1, p2) and the image size the calibration refers to. It is the conversion of the
bundled `assets/cameras/h36m_cameras.pkl` by `data_builders.cameras.load_h36m_cameras`; rewrite it
with

    python -m data_builders.h36m.calibration

A video stored at another resolution than its calibration (e.g. the release downscaled to save
space) is accepted when it is a uniform rescale of it: K then follows the frame size
(`scaled_intrinsics`); extrinsics and distortion (on normalized coordinates) do not change.
"""

import json
import pathlib
import re

import numpy as np

from data_builders import cameras as cameras_lib
from data_builders import frames

CAMERAS_JSON = pathlib.Path(__file__).resolve().parent / "cameras.json"


def cameras_to_json(cameras: dict) -> str:
    """JSON text of calibrations `{(subject, camera_id): Camera}` (floats written exactly).

    Args:
        cameras: as returned by `data_builders.cameras.load_h36m_cameras`.

    Returns:
        JSON text: {"cameras": {subject: {camera_id: {intrinsics 3x3, extrinsics 3x4 (mm),
        distortion 5, width, height, name}}}}, subjects and ids sorted.
    """
    table = {}
    for (subject, camera_id), cam in sorted(cameras.items(), key=lambda kv: (
            int(kv[0][0].lstrip("S")), kv[0][1])):
        table.setdefault(subject, {})[camera_id] = {
                "intrinsics": np.asarray(cam.intrinsics, np.float64).tolist(),
                "extrinsics": np.asarray(cam.extrinsics, np.float64).tolist(),
                "distortion": np.asarray(cam.distortion, np.float64).tolist(),
                "width": int(cam.width),
                "height": int(cam.height),
                "name": str(cam.name),
        }
    document = {
            "about": "Human3.6M calibrations: intrinsics K (pixels); extrinsics [R|t] world -> "
                     "camera, mm (X_cam = R X_world + t); distortion (k1, k2, k3, p1, p2); "
                     "width x height of the image they refer to. Made by "
                     "`python -m data_builders.h36m.calibration` from "
                     "data_builders/assets/cameras/h36m_cameras.pkl.",
            "cameras": table,
    }
    text = json.dumps(document, indent=1)
    # One line per number list (a matrix row, the distortion) keeps the file readable.
    return re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)), text) + "\n"


def write_cameras_json(pickle_path=cameras_lib.H36M_CAMERAS_PATH, out_path=CAMERAS_JSON) -> None:
    """Converts the calibration pickle to `cameras.json`."""
    pathlib.Path(out_path).write_text(cameras_to_json(cameras_lib.load_h36m_cameras(pickle_path)))


def load_cameras(path=CAMERAS_JSON) -> dict:
    """Reads `cameras.json`.

    Returns:
        dict (subject, camera_id) -> `data_builders.cameras.Camera` (float64 arrays).

    Raises:
        FileNotFoundError: no such file (the message names it).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Human3.6M calibration file not found: {path}")
    table = json.loads(path.read_text())["cameras"]
    return {(subject, camera_id): cameras_lib.Camera(
                intrinsics=np.asarray(c["intrinsics"], np.float64),
                extrinsics=np.asarray(c["extrinsics"], np.float64),
                distortion=np.asarray(c["distortion"], np.float64),
                width=int(c["width"]), height=int(c["height"]), name=c["name"],
                subject=subject, camera_id=camera_id)
            for subject, by_id in table.items() for camera_id, c in by_id.items()}


def scaled_intrinsics(camera, frame_width: int, frame_height: int, source: str = ""):
    """K of `camera` for frames of `frame_width` × `frame_height` pixels.

    The calibration's own size returns K unchanged. A uniform rescale by s = frame_width / width
    (the height may differ from s × height by the rounding of one pixel, e.g. 1000×1002 stored as
    128×128) scales each axis by its own factor about the pixel edges: with pixel centres at
    integers, u' = s_x (u + 0.5) - 0.5, so f'x = s_x fx and c'x = s_x (cx + 0.5) - 0.5.

    Args:
        camera: a `Camera` (its width, height and intrinsics).
        frame_width, frame_height: size of the decoded frames, pixels.
        source: the video, for the error message.

    Returns:
        3x3 float64 K for the frames.

    Raises:
        BadInput: the frames are not a uniform rescale of the calibration's size.
    """
    if (frame_width, frame_height) == (camera.width, camera.height):
        return np.array(camera.intrinsics, np.float64)
    scale_x = frame_width / camera.width
    scale_y = frame_height / camera.height
    if abs(scale_x * camera.height - frame_height) > 1.0:
        raise frames.BadInput(
            f"{source}: frames are {frame_width}×{frame_height} pixels; the calibration of camera "
            f"{camera.camera_id} ({camera.subject}) is for {camera.width}×{camera.height}, and "
            f"this is not a uniform rescale of it")
    scale_2 = np.array([scale_x, scale_y])
    intrinsics = np.array(camera.intrinsics, np.float64)
    intrinsics[:2, :2] *= scale_2[:, None]
    intrinsics[:2, 2] = scale_2 * (intrinsics[:2, 2] + 0.5) - 0.5
    return intrinsics


if __name__ == "__main__":
    write_cameras_json()
    print(f"wrote {CAMERAS_JSON}")
