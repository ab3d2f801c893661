"""Tests of `data_builders.video`: write/read round trips, frame selection, and every bad file
(missing, junk, truncated, wrong frame count) as a `BadInput` naming the file."""

import numpy as np
import pytest

from data_builders import frames
from data_builders import video

T, H, W = 8, 48, 64


def _frames_TxHxWx3():
    """Smooth moving colour patterns (what lossy codecs keep well), different in every frame."""
    rows, cols = np.mgrid[0:H, 0:W]
    return np.stack([np.stack([128 + 80 * np.sin(cols / 9.0 + t),
                               128 + 80 * np.cos(rows / 7.0 - 0.5 * t),
                               np.full((H, W), 60.0 + 15 * t)], axis=-1)
                     for t in range(T)]).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    paths = {"mp4": str(folder / "clip.mp4"), "avi": str(folder / "clip.avi")}
    video.write_video(paths["mp4"], _frames_TxHxWx3(), fps=25)                   # libx264
    video.write_video(paths["avi"], _frames_TxHxWx3(), fps=50, codec="mjpeg")
    return paths


@pytest.mark.parametrize("kind, tolerance", [("mp4", 4.0), ("avi", 6.0)])
def test_round_trip(videos, kind, tolerance):
    original = _frames_TxHxWx3().astype(np.float64)
    decoded = video.read_frames(videos[kind])
    assert sorted(decoded) == list(range(T))
    for t in range(T):
        assert decoded[t].shape == (H, W, 3) and decoded[t].dtype == np.uint8
        error = np.abs(decoded[t] - original[t]).mean()
        assert error < tolerance, (kind, t, error)
        # Each frame is closest to its own original: order and identity are kept.
        others = [np.abs(decoded[t] - original[s]).mean() for s in range(T) if s != t]
        assert error < min(others)
    streamed = list(video.iter_frames(videos[kind]))
    assert len(streamed) == T
    np.testing.assert_array_equal(streamed[3], decoded[3])


def test_indices_pick_frames(videos):
    every = video.read_frames(videos["mp4"])
    picked = video.read_frames(videos["mp4"], indices=[5, 1, 1])
    assert sorted(picked) == [1, 5]
    np.testing.assert_array_equal(picked[5], every[5])
    np.testing.assert_array_equal(picked[1], every[1])
    with pytest.raises(frames.BadInput, match=r"clip\.mp4.*ends after 8 frames; frame 10"):
        video.read_frames(videos["mp4"], indices=[2, 10])


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_keep_converts_only_the_kept_frames(videos, kind):
    every = list(video.iter_frames(videos[kind]))
    strided = list(video.iter_frames(videos[kind], keep=lambda i: i % 3 == 0))
    assert len(strided) == len(every) == T
    for t in range(T):
        if t % 3:
            assert strided[t] is video.SKIPPED
        else:
            np.testing.assert_array_equal(strided[t], every[t])


def test_expected_count_mismatch_names_both_counts(videos):
    assert len(video.read_frames(videos["avi"], expected_count=T)) == T
    with pytest.raises(frames.BadInput, match=r"clip\.avi.*has 8 frames, expected 9"):
        video.read_frames(videos["avi"], expected_count=9)
    with pytest.raises(frames.BadInput, match=r"has 8 frames, expected 7"):
        video.read_frames(videos["avi"], indices=[0], expected_count=7)


@pytest.mark.parametrize("kind", ["mp4", "avi"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.8, 0.95])
def test_truncated_file_is_bad_input_naming_it(videos, tmp_path, kind, fraction):
    data = open(videos[kind], "rb").read()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[:int(len(data) * fraction)])
    # Whether the cut breaks the container, the decoder, or only shortens the video, a caller that
    # knows the frame count always gets an error naming the file.
    with pytest.raises(frames.BadInput, match=str(cut)):
        video.read_frames(str(cut), expected_count=T)


def test_mp4_cut_before_its_index_cannot_be_opened(videos, tmp_path):
    data = open(videos["mp4"], "rb").read()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[:len(data) // 2])  # the moov index is written last
    with pytest.raises(frames.BadInput, match=str(cut)):
        video.read_frames(str(cut))


@pytest.mark.parametrize("codec, suffix", [("mpeg4", "mp4"), ("libx264", "mp4"), ("mjpeg", "avi")])
def test_a_cut_file_never_reads_as_an_empty_video(tmp_path, codec, suffix):
    """Cut anywhere, a file is an error or gives frames: never a clean read of nothing (some cut
    MP4 files open and decode to zero frames without any decoder error)."""
    path = tmp_path / f"clip.{suffix}"
    video.write_video(str(path), _frames_TxHxWx3(), codec=codec)
    data = path.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    outcomes = set()
    for length in np.linspace(0.05, 0.99, 40) * len(data):
        cut.write_bytes(data[:int(length)])
        try:
            count = len(video.read_frames(str(cut)))
        except frames.BadInput as error:
            assert str(cut) in str(error)
            outcomes.add("error")
        else:
            assert count > 0, int(length)
            outcomes.add("frames")
    assert "error" in outcomes


def test_missing_and_junk_files(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(frames.BadInput, match=rf"{missing}: no such video file"):
        video.read_frames(str(missing))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(frames.BadInput, match=str(junk)):
        video.read_frames(str(junk))
    text = tmp_path / "notes.avi"
    text.write_text("not a video\n" * 50)
    with pytest.raises(frames.BadInput, match=str(text)):
        list(video.iter_frames(str(text)))
    with pytest.raises(frames.BadInput, match="nope"):
        next(video.iter_frames(str(missing)))
