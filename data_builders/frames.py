"""From full camera frames and full-resolution masks to the crops of the example format.

Shared by the real-data builders (`h36m`, `mpi_inf_3dhp`, `in_the_wild`): the crop of a view is a
square around its **mask's** bounding box (never around joints), the image and the mask are
resampled into it with an area-like filter, and the geodesic weight map is computed from the
cropped mask. `features` is the tfds feature dictionary every builder stores (DESIGN §1), and
`BadInput` / `Skips` carry the bad-input policy: an error naming the file, or a counted skip.
"""

import collections
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image
from scipy import ndimage

from data_builders import geodesic
from maskpose_jax import geometry
from maskpose_jax import skeleton

CROP_MARGIN = 0.15
ON_BAD_INPUT = ("error", "skip")


class BadInput(ValueError):
    """An input file that cannot make a valid example; the message names the file and the fault."""


class Skips:
    """The bad-input policy of a build: `error` raises `BadInput`, `skip` counts and logs it.

    Args:
        policy: "error" or "skip" (a builder's `on_bad_input` option).
        dataset: dataset name, for the log lines.
    """

    def __init__(self, policy: str, dataset: str):
        if policy not in ON_BAD_INPUT:
            raise ValueError(f"option on_bad_input must be one of {ON_BAD_INPUT}, got {policy!r}")
        self.policy = policy
        self.dataset = dataset
        self.counts = collections.Counter()

    def __call__(self, error: BadInput, kind: str) -> None:
        """Raises `error`, or (policy "skip") logs it and counts it under `kind`."""
        if self.policy == "error":
            raise error
        self.counts[kind] += 1
        logging.warning("%s: skipped (%s): %s", self.dataset, kind, error)

    def report(self, split: str) -> None:
        """Logs the counts of skipped inputs of `split`."""
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items())) or "none"
        logging.info("%s %s: skipped inputs: %s", self.dataset, split, summary)


def mask_bbox(mask_HxW, threshold=0.5):
    """Bounding box of the pixels above `threshold`, by pixel edges.

    Args:
        mask_HxW: float mask in [0, 1] (or bool).
        threshold: foreground level.

    Returns:
        (u_min, v_min, u_max, v_max) full-image pixels (outer edges of the extreme pixels), or
        None when no pixel is foreground.
    """
    fg_HxW = np.asarray(mask_HxW) > threshold
    rows = np.flatnonzero(fg_HxW.any(axis=1))
    cols = np.flatnonzero(fg_HxW.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5])


def crop_from_mask_bbox(bbox_4, out_size, margin=CROP_MARGIN):
    """Square crop around a mask's bounding box.

    Args:
        bbox_4: (u_min, v_min, u_max, v_max), full-image pixels.
        out_size: crop side N, pixels.
        margin: added on every side, as a fraction of the box's longer side.

    Returns:
        2x3 crop affine (full-image pixels -> crop pixels), float64.
    """
    u_min, v_min, u_max, v_max = (float(x) for x in bbox_4)
    side = max(u_max - u_min, v_max - v_min, 1.0) * (1.0 + 2.0 * margin)
    center_uv = np.array([0.5 * (u_min + u_max), 0.5 * (v_min + v_max)])
    return np.asarray(geometry.crop_affine(center_uv, side, out_size), np.float64)


def warp_to_crop(image_HxWxC, crop_2x3, out_size):
    """Resamples a full image into the crop `crop_2x3` (outside the image: zeros).

    Downsampling is anti-aliased: the source is blurred with a Gaussian of sigma 0.4 × (source
    pixels per crop pixel) before bilinear sampling at the crop's pixel centres. Only the window
    the crop covers is filtered, so a 1000² frame costs what its crop box costs.

    Args:
        image_HxWxC: float array (C channels).
        crop_2x3: affine, full-image pixel -> crop pixel (isotropic scale, no rotation).
        out_size: crop side N.

    Returns:
        N×N×C float32.
    """
    image_HxWxC = np.asarray(image_HxWxC, np.float32)
    crop_2x3 = np.asarray(crop_2x3, np.float64)
    full_from_crop_2x3 = np.asarray(geometry.invert_affine(crop_2x3), np.float64)
    step = float(np.abs(full_from_crop_2x3[0, 0]))  # source pixels per crop pixel
    sigma = 0.4 * step if step > 1.0 else 0.0
    pad = int(np.ceil(3 * sigma)) + 2
    corners_2x2 = full_from_crop_2x3 @ np.array([[-0.5, out_size - 0.5], [-0.5, out_size - 0.5],
                                                  [1.0, 1.0]])
    u0, v0 = np.floor(corners_2x2[:, 0]).astype(int) - pad
    u1, v1 = np.ceil(corners_2x2[:, 1]).astype(int) + pad
    height, width = image_HxWxC.shape[:2]
    window = np.zeros((v1 - v0, u1 - u0, image_HxWxC.shape[2]), np.float32)
    src_v, src_u = slice(max(v0, 0), min(v1, height)), slice(max(u0, 0), min(u1, width))
    if src_v.start < src_v.stop and src_u.start < src_u.stop:
        window[src_v.start - v0:src_v.stop - v0, src_u.start - u0:src_u.stop - u0] = (
            image_HxWxC[src_v, src_u])
    if sigma > 0:
        window = ndimage.gaussian_filter(window, sigma=(sigma, sigma, 0), mode="constant")
    # Crop pixel (row r, col c) <- window (row, col) = full (v, u) - (v0, u0).
    matrix_2x2 = full_from_crop_2x3[::-1, 1::-1]
    offset_2 = full_from_crop_2x3[::-1, 2] - np.array([v0, u0])
    out = [ndimage.affine_transform(window[..., c], matrix_2x2, offset_2,
                                    output_shape=(out_size, out_size), order=1, mode="constant")
           for c in range(window.shape[2])]
    return np.stack(out, axis=-1)


def read_image(path) -> np.ndarray:
    """An image file (PNG, JPEG; grey, colour or palette) as H×W×3 uint8 RGB.

    Raises:
        BadInput: the file is missing or cannot be decoded (the message names it).
    """
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise BadInput(f"{path}: cannot be decoded as an image ({error})") from None


def read_mask(path) -> np.ndarray:
    """A mask image (grey, colour or palette; 0–255) as H×W float32 coverage in [0, 1]: the
    brightest channel of each pixel. BadInput as `read_image`."""
    return read_image(path).max(axis=-1).astype(np.float32) / 255.0


def png(array) -> bytes:
    """PNG bytes of a uint8 H×W or H×W×C array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def crop_around_mask(image_HxWx3, mask_HxW, out_size, margin=CROP_MARGIN, source=""):
    """The crop affine (2×3) around a frame's mask: its bounding box with `margin`.

    Raises:
        BadInput: the mask is not the frame's size, or has no foreground pixel (`source` names
            what they came from).
    """
    if np.shape(mask_HxW) != np.shape(image_HxWx3)[:2]:
        raise BadInput(f"{source}: mask is {np.shape(mask_HxW)[1]}×{np.shape(mask_HxW)[0]} "
                       f"pixels, the frame {np.shape(image_HxWx3)[1]}×{np.shape(image_HxWx3)[0]}")
    bbox_4 = mask_bbox(mask_HxW)
    if bbox_4 is None:
        raise BadInput(f"{source}: the mask is empty (no foreground pixel)")
    return crop_from_mask_bbox(bbox_4, out_size, margin)


def crop_view(image_HxWx3, mask_HxW, out_size, margin=CROP_MARGIN, source=""):
    """One view of an example: crop around the mask, resample image and mask, geodesic weights.

    Args:
        image_HxWx3: full frame, uint8.
        mask_HxW: full-resolution foreground mask, float in [0, 1] (or bool / uint8 0–255 scaled
            by the caller), the same size as the frame.
        out_size: crop side N.
        margin: crop margin (see `crop_from_mask_bbox`).
        source: what the frame and mask came from, for error messages.

    Returns:
        dict: image (PNG bytes, N×N×3), mask (grey PNG bytes, N×N, coverage × 255), weight (N×N
        float16), crop (2×3 float32).

    Raises:
        BadInput: the mask is not the frame's size, or has no foreground pixel.
    """
    image_HxWx3 = np.asarray(image_HxWx3)
    mask_HxW = np.asarray(mask_HxW, np.float32)
    crop_2x3 = crop_around_mask(image_HxWx3, mask_HxW, out_size, margin, source)
    image_NxNx3 = warp_to_crop(image_HxWx3, crop_2x3, out_size)
    mask_NxN = np.clip(warp_to_crop(mask_HxW[..., None], crop_2x3, out_size)[..., 0], 0.0, 1.0)
    return {
            "image": png(np.clip(np.rint(image_NxNx3), 0, 255).astype(np.uint8)),
            "mask": png(np.rint(mask_NxN * 255).astype(np.uint8)),
            "weight": geodesic.weight_map(mask_NxN).astype(np.float16),
            "crop": crop_2x3.astype(np.float32),
    }


def stack_views(views):
    """Joins `crop_view` outputs of V views into the per-view fields of one example."""
    return {
            "image": [v["image"] for v in views],
            "mask": [v["mask"] for v in views],
            "weight": np.stack([v["weight"] for v in views]),
            "crop": np.stack([v["crop"] for v in views]),
    }


def features(num_views, image_size):
    """The tfds features of DESIGN §1 for V = `num_views` views of `image_size`² crops.

    `joints_world` is NaN where a dataset has no ground truth (in-the-wild video): an evaluation
    that reads it by mistake gives NaN, never a figure.
    """
    v, n = num_views, image_size
    return tfds.features.FeaturesDict({
            "image": tfds.features.Sequence(tfds.features.Image(shape=(n, n, 3)), length=v),
            "mask": tfds.features.Sequence(tfds.features.Image(shape=(n, n, 1)), length=v),
            "weight": tfds.features.Tensor(shape=(v, n, n), dtype=np.float16),
            "intrinsics": tfds.features.Tensor(shape=(v, 3, 3), dtype=np.float32),
            "extrinsics": tfds.features.Tensor(shape=(v, 3, 4), dtype=np.float32),
            "crop": tfds.features.Tensor(shape=(v, 2, 3), dtype=np.float32),
            "distortion": tfds.features.Tensor(shape=(v, 5), dtype=np.float32),
            "joints_world": tfds.features.Tensor(shape=(skeleton.NUM_JOINTS, 3), dtype=np.float32),
            "meta": {
                    "subject": tfds.features.Text(),
                    "action": tfds.features.Text(),
                    "frame": np.int32,
                    "camera": tfds.features.Sequence(tfds.features.Text(), length=v),
            },
    })
