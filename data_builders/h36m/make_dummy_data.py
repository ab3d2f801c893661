"""Writes `dummy_data/`: a tiny Human3.6M release in the true on-disk formats, for the tests.

    python -m data_builders.h36m.make_dummy_data [--out data_builders/h36m/dummy_data]

Two subjects (S1 train, S9 test) × 2 sequences × 4 cameras, 9–10 frames each, videos at 128×128
(a uniform rescale of the 1000×1000 / 1000×1002 calibrations):

    S1/MyPoseFeatures/D3_Positions/<sequence>.cdf      CDF, "Pose" 1×T×96 (32 joints, mm, world)
    S1/Videos/<sequence>.<camera_id>.mp4               H.264, 50 fps
    S1/MySegmentsMat/ground_truth_bs/<sequence>.<camera_id>.mat   MATLAB v7.3 cell "Masks"
    segmentations/S1/<sequence>.<camera_id>/<frame:06d>.png       the same masks as PNGs
    S1/MyPoseFeatures/D3_Positions/_ALL 1.cdf          a whole-session file the builder ignores

The poses are real: the four Human3.6M frames of `assets/cameras/h36m_samples_body3d.npz`
(moved to the world frame), each turned and walked across the capture area. The person is drawn
as thick capsules along the ground-truth bones, projected with the raw calibration of
`assets/cameras/h36m_cameras.pkl` (its own convention and distortion formula, independent of
`maskpose_jax.geometry`), over a static textured background per camera. The drawn silhouette is
the "background-subtraction" mask. Deterministic: the same bytes on every run (the H.264
bitstream may differ between machines with the encoder's thread count: its test compares the
decoded frames).
"""

import argparse
import os
import pickle
import shutil

import cdflib
import cdflib.cdfwrite
import h5py
import numpy as np
from PIL import Image
from scipy import ndimage

from data_builders import cameras as cameras_lib
from data_builders import video
from data_builders.h36m import masks as masks_lib
from data_builders.h36m import release
from maskpose_jax import skeleton

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data")
SAMPLES_PATH = cameras_lib.ASSETS_DIR / "cameras" / "h36m_samples_body3d.npz"
FRAME_PX = 128      # width of the dummy videos (the calibrations are 1000 wide)
FPS = 50
# subject -> [(sequence, sample of the npz, frames, start (x, y) mm, yaw rad, step (x, y) mm)]
SEQUENCES = {
        "S1": [("Directions 1", 0, 10, (-700.0, -400.0), 0.3, (90.0, 40.0)),
               ("TakingPhoto", 2, 9, (500.0, 500.0), 2.0, (-40.0, -90.0))],
        "S9": [("Photo 1", 1, 9, (-300.0, 600.0), 1.0, (80.0, -50.0)),
               ("WalkDog", 3, 10, (600.0, -500.0), -1.2, (-90.0, 20.0))],
}
# Capsule radius per drawn bone (mm): limbs by child joint, torso links, and the head.
_RADIUS_MM = {1: 110.0, 2: 75.0, 3: 60.0, 4: 110.0, 5: 75.0, 6: 60.0, 7: 120.0, 8: 120.0,
              9: 55.0, 10: 100.0, 11: 70.0, 12: 50.0, 13: 45.0, 14: 70.0, 15: 50.0, 16: 45.0}
_TORSO_RADIUS_MM = 100.0
_COLORS = {"shirt": (190, 70, 60), "trousers": (50, 60, 150), "skin": (225, 185, 150)}
_PART = {1: "trousers", 2: "trousers", 3: "trousers", 4: "trousers", 5: "trousers",
         6: "trousers", 7: "shirt", 8: "shirt", 9: "skin", 10: "skin", 11: "shirt", 12: "shirt",
         13: "skin", 14: "shirt", 15: "shirt", 16: "skin"}
MAT_HEADER = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
              b"HDF5 schema 1.00 .")


def sample_poses_world():
    """The 4 real frames of the samples file as 17×3 world joints (mm), via their cameras."""
    samples = np.load(SAMPLES_PATH)
    with open(cameras_lib.H36M_CAMERAS_PATH, "rb") as f:
        raw = pickle.load(f)
    poses = []
    for name, joints_cam in zip(samples["imgname"], samples["S"][..., :3]):
        subject, rest = str(name).split("/")[:2]
        params = raw[subject, rest.split(".")[1]]
        # X_cam = R^T (X_world - T), metres.
        poses.append((joints_cam @ params["R"].T + params["T"].reshape(3)) * 1000.0)
    return poses


def sequence_poses(base_Jx3, frames, start_xy, yaw, step_xy):
    """A walk: the base pose turned by `yaw` + 0.08 rad per frame about its pelvis, moved."""
    out = []
    for t in range(frames):
        angle = yaw + 0.08 * t
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        centred = base_Jx3 - np.array([*base_Jx3[0, :2], 0.0])
        shift = np.array([start_xy[0] + t * step_xy[0], start_xy[1] + t * step_xy[1], 0.0])
        out.append(centred @ rot.T + shift)
    return np.stack(out)


def to_32_joints(joints_Jx3):
    """The release's 32-joint layout (see `release.JOINTS_FROM_32`) from our 17 joints."""
    out = np.zeros((32, 3))
    out[list(release.JOINTS_FROM_32)] = joints_Jx3
    pelvis, r_ankle, l_ankle, thorax, l_wrist, r_wrist = joints_Jx3[[0, 3, 6, 8, 13, 16]]
    out[[4, 5]] = r_ankle + np.array([[0.0, 0.0, -60.0], [0.0, 0.0, -70.0]])
    out[[9, 10]] = l_ankle + np.array([[0.0, 0.0, -60.0], [0.0, 0.0, -70.0]])
    out[11], out[16], out[24] = pelvis, thorax, thorax
    out[20:24], out[28:32] = l_wrist, r_wrist
    return out


def project_raw(points_Nx3, params, scale_xy):
    """Pixels in the dummy video: the pickle's convention and distortion, then the rescale."""
    cam_Nx3 = (points_Nx3 / 1000.0 - params["T"].reshape(3)) @ params["R"]
    xy = cam_Nx3[:, :2] / cam_Nx3[:, 2:]
    k, p = params["k"].reshape(3), params["p"].reshape(2)
    r2 = (xy ** 2).sum(axis=1, keepdims=True)
    radial = 1 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3
    tan = 2 * (p[1] * xy[:, :1] + p[0] * xy[:, 1:])
    xy_d = xy * (radial + tan) + r2 * np.array([p[1], p[0]])
    uv_full = xy_d * params["f"].reshape(2) + params["c"].reshape(2)
    return scale_xy * (uv_full + 0.5) - 0.5, cam_Nx3[:, 2] * 1000.0


def render(joints_Jx3, params, background_HxWx3, scale_xy):
    """Draws the capsule body: returns (RGB uint8 frame, uint8 {0,1} silhouette)."""
    height, width = background_HxWx3.shape[:2]
    uv_Jx2, depth_J = project_raw(joints_Jx3, params, scale_xy)
    focal = float(params["f"].reshape(2)[0] * scale_xy[0])
    vv, uu = np.mgrid[0:height, 0:width].astype(np.float64)
    image = background_HxWx3.astype(np.float64).copy()
    mask = np.zeros((height, width), bool)
    best = np.full((height, width), np.inf)
    for parent, child in skeleton.BONES:
        is_limb = skeleton.PARENTS[child] == parent
        radius_mm = _RADIUS_MM[child] if is_limb else _TORSO_RADIUS_MM
        radius_px = radius_mm * focal / (0.5 * (depth_J[parent] + depth_J[child]))
        a, b = uv_Jx2[parent], uv_Jx2[child]
        ab = b - a
        t = np.clip(((uu - a[0]) * ab[0] + (vv - a[1]) * ab[1]) / max(ab @ ab, 1e-9), 0, 1)
        dist = np.hypot(uu - a[0] - t * ab[0], vv - a[1] - t * ab[1]) / radius_px
        inside = (dist < 1.0) & (dist < best)
        color = np.array(_COLORS[_PART[child] if is_limb else "shirt"], np.float64)
        shade = 1.0 - 0.35 * dist ** 2
        image[inside] = color * shade[inside, None]
        best = np.where(inside, dist, best)
        mask |= dist < 1.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask.astype(np.uint8)


def textured_background(rng, height, width):
    """A static room: smooth colour noise, a floor band and a few panels."""
    coarse = rng.uniform(70, 180, size=(9, 9, 3))
    image = ndimage.zoom(coarse, (height / 9, width / 9, 1), order=1)[:height, :width]
    image[int(0.7 * height):] *= 0.8
    for _ in range(4):
        v0, u0 = rng.integers(0, height - 20), rng.integers(0, width - 20)
        image[v0:v0 + rng.integers(6, 20), u0:u0 + rng.integers(6, 20)] = rng.uniform(60, 200, 3)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def write_cdf(path, joints_Tx32x3):
    """A D3_Positions file: variable "Pose" holding one record of T × 96 doubles."""
    if os.path.exists(path):
        os.remove(path)
    cdf = cdflib.cdfwrite.CDF(path, cdf_spec={"Majority": "Row_major"})
    cdf.write_var({"Variable": "Pose", "Data_Type": cdflib.cdfwrite.CDF.CDF_DOUBLE,
                   "Num_Elements": 1, "Rec_Vary": True, "Compress": 0,
                   "Dim_Sizes": [len(joints_Tx32x3), 96]},
                  var_data=joints_Tx32x3.reshape(1, -1, 96))
    cdf.close()


def write_mat_masks(path, masks):
    """A MATLAB v7.3 file with the cell array "Masks" of T logical masks (a list of H×W arrays).

    HDF5 with a 512-byte user block holding the MATLAB header; each mask is a uint8 dataset of
    shape W×H (MATLAB is column-major) under "#refs#", and "Masks" is a T×1 dataset of
    references to them.
    """
    with h5py.File(path, "w", userblock_size=512, libver=("v110", "latest")) as f:
        refs = f.create_group("#refs#", track_order=False)
        references = []
        for t, mask in enumerate(masks):
            data = refs.create_dataset(f"m{t:06d}", data=np.ascontiguousarray(mask.T),
                                       dtype=np.uint8, compression="gzip", track_times=False)
            data.attrs["MATLAB_class"] = np.bytes_("logical")
            data.attrs["MATLAB_int_decode"] = np.int32(1)
            references.append(data.ref)
        cell = f.create_dataset("Masks", data=np.array(references, h5py.ref_dtype)[:, None],
                                dtype=h5py.ref_dtype, track_times=False)
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as f:
        f.write(MAT_HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def write_subject(out_dir, subject, poses_world, raw_cameras):
    root = os.path.join(out_dir, subject)
    for folder in ("MyPoseFeatures/D3_Positions", "Videos", "MySegmentsMat/ground_truth_bs"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for camera_index, camera_id in enumerate(release.CAMERA_IDS):
        params = raw_cameras[subject, camera_id]
        height = int(round(params["h"] * FRAME_PX / params["w"]))
        scale_xy = np.array([FRAME_PX / params["w"], height / params["h"]])
        background = textured_background(
            np.random.default_rng([int(subject[1:]), camera_index]), height, FRAME_PX)
        for name, sample, count, start_xy, yaw, step_xy in SEQUENCES[subject]:
            joints_TxJx3 = sequence_poses(poses_world[sample], count, start_xy, yaw, step_xy)
            drawn = [render(j, params, background, scale_xy) for j in joints_TxJx3]
            images = np.stack([d[0] for d in drawn])
            masks = np.stack([d[1] for d in drawn])
            video.write_video(os.path.join(root, "Videos", f"{name}.{camera_id}.mp4"), images,
                              fps=FPS, codec="libx264")
            write_mat_masks(release.bs_mask_path(out_dir, subject, name, camera_id), masks)
            png_dir = os.path.dirname(release.png_mask_path(
                os.path.join(out_dir, "segmentations"), subject, name, camera_id, 0))
            os.makedirs(png_dir, exist_ok=True)
            for t, mask in enumerate(masks):
                Image.fromarray(mask * 255).save(os.path.join(png_dir, f"{t:06d}.png"))
            if camera_index == 0:
                write_cdf(os.path.join(root, "MyPoseFeatures", "D3_Positions", f"{name}.cdf"),
                          np.stack([to_32_joints(j) for j in joints_TxJx3]))
    if subject == "S1":
        write_cdf(os.path.join(root, "MyPoseFeatures", "D3_Positions", "_ALL 1.cdf"),
                  np.zeros((3, 32, 3)))


def make_dummy_data(out_dir=OUT_DIR):
    """Writes the dummy release into `out_dir` (replacing it)."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    with open(cameras_lib.H36M_CAMERAS_PATH, "rb") as f:
        raw_cameras = pickle.load(f)
    poses_world = sample_poses_world()
    for subject in SEQUENCES:
        write_subject(out_dir, subject, poses_world, raw_cameras)


# The faults of `make_bad_release`, for the builder's tests and benchmarks/reliability.py:
# {fault: (builder options that reach it and no other, the message naming the file)}.
BAD = {
    "poses and video of different lengths": (
        dict(test_subjects=""),
        "Directions 1.54138969.mp4: the video has 10 frames, the poses"),
    "a mask of another size": (
        dict(test_subjects="", exclude_actions="Directions"),
        "TakingPhoto.54138969.mat (mask of frame 2): mask is 64×64 pixels, the frame 128×128"),
    "an empty mask": (
        dict(test_subjects="", exclude_actions="Directions", cameras="55011271,58860488"),
        "TakingPhoto.55011271.mat (mask of frame 4): the mask is empty"),
    "a truncated video": (
        dict(train_subjects="", exclude_actions="Photo"),
        "WalkDog.58860488.mp4: cannot be read"),
    "a missing video": (
        dict(train_subjects="", exclude_actions="WalkDog"),
        "Photo 2.60457274.mp4: no such video file"),
}


def make_bad_release(root, source=OUT_DIR):
    """Copies the dummy release `source` to `root` (no PNG masks) with one fault per sequence
    (`BAD`): S1 "Directions 1" has 12 pose frames for 10-frame videos; S1 "TakingPhoto" has a
    64×64 mask (frame 2, camera 54138969) and empty ones (frame 4 of 55011271, frame 8, the last
    one sampled, of 58860488); S9 "WalkDog" has a video cut in half (58860488); S9 "Photo 2" is a
    copy of "Photo 1" without the video of camera 60457274."""
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("segmentations"))
    poses_path = os.path.join(root, "S1", "MyPoseFeatures", "D3_Positions", "Directions 1.cdf")
    pose_Tx96 = np.asarray(cdflib.CDF(poses_path).varget("Pose")).reshape(-1, 96)
    write_cdf(poses_path, np.concatenate([pose_Tx96, pose_Tx96[-2:]]).reshape(-1, 32, 3))
    for camera_id, frame, bad in (("54138969", 2, np.ones((64, 64), np.uint8)),
                                  ("55011271", 4, np.zeros((128, 128), np.uint8)),
                                  ("58860488", 8, np.zeros((128, 128), np.uint8))):
        path = release.bs_mask_path(root, "S1", "TakingPhoto", camera_id)
        with masks_lib.BsMatMasks(path, 9) as source_masks:
            stored = [source_masks(t)[0].astype(np.uint8) for t in range(9)]
        stored[frame] = bad
        write_mat_masks(path, stored)
    cut = release.video_path(root, "S9", "WalkDog", "58860488")
    with open(cut, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[:len(data) // 2])
    for folder, _, files in os.walk(os.path.join(root, "S9")):
        for name in files:
            if name.startswith("Photo 1."):
                shutil.copy(os.path.join(folder, name),
                            os.path.join(folder, name.replace("Photo 1.", "Photo 2.")))
    os.remove(release.video_path(root, "S9", "Photo 2", "60457274"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT_DIR, help="output folder (replaced)")
    out = parser.parse_args(argv).out
    make_dummy_data(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
