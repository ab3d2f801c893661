"""Tiny: seconds on a CPU, for tests. Builds its dataset from the builder's dummy_data.

    python -m experiments.train --config=tiny.py --workdir=/tmp/tiny
"""

import os

from experiments.configs import base
from experiments.configs import synthetic

DUMMY_MOCAP = os.path.join(os.path.dirname(__file__), "..", "..", "data_builders", "synthetic",
                           "dummy_data")


def get_config(variant: str = "default"):
    c = synthetic.get_config(variant)
    c.data.options.mocap_dir = os.path.abspath(DUMMY_MOCAP)
    c.data.options.image_size = 32
    c.data.options.num_views = 2
    c.data.options.subjects_per_pose = 1
    c.data.num_threads = 1
    c.data.prefetch = 2
    c.model.width = 4
    c.model.head_channels = 8
    c.model.depth_bins = 8
    c.physique.widths = (4, 8)
    base.set_stage_steps(c, (4, 2, 2), 8)
    if c.loss.fit_init_steps:  # the default's template fits, a few steps from 2 yaws
        c.loss.fit_init_steps = 3
        c.loss.fit_init_restarts = 2
        c.loss.fit_init_choose_after = 1
    if c.physique.pretrain_steps:  # the pre-trained physique network: a few steps on 12 poses
        c.physique.pretrain_steps = 3
        c.physique.pretrain_examples = 12
        c.physique.pretrain_batch = 4
    c.train.batch_size = 4
    c.train.warmup_steps = 1
    c.train.log_every = 2
    c.train.image_every = 4
    c.train.checkpoint_every = 4
    c.train.eval_every = 0
    c.train.eval_examples = 6
    c.eval.batch_size = 4
    return c
