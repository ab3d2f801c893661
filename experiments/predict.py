"""Predicts 2D and 3D joints on your own images with a trained run.

    python -m experiments.predict --config=synthetic.py --workdir=runs/synthetic \\
        --images='photos/*.jpg' [--masks=photos_masks/] [--out=DIR] [--on_bad_input=skip]

`--images` is a folder (every .png/.jpg/.jpeg in it) or a glob. Each image is cropped around its
foreground mask (`--masks`: a folder or glob of masks with the images' file names, any image
format; the mask's bounding box with the training crops' 15% margin, `data_builders.frames`) or,
without masks, around the whole image (a centred square on its longer side), resampled to the
run's crop size and passed through the detector. Per image, in `--out` (default
`<workdir>/predictions`): `NAME.json` (2D joints in image pixels, 3D joints and the crop) and
`NAME.png` (the predicted skeleton over the crop, then a front and a side view of the 3D pose).

3D joints are root-relative, in the camera frame (X right, Y down, Z away), mm: lifted as
training lifts a single view (`geometry.lift_to_cam` at the crop-scale root depth,
`multiview.fallback_root_depth`) through an assumed pinhole at the image centre with focal
`--focal_px` (default: the image's longer side). The root depth scales with the focal length, so
the root-relative pose hardly depends on it.

Bad input: an unreadable image, a missing, unreadable, empty or differently sized mask, or two
images with one name is skipped and counted (`--on_bad_input=skip`; the skips and their reasons
are printed and listed in `summary.json`) or, with `--on_bad_input=error`, an error naming the
file before anything is written. Each output file is written whole (a temporary file renamed);
`summary.json`, written last, marks a finished run.
"""

import glob
import json
import os
import sys

from absl import app
from absl import flags

from experiments import flags as experiment_flags

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_IMAGES = flags.DEFINE_string("images", None, "Folder or glob of the images.")
_MASKS = flags.DEFINE_string("masks", None, "Folder or glob of their foreground masks "
                             "(matched by file name without extension); none: whole images.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default <workdir>/predictions).")
_FOCAL = flags.DEFINE_float("focal_px", 0.0, "Assumed focal length, pixels (0: the image's "
                            "longer side).")
_ON_BAD = flags.DEFINE_enum("on_bad_input", "skip", ["skip", "error"],
                            "A bad image or mask: skip and count it, or stop before writing.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per prediction batch.")
DISPLAY_SIZE = 256  # side of the overlay's crop, pixels


def list_files(pattern: str, what: str) -> list[str]:
    """The image files of a folder, or a glob's matches, sorted; ValueError when there are none."""
    if os.path.isdir(pattern):
        paths = [os.path.join(pattern, name) for name in os.listdir(pattern)]
    else:
        paths = glob.glob(pattern)
    paths = sorted(p for p in paths if os.path.isfile(p)
                   and p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f"{what} {pattern!r}: no {'/'.join(IMAGE_EXTENSIONS)} file found")
    return paths


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def pair_inputs(images: list[str], masks: list[str] | None):
    """[(name, image, mask or None)] and [(path, reason)] of the inputs that cannot be paired."""
    by_stem = {}
    for path in masks or ():
        by_stem.setdefault(_stem(path), []).append(path)
    pairs, bad, seen = [], [], {}
    for path in images:
        name = _stem(path)
        if name in seen:
            bad.append((path, f"has the name {name!r} of {seen[name]} (outputs would collide)"))
            continue
        seen[name] = path
        mask = None
        if masks is not None:
            found = by_stem.get(name, [])
            if len(found) != 1:
                bad.append((path, f"{'no mask' if not found else 'several masks'} named "
                                  f"{name!r} in --masks ({', '.join(found) or 'none'})"))
                continue
            mask = found[0]
        pairs.append((name, path, mask))
    return pairs, bad


def crop_input(image_path, mask_path, size):
    """(image H×W×3 uint8, crop affine 2×3 for an N×N crop), via `data_builders.frames`.

    Raises:
        frames.BadInput: an unreadable file, a mask of another size or an empty mask (named).
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    from data_builders import frames  # pylint: disable=import-outside-toplevel
    image = frames.read_image(image_path)
    height, width = image.shape[:2]
    if mask_path is None:
        bbox = np.array([-0.5, -0.5, width - 0.5, height - 0.5])
        return image, frames.crop_from_mask_bbox(bbox, size, margin=0.0)
    return image, frames.crop_around_mask(image, frames.read_mask(mask_path), size,
                                          source=f"{mask_path} (for {image_path})")


def main(argv):
    del argv
    # Imported here so that `--help` and flag errors do not wait for JAX.
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tqdm  # pylint: disable=import-outside-toplevel

    from data_builders import configured  # pylint: disable=import-outside-toplevel
    from data_builders import frames  # pylint: disable=import-outside-toplevel
    from maskpose_jax import checkpoint  # pylint: disable=import-outside-toplevel
    from maskpose_jax import factory  # pylint: disable=import-outside-toplevel
    from maskpose_jax import geometry  # pylint: disable=import-outside-toplevel
    from maskpose_jax import inference  # pylint: disable=import-outside-toplevel
    from maskpose_jax import multiview  # pylint: disable=import-outside-toplevel
    from maskpose_jax import reporting  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel
    from maskpose_jax import skeleton  # pylint: disable=import-outside-toplevel
    from maskpose_jax import visualization  # pylint: disable=import-outside-toplevel

    config = experiment_flags.config()
    workdir = experiment_flags.workdir(f"runs/{config.data.name}")
    if not _IMAGES.value:
        sys.exit("error: --images is required (a folder or a glob)")
    try:
        images = list_files(_IMAGES.value, "--images")
        masks = list_files(_MASKS.value, "--masks") if _MASKS.value else None
        try:
            state, meta = factory.restore_latest(config, workdir, sharding.make_mesh())
        except ValueError:  # an older checkpoint: its fit cache is sized by the training split
            state, meta = factory.restore_latest(
                config, workdir, sharding.make_mesh(),
                configured.open_split(config, config.data.train_split))
    except (ValueError, FileNotFoundError, checkpoint.UnreadableCheckpointError) as error:
        sys.exit(f"error: {error}")
    size = int(meta["image_size"])
    pairs, bad = pair_inputs(images, masks)

    # Every input is read and cropped before anything is written.
    crops = []
    for name, image_path, mask_path in tqdm.tqdm(pairs, desc="reading", unit="image"):
        try:
            image, crop_2x3 = crop_input(image_path, mask_path, size)
        except frames.BadInput as error:  # its message names the file
            bad.append((image_path, str(error).removeprefix(f"{image_path}: ")))
            continue
        crops.append(dict(name=name, image=image_path, mask=mask_path, crop=crop_2x3,
                          pixels=np.clip(np.rint(frames.warp_to_crop(image, crop_2x3, size)),
                                         0, 255).astype(np.uint8),
                          height=image.shape[0], width=image.shape[1]))
    if bad and _ON_BAD.value == "error":
        sys.exit("error: bad input (nothing written):\n" + "\n".join(
            f"  {path}: {reason}" for path, reason in bad))

    out = _OUT.value or os.path.join(workdir, "predictions")
    os.makedirs(out, exist_ok=True)
    summary_path = os.path.join(out, "summary.json")
    if os.path.exists(summary_path):
        os.remove(summary_path)  # a finished mark of an earlier run would vouch for this one
    local = inference.local_copy(state)
    detector, _ = factory.create_models(config)
    predict = inference.make_predict(detector)
    depth_range = float(config.model.depth_range_mm)

    @jax.jit
    @jax.vmap
    def lift(keypoints_Jx3, crop_2x3, intrinsics_3x3):  # a batch of images at once
        root = multiview.fallback_root_depth(crop_2x3, intrinsics_3x3, size, depth_range)
        joints_cam_Jx3 = geometry.lift_to_cam(keypoints_Jx3, crop_2x3, intrinsics_3x3, root,
                                              size, depth_range)
        uv_Jx2 = multiview.full_px_from_normalized(keypoints_Jx3[:, :2], crop_2x3, size)
        return joints_cam_Jx3 - joints_cam_Jx3[skeleton.PELVIS], uv_Jx2

    batch_size = max(1, int(_BATCH.value))
    for start in tqdm.tqdm(range(0, len(crops), batch_size), desc="predicting", unit="batch"):
        chunk = crops[start:start + batch_size]
        pixels = np.stack([c["pixels"] for c in chunk])
        keypoints_BxJx3 = predict(local.params, local.batch_stats, pixels[:, None])[:, 0]
        focal_B = [float(_FOCAL.value) or float(max(c["height"], c["width"])) for c in chunk]
        intrinsics_Bx3x3 = np.array([[[f, 0, (c["width"] - 1) / 2],
                                      [0, f, (c["height"] - 1) / 2], [0, 0, 1]]
                                     for f, c in zip(focal_B, chunk)], np.float32)
        crops_Bx2x3 = np.array([c["crop"] for c in chunk], np.float32)
        joints_BxJx3, uv_BxJx2 = (np.asarray(x, np.float64) for x in lift(
            keypoints_BxJx3, jnp.asarray(crops_Bx2x3), jnp.asarray(intrinsics_Bx3x3)))
        keypoints_BxJx3 = np.asarray(keypoints_BxJx3)
        for item, keypoints_Jx3, joints_Jx3, uv_Jx2, focal in zip(
                chunk, keypoints_BxJx3, joints_BxJx3, uv_BxJx2, focal_B):
            record = {
                "image": item["image"], "mask": item["mask"], "checkpoint_step": int(local.step),
                "joints_2d_px": dict(zip(skeleton.JOINT_NAMES, np.round(uv_Jx2, 2).tolist())),
                "joints_3d_mm": dict(zip(skeleton.JOINT_NAMES,
                                         np.round(joints_Jx3, 1).tolist())),
                "keypoints_normalized": dict(zip(skeleton.JOINT_NAMES, np.round(
                    keypoints_Jx3.astype(np.float64), 5).tolist())),
                "crop_2x3": np.asarray(item["crop"], np.float64).round(6).tolist(),
                "assumed_focal_px": focal,
                "frames": "joints_2d_px: full-image pixels (u right, v down); joints_3d_mm: "
                          "camera frame, root-relative (pelvis at 0), assumed pinhole",
            }
            # The overlay shows the model's crop box at DISPLAY_SIZE, from the full image.
            corners_2x2 = np.asarray(geometry.invert_affine(item["crop"])) @ np.array(
                [[-0.5, size - 0.5], [-0.5, size - 0.5], [1.0, 1.0]])
            display_2x3 = frames.crop_from_mask_bbox(corners_2x2.T.reshape(-1), DISPLAY_SIZE, 0.0)
            display = frames.warp_to_crop(frames.read_image(item["image"]), display_2x3,
                                          DISPLAY_SIZE)
            display_xy_Jx2 = geometry.normalized_from_crop_px(
                geometry.apply_affine(display_2x3, uv_Jx2), DISPLAY_SIZE)
            overlay = np.concatenate([
                visualization.draw_skeleton(np.clip(np.rint(display), 0, 255).astype(np.uint8),
                                            np.asarray(display_xy_Jx2), min_size=DISPLAY_SIZE),
                np.full((DISPLAY_SIZE, 2, 3), visualization.GAP_COLOR, np.uint8),
                visualization.pose_views(joints_Jx3, DISPLAY_SIZE)], axis=1)
            reporting.write_atomic(os.path.join(out, item["name"] + ".json"),
                                   json.dumps(record, indent=1))
            reporting.write_atomic(os.path.join(out, item["name"] + ".png"), frames.png(overlay))
    summary = {"predicted": len(crops), "skipped": len(bad),
               "skips": [{"input": path, "reason": reason} for path, reason in bad],
               "workdir": workdir, "checkpoint_step": int(local.step), "variant": config.variant}
    reporting.write_atomic(summary_path, json.dumps(summary, indent=1))
    for path, reason in bad:
        print(f"skipped {path}: {reason}")
    print(f"predicted {len(crops)} image(s), skipped {len(bad)}; outputs in {out}")


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
