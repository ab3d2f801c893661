"""`make_dummy_data` regenerates the committed `dummy_data/`."""

from data_builders import testing
from data_builders.h36m import make_dummy_data


def test_script_regenerates_the_committed_dummy_data(tmp_path):
    out = str(tmp_path / "dummy_data")
    make_dummy_data.main(["--out", out])
    testing.assert_same_tree(out, make_dummy_data.OUT_DIR)
