"""MPI-INF-3DHP, full size: multi-view training (S1–S8, 5 chest-height cameras), single-view test
(TS1–TS6; DESIGN §11: PCK, AUC, MPJPE).

    python -m data_builders.build mpi_inf_3dhp --root_dir=/path/to/mpi_inf_3dhp --data_dir=/path/to/tfds
    python -m experiments.train --config=mpi_inf_3dhp.py --workdir=runs/mpi_inf_3dhp \\
        --config.data.data_dir=/path/to/tfds --config.data.options.root_dir=/path/to/mpi_inf_3dhp

The model and schedule are h36m.py's. Builder options: data_builders/mpi_inf_3dhp/README.md; the
dataset is not built implicitly (hours): build it first with the same options.
"""

import ml_collections

from experiments.configs import h36m


def get_config(variant: str = "default"):
    c = h36m.get_config(variant)
    c.data.name = "mpi_inf_3dhp"
    c.data.options = ml_collections.ConfigDict()
    c.data.options.root_dir = ""                 # the release (S1..S8, mpi_inf_3dhp_test_set)
    c.data.options.image_size = 256
    c.data.options.cameras = "0,2,4,7,8"         # training views
    c.data.options.frame_stride = 10
    c.data.options.test_mask_source = "median"   # the test set ships no masks: "median" or "png_dir"
    c.data.options.mask_dir = ""
    return c
