"""Unsupervised foreground masks by background subtraction (for static cameras).

The background of a camera is the per-pixel median of frames spread over its recordings (a
person who moves is absent from most of them); a pixel is foreground where its colour differs
from the background by more than a threshold. Morphological opening removes speckle, closing
and hole filling mend the silhouette, and only the largest connected component is kept. No pose,
no joints, no learned model: nothing here sees ground truth.
"""

from typing import Iterable

import numpy as np
from scipy import ndimage


_STRIP_ROWS = 128


def median_background(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Per-pixel median of frames of one static camera.

    Args:
        frames: H×W×3 uint8 frames (at least one; all the same size).

    Returns:
        H×W×3 float32 background, computed in strips of `_STRIP_ROWS` rows so that the float
        copy stays small (50 frames of 2048² would otherwise take 2.5 GB).

    Raises:
        ValueError: no frame, or frames of different sizes.
    """
    stack = list(frames)
    if not stack:
        raise ValueError("median_background needs at least one frame")
    shapes = {f.shape for f in stack}
    if len(shapes) > 1:
        raise ValueError(f"median_background: frames of different sizes {sorted(shapes)}")
    height = stack[0].shape[0]
    return np.concatenate([
            np.median(np.stack([f[r:r + _STRIP_ROWS] for f in stack]).astype(np.float32), axis=0)
            for r in range(0, height, _STRIP_ROWS)], axis=0)


def foreground_mask(frame_HxWx3, background_HxWx3, threshold=30.0, open_px=2, close_px=4):
    """Foreground of one frame against its camera's background.

    Args:
        frame_HxWx3: uint8 frame.
        background_HxWx3: float background (`median_background`).
        threshold: colour distance (Euclidean, 0–255 scale) above which a pixel is foreground.
        open_px, close_px: radii (pixels) of the opening (speckle removal) and of the closing
            (gap mending); 0 skips the step.

    Returns:
        H×W float32 mask in {0, 1}: the largest connected foreground component, holes filled.
        All zeros when nothing differs from the background.
    """
    diff = np.asarray(frame_HxWx3, np.float32) - np.asarray(background_HxWx3, np.float32)
    fg_HxW = np.sqrt((diff ** 2).sum(axis=-1)) > threshold
    if open_px:
        # Edge padding: a body cut by the frame's edge continues past it, instead of being
        # eroded there (zeros outside) and trimmed by up to `open_px` pixels along that edge.
        pad = open_px
        fg_HxW = ndimage.binary_opening(np.pad(fg_HxW, pad, mode="edge"),
                                        structure=_disk(open_px))[pad:-pad, pad:-pad]
    if close_px:
        # Pad so that closing does not erode at the image border.
        pad = close_px
        fg_HxW = ndimage.binary_closing(np.pad(fg_HxW, pad), structure=_disk(close_px))[
            pad:-pad, pad:-pad]
    labels, count = ndimage.label(fg_HxW)
    if count == 0:
        return np.zeros(fg_HxW.shape, np.float32)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    largest = labels == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(largest).astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2
