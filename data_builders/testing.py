"""Checks shared by the builders' tests (imported by `data_builders/*/*_test.py` only)."""

import filecmp
import os
import subprocess
import sys

import numpy as np

import data_builders
from data_builders import video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def record_files(builder) -> list[str]:
    """The array_record file names of a built dataset, sorted."""
    return sorted(f for f in os.listdir(builder.data_path) if ".array_record" in f)


def assert_same_records(builder, other) -> None:
    """Two builds wrote the same array_record files, byte for byte."""
    names = record_files(builder)
    assert names == record_files(other)
    for name in names:
        assert filecmp.cmp(os.path.join(builder.data_path, name),
                           os.path.join(other.data_path, name), shallow=False), name


def build_in_new_process(name: str, data_dir: str, options: dict):
    """Builds dataset `name` with `options` in a new Python process (`python -m
    data_builders.build`) and returns its builder: a process of its own has its own hash seeds,
    so a build that depends on them (protobuf's map order did) differs from one made here."""
    args = [f"--{key}={value}" for key, value in options.items()]
    done = subprocess.run([sys.executable, "-m", "data_builders.build", name,
                           f"--data_dir={data_dir}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return data_builders.make_builder(name, data_dir, **options)


def tree_files(root) -> list[str]:
    """Every file below `root`, as sorted paths relative to it."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def assert_same_tree(written, committed) -> None:
    """A dummy-data script wrote the committed folder again: the same files, each byte for byte,
    but videos frame by frame (an encoder's bytes may change with FFmpeg's release or its thread
    count, its pixels hardly: mean absolute difference under half a grey level)."""
    names = tree_files(committed)
    assert tree_files(written) == names
    for name in names:
        new, old = os.path.join(written, name), os.path.join(committed, name)
        if name.endswith((".mp4", ".avi")):
            frames_new, frames_old = video.read_frames(new), video.read_frames(old)
            assert sorted(frames_new) == sorted(frames_old), name
            for index, frame in frames_new.items():
                diff = np.abs(frame.astype(np.int16) - frames_old[index])
                assert diff.mean() < 0.5, (name, index)
        else:
            assert filecmp.cmp(new, old, shallow=False), name


def assert_nothing_finished(builder) -> None:
    """A failed build: not prepared, no finished version folder (tfds's temporary folders only)."""
    assert not builder.is_prepared()
    assert not os.path.exists(builder.data_path)
    config_dir = os.path.dirname(builder.data_path)
    leftovers = os.listdir(config_dir) if os.path.isdir(config_dir) else []
    assert all(name.startswith("incomplete") for name in leftovers), leftovers
