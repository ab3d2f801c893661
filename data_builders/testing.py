"""Checks shared by the builders' tests (imported by `data_builders/*/*_test.py` only)."""

import filecmp
import os


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


def tree_files(root) -> list[str]:
    """Every file below `root`, as sorted paths relative to it."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def assert_nothing_finished(builder) -> None:
    """A failed build: not prepared, no finished version folder (tfds's temporary folders only)."""
    assert not builder.is_prepared()
    assert not os.path.exists(builder.data_path)
    config_dir = os.path.dirname(builder.data_path)
    leftovers = os.listdir(config_dir) if os.path.isdir(config_dir) else []
    assert all(name.startswith("incomplete") for name in leftovers), leftovers
