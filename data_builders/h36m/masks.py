"""Foreground masks of Human3.6M frames, from one of three unsupervised sources.

- `bs_mat`: the release's own background-subtraction masks, `MySegmentsMat/ground_truth_bs/
  <sequence>.<camera_id>.mat`. These are MATLAB v7.3 files (HDF5): the variable "Masks" is a
  cell array of T logical masks, stored as a T×1 dataset of object references, each pointing to
  a uint8 array in MATLAB's column-major order, i.e. W×H (transposed).
- `png_dir`: one PNG per frame made by any segmenter, `<mask_dir>/<subject>/<sequence>.
  <camera_id>/<frame:06d>.png`, 0 = background, 255 = foreground (grey levels = soft coverage).
- `median`: a per-(subject, camera) median background (`camera_background`) and
  `background.foreground_mask` against it.

Each source is a callable `(frame_index, frame_HxWx3) -> (mask_HxW float32 in [0, 1], source)`,
`source` naming the file (and frame) for error messages. Nothing here reads poses.
"""

import os

import h5py
import numpy as np
from absl import logging

from data_builders import background
from data_builders import frames
from data_builders import video
from data_builders.h36m import release

MASK_SOURCES = ("bs_mat", "png_dir", "median")
# `background.foreground_mask` opening / closing radii (pixels) for the release's 1000-pixel-wide
# frames; smaller videos get proportionally smaller ones (an opening wider than a limb erases it).
_OPEN_PX, _CLOSE_PX, _RELEASE_WIDTH = 2, 4, 1000


class BsMatMasks:
    """The masks of one `ground_truth_bs` .mat file (open it with `with`).

    Args:
        path: the .mat file.
        expected_count: number of frames of the sequence (from its poses).

    Raises:
        BadInput: missing file, not a v7.3 MAT file with "Masks", or another number of masks.
    """

    def __init__(self, path, expected_count: int):
        if not os.path.isfile(path):
            raise frames.BadInput(f"{path}: no such mask file")
        try:
            self._file = h5py.File(path, "r")
        except OSError as error:
            raise frames.BadInput(f"{path}: not a MATLAB v7.3 (HDF5) file ({error})") from None
        self.path = path
        if "Masks" not in self._file:
            self._file.close()
            raise frames.BadInput(f"{path}: no variable 'Masks'")
        self._refs = self._file["Masks"][()].reshape(-1)
        if len(self._refs) != expected_count:
            self._file.close()
            raise frames.BadInput(f"{path}: holds {len(self._refs)} masks, the sequence's poses "
                                  f"have {expected_count} frames")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __call__(self, index: int, frame_HxWx3=None):
        source = f"{self.path} (mask of frame {index})"
        try:
            stored = np.asarray(self._file[self._refs[index]])
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise frames.BadInput(f"{source}: cannot be read ({error})") from None
        if stored.ndim != 2:
            raise frames.BadInput(f"{source}: has shape {stored.shape}, expected a 2-D mask")
        return (stored.T > 0).astype(np.float32), source


class PngMasks:
    """Per-frame PNG masks of one (subject, sequence, camera).

    Args:
        mask_dir: the `mask_dir` option.
        subject, sequence_name, camera_id: which folder.
        indices: the frames that will be read; all must exist (checked here, before any frame
            of the sequence is decoded).

    Raises:
        BadInput: a PNG of `indices` is missing (the message names it).
    """

    def __init__(self, mask_dir, subject, sequence_name, camera_id, indices):
        self._path = lambda i: release.png_mask_path(mask_dir, subject, sequence_name,
                                                     camera_id, i)
        for index in indices:
            if not os.path.isfile(self._path(index)):
                raise frames.BadInput(f"{self._path(index)}: no such mask PNG (frame {index})")

    def __call__(self, index: int, frame_HxWx3=None):
        path = self._path(index)
        return frames.read_mask(path), path


class MedianMasks:
    """Background subtraction against one camera's median background.

    Args:
        background_HxWx3: float background (`camera_background`).
        video_path: the sequence's video, for error messages.
    """

    def __init__(self, background_HxWx3, video_path):
        self._background = background_HxWx3
        self._video_path = video_path
        scale = background_HxWx3.shape[1] / _RELEASE_WIDTH
        self._open_px = int(round(_OPEN_PX * scale))
        self._close_px = int(round(_CLOSE_PX * scale))

    def __call__(self, index: int, frame_HxWx3):
        source = f"{self._video_path} (frame {index}, median-background mask)"
        if frame_HxWx3.shape != self._background.shape:
            raise frames.BadInput(
                f"{source}: frame is {frame_HxWx3.shape[1]}×{frame_HxWx3.shape[0]} pixels, the "
                f"camera's background {self._background.shape[1]}×{self._background.shape[0]}")
        return background.foreground_mask(frame_HxWx3, self._background, open_px=self._open_px,
                                          close_px=self._close_px), source


def camera_background(video_paths, num_frames: int, label: str = ""):
    """Median background of one camera from frames spread evenly over all its videos.

    The videos are taken as one long recording; `num_frames` frames at even spacing over it
    (frame k at position floor((k + 1/2) · total / num_frames)) are decoded and their per-pixel
    median taken. A missing or unreadable video contributes no frame (its own sequence reports
    it when its examples are made).

    Args:
        video_paths: the camera's videos of one subject (sorted, for determinism).
        num_frames: frames to take (fewer when the videos have fewer).
        label: "subject/camera", for messages.

    Returns:
        H×W×3 float32 background.

    Raises:
        BadInput: no frame could be read, or frames of different sizes.
    """
    counts = []
    for path in video_paths:
        try:
            counts.append(release.count_video_frames(path))
        except frames.BadInput as error:
            logging.warning("h36m: median background of %s leaves out %s", label, error)
            counts.append(0)
    total = sum(counts)
    positions = sorted({(2 * k + 1) * total // (2 * num_frames) for k in range(num_frames)})
    starts = np.cumsum([0] + counts)
    picked = []
    for path, start, count in zip(video_paths, starts, counts):
        wanted = [p - start for p in positions if start <= p < start + count]
        if not wanted:
            continue
        try:
            kept = video.read_frames(path, wanted)
        except frames.BadInput as error:
            logging.warning("h36m: median background of %s leaves out %s", label, error)
            continue
        picked.extend(kept[i] for i in wanted)
    if not picked:
        raise frames.BadInput(f"{label}: no readable video frame for the median background "
                              f"(videos: {', '.join(video_paths) or 'none'})")
    if len({f.shape for f in picked}) > 1:
        raise frames.BadInput(f"{label}: the videos have frames of different sizes "
                              f"{sorted({f.shape for f in picked})}")
    return background.median_background(picked)
