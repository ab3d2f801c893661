"""Default: unsupervised training and evaluation on the built-in synthetic dataset (CPU-sized).

    python -m experiments.train --config=synthetic.py [--workdir=runs/synthetic]
    python -m experiments.train --config=synthetic.py:no_stance   # an ablation (see VARIANTS)
    python -m experiments.train --config=synthetic.py:paper       # the paper's exact recipe

The method, its variants (ours, the default, and its ablations; the paper's recipe and its
ablations; the supervised `oracle`) and their sizes are base.py's; this file names the dataset:
the synthetic builder (built from the bundled motion capture when missing), its `val` split for
in-training evaluation, its `test` split for experiments.evaluate.
"""

import ml_collections

from experiments.configs import base

VARIANTS = base.VARIANTS


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    c = base.get_config(variant)
    c.data.name = "synthetic"
    return c
