"""Tiny runs of the real-data configurations over their builders' dummy releases (tests, smoke).

    python -m experiments.train --config=tiny_real.py:h36m --workdir=/tmp/tiny_h36m
    (variants: h36m, mpi_inf_3dhp, h36m_in_the_wild)

The model and schedule are tiny.py's; the data are the dummy releases committed beside each
builder (data_builders/<name>/dummy_data/), read through the same builders and options as
h36m.py / mpi_inf_3dhp.py / h36m_in_the_wild.py, at 32-pixel crops.
"""

import os

import ml_collections

from experiments.configs import base
from experiments.configs import tiny

VARIANTS = ("h36m", "mpi_inf_3dhp", "h36m_in_the_wild")
_BUILDERS_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                             "data_builders"))


def _dummy(name):
    return os.path.join(_BUILDERS_DIR, name, "dummy_data")


def get_config(variant: str = "h36m"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of tiny_real.py; variants: {VARIANTS}")
    c = tiny.get_config()
    c.variant = variant
    c.data.val_split = ""  # as in the real configs: their protocols have no val split
    if variant == "mpi_inf_3dhp":
        c.data.name = "mpi_inf_3dhp"
        c.data.options = ml_collections.ConfigDict(dict(
            root_dir=_dummy("mpi_inf_3dhp"), image_size=32, train_subjects="S1,S2",
            train_sequences="Seq1", cameras="0,2,8", frame_stride=1,
            test_sequences="TS1,TS5",
            test_cameras=os.path.join(_dummy("mpi_inf_3dhp"), "test_cameras.pkl")))
    else:
        c.data.name = "h36m"
        c.data.options = ml_collections.ConfigDict(dict(
            root_dir=_dummy("h36m"), image_size=32, train_subjects="S1", test_subjects="S9",
            frame_stride=1))
    if variant == "h36m_in_the_wild":
        c.data.weight = 0.75
        c.data.mix = [base.mix_source(
            "in_the_wild", 0.25, options=dict(root_dir=_dummy("in_the_wild"), image_size=32))]
        # The fit cache indexes the examples of one training split: a mixture trains the network
        # alone (no template fits).
        base.without_fits(c)
    return c
