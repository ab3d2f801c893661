"""MPI-INF-3DHP, full size: multi-view training (S1–S8), single-view test (TS1–TS6).

    python -m experiments.train --config=mpi_inf_3dhp.py --workdir=runs/mpi_inf_3dhp \\
        --config.data.data_dir=/path/to/tensorflow_datasets

Needs the `mpi_inf_3dhp` builder (data_builders/mpi_inf_3dhp, the real-data issue); until it
exists, start-up fails naming the dataset.
"""

from experiments.configs import h36m


def get_config(variant: str = "default"):
    c = h36m.get_config(variant)
    c.data.name = "mpi_inf_3dhp"
    return c
