"""`make_dummy_data` regenerates the committed `dummy_data/`."""

import filecmp
import os

import numpy as np

from data_builders import testing
from data_builders import video
from data_builders.h36m import make_dummy_data


def test_script_regenerates_the_committed_dummy_data(tmp_path):
    out = str(tmp_path / "dummy_data")
    make_dummy_data.main(["--out", out])
    committed = make_dummy_data.OUT_DIR
    assert testing.tree_files(out) == testing.tree_files(committed)
    for name in testing.tree_files(out):
        new, old = os.path.join(out, name), os.path.join(committed, name)
        if name.endswith(".mp4"):
            # The H.264 bitstream may depend on the encoder's thread count: compare pixels.
            frames_new, frames_old = video.read_frames(new), video.read_frames(old)
            assert sorted(frames_new) == sorted(frames_old), name
            for index, frame in frames_new.items():
                diff = np.abs(frame.astype(np.int16) - frames_old[index])
                assert diff.mean() < 0.5, (name, index)
        else:
            assert filecmp.cmp(new, old, shallow=False), name
