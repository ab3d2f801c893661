"""Training visualizations (NumPy + PIL, host side): skeleton overlays, mask comparisons, panels.

These run in the training loop at image-summary steps, so they stay cheap: no matplotlib, no
device work. Keypoints are in normalized crop coordinates (geometry's module docstring: for an
N x N crop, x = -1 + 2 u / (N - 1), corner pixel centres at +-1). Small crops are enlarged by an
integer nearest-neighbour factor before drawing so that lines stay visible; after enlarging by f,
the centre of original pixel u lies at u * f + (f - 1) / 2.
"""

import numpy as np
from PIL import Image, ImageDraw

from maskpose_jax import geometry
from maskpose_jax import skeleton

LEFT_COLOR = (64, 160, 255)    # blue: the subject's left limbs
RIGHT_COLOR = (255, 96, 64)    # red: the subject's right limbs
TRUNK_COLOR = (255, 255, 255)  # white: limbs on the midline (pelvis-spine-thorax-neck-head)
GAP_COLOR = (64, 64, 64)


def _side(joint):
    """'left', 'right' or 'trunk' from the joint name's prefix."""
    name = skeleton.JOINT_NAMES[joint]
    return {"l_": "left", "r_": "right"}.get(name[:2], "trunk")


# Colour of each of skeleton.LIMBS, from its child joint (e.g. pelvis -> l_hip is left).
LIMB_SIDES = tuple(_side(child) for _, child in skeleton.LIMBS)


def upscale_factor(size, min_size):
    """Integer enlargement that brings `size` pixels to at least `min_size` (1 if already)."""
    return max(1, -(-int(min_size) // int(size)))


def _as_uint8_image(image_HxWxC):
    image = np.asarray(image_HxWxC)
    if image.dtype != np.uint8:  # float images are taken to be in [0, 1]
        image = np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    return image


def _enlarge(array_HxW_or_HxWx3, factor):
    return np.repeat(np.repeat(array_HxW_or_HxWx3, factor, axis=0), factor, axis=1)


def draw_skeleton(image_HxWx3, keypoints_Jx2_normalized, color_left=LEFT_COLOR,
                  color_right=RIGHT_COLOR, min_size=128, line_width=None):
    """Draws the 16 limbs of `skeleton.LIMBS` over a square crop.

    Left limbs in `color_left`, right limbs in `color_right`, midline limbs white. Limbs with a
    non-finite end point are skipped; points outside the crop are clipped by the drawing.

    Args:
        image_HxWx3: the crop, H = W = N pixels; uint8, or float in [0, 1]. Not modified.
        keypoints_Jx2_normalized: (x, y) per joint in normalized crop coordinates of the N x N
          crop (extra columns, e.g. the relative depth z, are ignored).
        color_left, color_right: RGB triples (0..255).
        min_size: the crop is enlarged by the integer nearest-neighbour factor
          ceil(min_size / N) first (no enlargement when N >= min_size).
        line_width: pixels in the output; None = max(1, output side // 64).

    Returns:
        (f N) x (f N) x 3 uint8 image, f the enlargement factor.
    """
    image = _as_uint8_image(image_HxWx3)
    size = image.shape[0]
    if image.shape[1] != size:
        raise ValueError(f"normalized coordinates need a square crop, got {image.shape[:2]}")
    factor = upscale_factor(size, min_size)
    canvas = Image.fromarray(_enlarge(image, factor))
    if line_width is None:
        line_width = max(1, size * factor // 64)
    points_Jx2 = np.asarray(keypoints_Jx2_normalized, np.float64)[:, :2]
    uv_Jx2 = geometry.crop_px_from_normalized(points_Jx2, size) * factor + (factor - 1) / 2.0
    colors = {"left": tuple(color_left), "right": tuple(color_right), "trunk": TRUNK_COLOR}
    draw = ImageDraw.Draw(canvas)
    for (parent, child), side in zip(skeleton.LIMBS, LIMB_SIDES):
        ends = uv_Jx2[[parent, child]]
        if np.all(np.isfinite(ends)):
            # PIL truncates float coordinates, and a line of even width w at integer y covers
            # rows y - w/2 + 1 .. y + w/2 (centred on y + 1/2): shift so the stroke is centred.
            ends = np.floor(ends + (0.0 if line_width % 2 == 0 else 0.5))
            # Far-off points (a diverged prediction) are clipped so the ints stay small.
            ends = np.clip(ends, -4 * size * factor, 5 * size * factor).astype(int)
            draw.line([tuple(ends[0]), tuple(ends[1])], fill=colors[side], width=line_width)
    return np.array(canvas)  # a writable copy


def mask_comparison(pred_HxW, target_HxW):
    """Overlay of a predicted mask on its target: target green, prediction magenta.

    Where both are 1 the pixel is white, where neither it is black, so misses show green and
    false alarms magenta.

    Args:
        pred_HxW: predicted mask in [0, 1] (values outside are clipped).
        target_HxW: target mask in [0, 1].

    Returns:
        HxWx3 uint8: R = B = prediction, G = target, scaled to 0..255.
    """
    pred = np.clip(np.asarray(pred_HxW, np.float64), 0.0, 1.0)
    target = np.clip(np.asarray(target_HxW, np.float64), 0.0, 1.0)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"expected two HxW masks, got {pred.shape} and {target.shape}")
    rgb_HxWx3 = np.stack([pred, target, pred], axis=-1)
    return np.round(rgb_HxWx3 * 255.0).astype(np.uint8)


def _hstack_with_gap(tiles, gap):
    height = tiles[0].shape[0]
    spacer = np.empty((height, gap, 3), np.uint8)
    spacer[...] = GAP_COLOR
    parts = [tiles[0]]
    for tile in tiles[1:]:
        parts += [spacer, tile]
    return np.concatenate(parts, axis=1)


def training_panel(images_VxNxNx3, keypoints_VxJx3, skeleton_masks_VxNxN, physique_masks_VxNxN,
                   masks_VxNxN, min_size=128, gap=2):
    """One image summary of one training example: a row per view.

    Columns: the crop with the predicted skeleton | Skeleton Mask vs target mask | physique
    mask vs target mask (`mask_comparison` colours). Every tile is enlarged by the same factor as
    `draw_skeleton`'s. Pass `physique_masks_VxNxN=None` (no shape-prior network) for two columns.

    Args:
        images_VxNxNx3: the crops (uint8, or float in [0, 1]).
        keypoints_VxJx3: detector outputs (x, y, z); x, y normalized crop coordinates.
        skeleton_masks_VxNxN: Skeleton Masks of the predictions, [0, 1].
        physique_masks_VxNxN: physique network outputs, [0, 1], or None.
        masks_VxNxN: target foreground masks, [0, 1].
        min_size: tiles are enlarged to at least this side (integer factor).
        gap: pixels of grey between tiles and between rows.

    Returns:
        uint8 image, (V S + (V - 1) gap) x (C S + (C - 1) gap) x 3, S = f N the tile side and
        C = 3 (2 without physique masks).
    """
    num_views, size = len(images_VxNxNx3), np.shape(images_VxNxNx3)[1]
    factor = upscale_factor(size, min_size)
    rows = []
    for v in range(num_views):
        tiles = [draw_skeleton(images_VxNxNx3[v], keypoints_VxJx3[v], min_size=min_size),
                 _enlarge(mask_comparison(skeleton_masks_VxNxN[v], masks_VxNxN[v]), factor)]
        if physique_masks_VxNxN is not None:
            tiles.append(_enlarge(mask_comparison(physique_masks_VxNxN[v], masks_VxNxN[v]),
                                  factor))
        rows.append(_hstack_with_gap(tiles, gap))
    row_spacer = np.empty((gap, rows[0].shape[1], 3), np.uint8)
    row_spacer[...] = GAP_COLOR
    parts = [rows[0]]
    for row in rows[1:]:
        parts += [row_spacer, row]
    return np.concatenate(parts, axis=0)


def pose_views(joints_Jx3_mm, size=256, extent_mm=1000.0, gap=2):
    """A small 3D view of a camera-frame pose: front (X right, Y down) and side (Z, the depth
    away from the camera, right; Y down) orthographic projections, pelvis-centred, side by side.

    Args:
        joints_Jx3_mm: joints in a camera frame (X right, Y down, Z forward), mm.
        size: side of each tile, pixels.
        extent_mm: half the span each tile shows around the pelvis, mm.
        gap: pixels of grey between the tiles.

    Returns:
        size x (2 size + gap) x 3 uint8 image.
    """
    rel_Jx3 = np.asarray(joints_Jx3_mm, np.float64) - np.asarray(joints_Jx3_mm)[skeleton.PELVIS]
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[...] = (24, 24, 24)
    front = draw_skeleton(canvas, rel_Jx3[:, [0, 1]] / extent_mm, min_size=size)
    side = draw_skeleton(canvas, rel_Jx3[:, [2, 1]] / extent_mm, min_size=size)
    return _hstack_with_gap([front, side], gap)
