"""Video files (MP4, AVI) read and written with PyAV (FFmpeg's libraries in the wheel; no system
ffmpeg needed). Used by the real-data builders and by their dummy-data scripts.
"""

import os
from typing import Callable, Iterator, Sequence

import av
import numpy as np

from data_builders import frames as frames_lib


def _open(path):
    if not os.path.isfile(path):
        raise frames_lib.BadInput(f"{path}: no such video file")
    try:
        return av.open(path)
    except av.FFmpegError as error:
        raise frames_lib.BadInput(f"{path}: cannot be opened as a video ({error})") from None


# Yielded by `iter_frames` in place of a frame its `keep` leaves out.
SKIPPED = None


def iter_frames(path, keep: Callable[[int], bool] | None = None) -> Iterator[np.ndarray | None]:
    """Decodes every frame of the first video stream, in order.

    Every frame is decoded (a video cannot be read otherwise), but only the frames `keep(index)`
    accepts are converted to RGB arrays: the others yield `SKIPPED` (None), which saves the
    conversion on strided reads (4 of 5 frames at Human3.6M's default stride).

    A file cut short at a frame boundary can decode cleanly to fewer frames than it had: callers
    that know the frame count pass it to `read_frames(expected_count=...)`.

    Args:
        path: video file.
        keep: frame index -> whether to convert it (default: every frame).

    Yields:
        H×W×3 uint8 RGB frames, or `SKIPPED` for the frames `keep` leaves out.

    Raises:
        BadInput: the file is missing, is not a video, is corrupt, or decodes to no frame at all
            (the message names it).
    """
    with _open(path) as container:
        if not container.streams.video:
            raise frames_lib.BadInput(f"{path}: has no video stream")
        stream = container.streams.video[0]
        count = 0
        try:
            for frame in container.decode(stream):
                count += 1
                yield (frame.to_ndarray(format="rgb24") if keep is None or keep(count - 1)
                       else SKIPPED)
        except av.FFmpegError as error:
            raise frames_lib.BadInput(f"{path}: decoding failed ({error})") from None
        # A truncated MP4 can open and decode "cleanly" to nothing.
        if count == 0:
            raise frames_lib.BadInput(f"{path}: no frame could be decoded (the container "
                                      f"declares {stream.frames})")


def read_frames(path, indices: Sequence[int] | None = None, expected_count: int | None = None):
    """Reads the frames `indices` (all when None) of a video, decoding it once from the start.

    Args:
        path: video file.
        indices: frame numbers to keep (any order; duplicates allowed).
        expected_count: when given, the number of frames the video must have (e.g. the number of
            pose frames): a truncated or longer video is an error naming both counts.

    Returns:
        dict frame index -> H×W×3 uint8 RGB frame.

    Raises:
        BadInput: missing or corrupt file, a requested frame past the end, or a frame count that
            is not `expected_count`.
    """
    wanted = None if indices is None else set(int(i) for i in indices)
    kept = {}
    count = 0
    keep = None if wanted is None else wanted.__contains__
    for index, frame in enumerate(iter_frames(path, keep)):
        count = index + 1
        if frame is not SKIPPED:
            kept[index] = frame
        if expected_count is None and wanted is not None and len(kept) == len(wanted):
            break
    if expected_count is not None and count != expected_count:
        raise frames_lib.BadInput(
            f"{path}: the video has {count} frames, expected {expected_count}")
    missing = sorted((wanted or set()) - set(kept))
    if missing:
        raise frames_lib.BadInput(
            f"{path}: the video ends after {count} frames; frame {missing[0]} was asked for")
    return kept


def write_video(path, frames_TxHxWx3: np.ndarray, fps: int = 25, codec: str | None = None):
    """Writes uint8 RGB frames as a video (for dummy data and tests).

    Args:
        path: output file; its extension picks the container (.mp4, .avi).
        frames_TxHxWx3: uint8 frames (even H and W for the yuv420p codecs).
        fps: frame rate.
        codec: "libx264", "mpeg4", "mjpeg" ... (default: libx264 for .mp4, mjpeg otherwise).
    """
    frames_TxHxWx3 = np.asarray(frames_TxHxWx3, np.uint8)
    codec = codec or ("libx264" if str(path).endswith(".mp4") else "mjpeg")
    # "bitexact": no FFmpeg version strings in the file, so a patch release of the PyAV wheel
    # (Lavf62.12.102 -> .103) does not change the bytes of the committed dummy videos.
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames_TxHxWx3.shape[1:3]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.options = {"flags": "+bitexact", **({"crf": "10"} if codec == "libx264" else {})}
        for image in frames_TxHxWx3:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
