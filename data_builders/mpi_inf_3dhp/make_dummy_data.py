"""Writes `dummy_data/`: a tiny MPI-INF-3DHP release in the release's own on-disk formats.

    python -m data_builders.mpi_inf_3dhp.make_dummy_data [--out DIR]

- `S1/Seq1`, `S2/Seq1`: `camera.calibration` (14 cameras: the 8 real calibrations of the
  sequence from the bundled mmpose camera file, scaled to 96² frames, and 6 made-up ones),
  `annot.mat` (MATLAB v5, cell arrays of 14), and `imageSequence/` + `FGmasks/` MJPEG AVIs for
  cameras 0, 2 and 8 only, 6 frames each.
- `mpi_inf_3dhp_test_set/TS1` (the 2048² test camera scaled to 128², frame 3 invalid) and `TS5`
  (1920×1080 scaled to 128×72): `annot_data.mat` (MATLAB v7.3: HDF5 behind MATLAB's 512-byte
  header block, axes in HDF5 order) and `imageSequence/img_*.jpg`.
- `test_masks/TS*/img_*.png` (for `test_mask_source=png_dir`) and `test_cameras.pkl` (the bundled
  test intrinsics scaled to these frame sizes, for the option `test_cameras`).

The poses are a bundled CMU walk moved across the capture area. The person is drawn as thick
limbs along the skeleton projected through each camera, over a static textured background; the
mask video's red channel also marks a strip along the top of every frame that is not green
screen, as studio equipment is in the real mask videos. Same code, same bytes.
"""

import argparse
import os
import pickle
import shutil

import h5py
import numpy as np
import scipy.io
from PIL import Image, ImageDraw

from data_builders import video
from data_builders.mpi_inf_3dhp import release
from data_builders.synthetic import motion as motion_lib
from maskpose_jax import skeleton

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data")
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets")
CMU_CLIP = os.path.join(ASSETS, "mocap", "cmu", "131_01.bvh")
TRAIN_CAMERAS_PKL = os.path.join(ASSETS, "cameras", "mpi_inf_3dhp_cameras_train.pkl")
TRAIN_SEQUENCES = (("S1", "Seq1"), ("S2", "Seq1"))
VIDEO_CAMERAS = (0, 2, 8)
TRAIN_SIZE = 96
NUM_FRAMES = 6
STUDIO_ROWS = 8          # top rows that are not green screen
# Test sequence -> (scale of the real camera, pose depth mm, sideways travel mm, invalid frames,
# activity codes).
TEST_SEQUENCES = {"TS1": (128 / 2048, 4000.0, 3000.0, (3,), (1, 1, 2, 2, 3, 3)),
                  "TS5": (128 / 1920, 5000.0, 4000.0, (), (6, 6, 6, 7, 7, 7))}
# Limb width (px) of the test frames: background subtraction opens its masks by 2 px.
TEST_LIMB_PX = 6
MAT_V5_TEXT = b"MATLAB 5.0 MAT-file, written by make_dummy_data.py (maskpose_jax)"
MAT_V73_TEXT = (b"MATLAB 7.3 MAT-file, written by make_dummy_data.py (maskpose_jax) "
                b"HDF5 schema 1.00 .")
_UPPER_BODY = frozenset({7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
_INVERSE_H17 = tuple(release.OURS_FROM_H17.index(k) for k in range(skeleton.NUM_JOINTS))


def walk_poses():
    """6 frames of a CMU walk, our 17 joints, mm, Z up, pelvis above the origin."""
    motion = motion_lib.read_bvh(CMU_CLIP)
    joints_6x17x3 = motion.joints_world_TxJx3[560:560 + 20 * NUM_FRAMES:20].copy()
    joints_6x17x3[..., :2] -= joints_6x17x3[:, :1, :2]
    joints_6x17x3[..., 2] -= joints_6x17x3[..., 2].min() - 60.0
    return joints_6x17x3


def joints_28(joints_17x3):
    """The release's 28 joints from our 17 (the 11 others interpolated along the body)."""
    j28 = np.zeros((len(release.JOINT_NAMES_28), 3))
    j28[list(release.OURS_FROM_28)] = joints_17x3
    names = {n: i for i, n in enumerate(release.JOINT_NAMES_28)}

    def lerp(a, b, w):
        return (1 - w) * j28[names[a]] + w * j28[names[b]]

    for k, name in enumerate(("spine2", "spine3", "spine4")):
        j28[names[name]] = lerp("spine", "neck", 0.25 * (k + 1))
    for side in ("left", "right"):
        j28[names[f"{side}_clavicle"]] = lerp("neck", f"{side}_shoulder", 0.5)
        j28[names[f"{side}_hand"]] = lerp(f"{side}_elbow", f"{side}_wrist", 1.4)
        j28[names[f"{side}_foot"]] = lerp(f"{side}_knee", f"{side}_ankle", 1.2)
        j28[names[f"{side}_toe"]] = lerp(f"{side}_knee", f"{side}_ankle", 1.35)
    return j28


def scaled_intrinsics(fx, fy, cx, cy, scale):
    """K of a frame resized by `scale` (pixel centres at integer coordinates)."""
    return np.array([[fx * scale, 0.0, (cx + 0.5) * scale - 0.5],
                     [0.0, fy * scale, (cy + 0.5) * scale - 0.5], [0.0, 0.0, 1.0]])


def project(points_Nx3_cam, intrinsics):
    return points_Nx3_cam[:, :2] / points_Nx3_cam[:, 2:] @ intrinsics[:2, :2].T + intrinsics[:2, 2]


def look_at(center_3, target_3, up_3):
    forward = (target_3 - center_3) / np.linalg.norm(target_3 - center_3)
    right = np.cross(forward, up_3)
    right /= np.linalg.norm(right)
    rot = np.stack([right, np.cross(forward, right), forward])
    return np.concatenate([rot, (-rot @ center_3)[:, None]], axis=1)


def train_rig(subject, sequence):
    """14 cameras (id -> (K, [R|t] mm)): the real ones of the sequence, made-up ones elsewhere."""
    with open(TRAIN_CAMERAS_PKL, "rb") as f:
        real = pickle.load(f)
    scale = TRAIN_SIZE / 2048
    rig = {}
    for camera in range(release.NUM_CAMERAS):
        params = real.get(f"{subject}_{sequence}_Cam{camera}")
        if params is None:
            angle = np.deg2rad(25.0 * camera)
            center = np.array([900 + 4500 * np.cos(angle), 1000 + 60 * camera,
                               400 + 4500 * np.sin(angle)])
            rig[camera] = (scaled_intrinsics(1500, 1500, 1023.5, 1023.5, scale),
                           look_at(center, np.array([900.0, 900.0, 400.0]), np.array([0, 1.0, 0])))
            continue
        (fx, fy), (cx, cy) = np.ravel(params["f"]), np.ravel(params["c"])
        extrinsics = np.concatenate([params["R"], np.ravel(params["T"])[:, None] * 1000.0], axis=1)
        rig[camera] = (scaled_intrinsics(fx, fy, cx, cy, scale), extrinsics)
    return rig


def write_calibration(path, rig, sizes):
    """Writes a Skeletool camera.calibration: `rig` id -> (K, [R|t] mm), `sizes` id -> (W, H)."""
    lines = [release.CALIBRATION_HEADER]
    for camera, (intrinsics, extrinsics) in sorted(rig.items()):
        k4, e4 = np.eye(4), np.eye(4)
        k4[:3, :3], e4[:3] = intrinsics, extrinsics
        width, height = sizes[camera]
        lines += [f"name          {camera}", "  sensor      10 10",
                  f"  size        {width} {height}", "  animated    0",
                  "  intrinsic   " + " ".join(f"{v:.12g}" for v in k4.ravel()) + " ",
                  "  extrinsic   " + " ".join(f"{v:.12g}" for v in e4.ravel()) + " ",
                  "  radial      0"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _fix_header(path, text, version_and_endian):
    """Replaces the MAT header's text (scipy stamps the time there): reproducible files."""
    header = text.ljust(116, b" ") + b"\0" * 8 + version_and_endian
    with open(path, "r+b") as f:
        f.write(header)


def write_annot_mat(path, joints_cam_by_camera, rig):
    """annot.mat (v5) as released: one cell per camera of annot2, annot3 (T×84 camera-frame mm
    from `joints_cam_by_camera`: id -> T×28×3) and univ_annot3; `cameras`; 0-based `frames`."""
    def cells(rows):
        array = np.empty((len(rows), 1), dtype=object)
        for i, row in enumerate(rows):
            array[i, 0] = np.asarray(row, np.float32)
        return array

    cameras = sorted(joints_cam_by_camera)
    num_frames = len(joints_cam_by_camera[cameras[0]])
    annot3 = [joints_cam_by_camera[c].reshape(num_frames, -1) for c in cameras]
    annot2 = [project(joints_cam_by_camera[c].reshape(-1, 3), rig[c][0]).reshape(num_frames, -1)
              for c in cameras]
    univ = [(joints_cam_by_camera[c] - joints_cam_by_camera[c][:, 4:5]) * 0.95
            + joints_cam_by_camera[c][:, 4:5] for c in cameras]
    scipy.io.savemat(path, {
            "annot2": cells(annot2), "annot3": cells(annot3),
            "univ_annot3": cells([u.reshape(num_frames, -1) for u in univ]),
            "cameras": np.array([cameras], np.float64),
            "frames": np.arange(num_frames, dtype=np.float64)[:, None]}, do_compression=True)
    _fix_header(path, MAT_V5_TEXT, b"\x00\x01IM")


def write_annot_data_mat(path, joints_h17_Tx17x3, intrinsics, valid_T, activity_T):
    """annot_data.mat (v7.3): HDF5 with MATLAB's header block, arrays in HDF5 (reversed) order."""
    num_frames = len(joints_h17_Tx17x3)
    annot2 = project(joints_h17_Tx17x3.reshape(-1, 3), intrinsics).reshape(num_frames, 1, 17, 2)
    arrays = {"annot2": annot2, "annot3": joints_h17_Tx17x3[:, None],
              "univ_annot3": joints_h17_Tx17x3[:, None] * 0.95,
              "valid_frame": np.asarray(valid_T, np.float64)[:, None],
              "activity_annotation": np.asarray(activity_T, np.float64)[:, None]}
    with h5py.File(path, "w", userblock_size=512, libver="earliest", track_order=False) as f:
        for key, array in sorted(arrays.items()):
            dataset = f.create_dataset(key, data=np.asarray(array, np.float64), track_times=False)
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
    _fix_header(path, MAT_V73_TEXT, b"\x00\x02IM")


def draw_person(size_wh, uv_17x2, depth_mm, focal_px, min_width=2):
    """Draws the person with limbs 110 mm (and at least `min_width` px) wide.

    Returns:
        (RGB H×W×3 uint8 on black, masks of the whole body, the upper body, the lower body).
    """
    layers = {name: Image.new("L", size_wh) for name in ("upper", "lower")}
    colors = Image.new("RGB", size_wh)
    paint = ImageDraw.Draw(colors)
    width = max(min_width, int(round(focal_px * 110.0 / depth_mm)))
    points = [tuple(map(float, p)) for p in uv_17x2]
    for a, b in skeleton.BONES:
        upper = a in _UPPER_BODY and b in _UPPER_BODY
        part = ImageDraw.Draw(layers["upper" if upper else "lower"])
        for target, fill in ((paint, (190, 40, 50) if upper else (40, 50, 170)), (part, 255)):
            target.line([points[a], points[b]], fill=fill, width=width)
            half = width / 2
            for u, v in (points[a], points[b]):
                target.ellipse([u - half, v - half, u + half, v + half], fill=fill)
    head = np.mean(uv_17x2[[9, 10]], axis=0)
    radius = max(focal_px * 110.0 / depth_mm, 0.75 * width)
    box = [head[0] - radius, head[1] - radius, head[0] + radius, head[1] + radius]
    paint.ellipse(box, fill=(225, 180, 140))
    ImageDraw.Draw(layers["upper"]).ellipse(box, fill=255)
    upper, lower = (np.asarray(layers[k]) > 0 for k in ("upper", "lower"))
    return np.asarray(colors), upper | lower, upper, lower


def texture(rng, size_hw, base_rgb, amplitude):
    """A smooth static texture (low-frequency noise around `base_rgb`)."""
    coarse = rng.uniform(-1, 1, size=(size_hw[0] // 8 + 2, size_hw[1] // 8 + 2, 3))
    smooth = np.asarray(Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize(
            (size_hw[1], size_hw[0]), Image.BILINEAR), np.float64) / 127.5 - 1
    return np.clip(np.asarray(base_rgb) + amplitude * smooth, 0, 255).astype(np.uint8)


def make_train(out_dir, poses_Tx17x3):
    for index, (subject, sequence) in enumerate(TRAIN_SEQUENCES):
        seq_dir = os.path.join(out_dir, subject, sequence)
        for sub in ("imageSequence", "FGmasks"):
            os.makedirs(os.path.join(seq_dir, sub), exist_ok=True)
        rig = train_rig(subject, sequence)
        write_calibration(os.path.join(seq_dir, "camera.calibration"), rig,
                          {c: (TRAIN_SIZE, TRAIN_SIZE) for c in rig})
        # Z-up walk -> the studio's Y-up world, walking along x through the cameras' focus.
        yup = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
        world = poses_Tx17x3 @ yup.T + np.array([700.0 + 60 * index, 0.0, 400.0])
        world[:, :, 0] += np.linspace(-250, 250, NUM_FRAMES)[:, None]
        joints_cam = {c: np.stack([joints_28(w) @ e[:, :3].T + e[:, 3] for w in world])
                      for c, (_, e) in rig.items()}
        write_annot_mat(os.path.join(seq_dir, "annot.mat"), joints_cam, rig)
        for camera in VIDEO_CAMERAS:
            intrinsics, extrinsics = rig[camera]
            rng = np.random.default_rng([index, camera])
            backdrop = texture(rng, (TRAIN_SIZE, TRAIN_SIZE), (60, 170, 70), 25)
            backdrop[:STUDIO_ROWS] = texture(rng, (STUDIO_ROWS, TRAIN_SIZE), (120, 120, 125), 40)
            images, masks = [], []
            for pose_17x3 in world:
                cam_17x3 = pose_17x3 @ extrinsics[:, :3].T + extrinsics[:, 3]
                uv = project(cam_17x3, intrinsics)
                assert (uv > 2).all() and (uv < TRAIN_SIZE - 3).all()
                assert (uv[:, 1] > STUDIO_ROWS + 2).all()
                rgb, full, upper, lower = draw_person((TRAIN_SIZE, TRAIN_SIZE), uv,
                                                      cam_17x3[:, 2].mean(), intrinsics[0, 0])
                images.append(np.where(full[..., None], rgb, backdrop))
                mask = np.zeros((TRAIN_SIZE, TRAIN_SIZE, 3), np.uint8)
                mask[..., 0] = 255 * full
                mask[:STUDIO_ROWS, :, 0] = 255
                mask[..., 1], mask[..., 2] = 255 * upper, 255 * lower
                masks.append(mask)
            video.write_video(os.path.join(seq_dir, "imageSequence", f"video_{camera}.avi"),
                              np.stack(images), fps=25, codec="mjpeg")
            video.write_video(os.path.join(seq_dir, "FGmasks", f"video_{camera}.avi"),
                              np.stack(masks), fps=25, codec="mjpeg")


def make_test(out_dir, poses_Tx17x3):
    with open(release.TEST_CAMERAS_PATH, "rb") as f:
        bundled = pickle.load(f)
    scaled = {}
    for sequence, params in bundled.items():
        scale = TEST_SEQUENCES.get(sequence, (TEST_SEQUENCES["TS1"] if params["w"] == 2048
                                              else TEST_SEQUENCES["TS5"]))[0]
        k = scaled_intrinsics(*np.ravel(params["f"]), *np.ravel(params["c"]), scale)
        scaled[sequence] = {"c": k[:2, 2:3].copy(), "f": np.diag(k)[:2, None].copy(),
                            "w": int(round(params["w"] * scale)),
                            "h": int(round(params["h"] * scale)), "name": params["name"]}
    with open(os.path.join(out_dir, "test_cameras.pkl"), "wb") as f:
        pickle.dump(scaled, f, protocol=4)
    # Z-up world -> camera (x right, y down, z forward), walking sideways at a fixed depth.
    cam_from_zup = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    for index, (sequence, settings) in enumerate(TEST_SEQUENCES.items()):
        _, depth, travel, invalid, activity = settings
        camera = scaled[sequence]
        intrinsics = np.array([[camera["f"][0, 0], 0, camera["c"][0, 0]],
                               [0, camera["f"][1, 0], camera["c"][1, 0]], [0, 0, 1.0]])
        size_wh = (camera["w"], camera["h"])
        joints = poses_Tx17x3 @ cam_from_zup.T + np.array([0.0, 850.0, depth])
        joints[:, :, 0] += np.linspace(-travel / 2, travel / 2, NUM_FRAMES)[:, None]
        image_dir = os.path.join(out_dir, release.TEST_SET_DIR, sequence, "imageSequence")
        mask_dir = os.path.join(out_dir, "test_masks", sequence)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(mask_dir, exist_ok=True)
        backdrop = texture(np.random.default_rng([7, index]), size_wh[::-1], (150, 140, 120), 45)
        for frame, joints_17x3 in enumerate(joints):
            uv = project(joints_17x3, intrinsics)
            assert (uv > 2).all() and (uv < np.array(size_wh) - 3).all()
            rgb, full, _, _ = draw_person(size_wh, uv, depth, intrinsics[0, 0], TEST_LIMB_PX)
            Image.fromarray(np.where(full[..., None], rgb, backdrop)).save(
                    os.path.join(image_dir, f"img_{frame + 1:06d}.jpg"), quality=92)
            Image.fromarray((255 * full).astype(np.uint8)).save(
                    os.path.join(mask_dir, f"img_{frame + 1:06d}.png"))
        valid = np.ones(NUM_FRAMES)
        valid[list(invalid)] = 0
        write_annot_data_mat(
                os.path.join(out_dir, release.TEST_SET_DIR, sequence, "annot_data.mat"),
                joints[:, list(_INVERSE_H17)], intrinsics, valid, activity)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT_DIR, help="folder to (re)write")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    poses = walk_poses()
    make_train(args.out, poses)
    make_test(args.out, poses)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
