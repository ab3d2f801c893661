"""Human3.6M, full size (ResNet-50, 256² crops, 64 depth bins, 4 views, batch 32): GPUs / TPUs.

    python -m data_builders.build h36m --root_dir=/path/to/h36m --data_dir=/path/to/tfds
    python -m experiments.train --config=h36m.py --workdir=runs/h36m \\
        --config.data.data_dir=/path/to/tfds --config.data.options.root_dir=/path/to/h36m

Protocol (DESIGN §11): train S1 S5 S6 S7 S8, test S9 S11, 4 cameras (data_builders/h36m/README.md).
The dataset is not built implicitly (a full build takes hours): build it first, with the same
options as `config.data.options`, or start-up fails saying how.
"""

from experiments.configs import base


def get_config(variant: str = "default"):
    c = base.get_config(variant)
    c.data.name = "h36m"
    c.data.options.root_dir = ""           # the extracted release (folders S1, S5, ...)
    c.data.options.image_size = 256
    c.data.options.mask_source = "bs_mat"  # "bs_mat", "png_dir" (+ mask_dir) or "median"
    c.data.options.mask_dir = ""
    c.data.options.frame_stride = 5
    c.data.build_if_missing = False
    # The protocol has no val split, and in-training figures must not read the test subjects: no
    # in-training evaluation. Choose recipes on the synthetic val split; experiments.evaluate
    # reads test once per reported run.
    c.data.val_split = ""
    c.data.num_threads = 16
    c.data.prefetch = 64
    c.model.resnet_depth = 50
    c.model.width = 64
    c.model.head_channels = 256
    c.model.depth_bins = 64
    c.physique.widths = (32, 64, 128)
    base.set_stage_steps(c, (40_000, 10_000, 30_000), 80_000)
    c.train.batch_size = 32
    c.train.warmup_steps = 1000
    c.train.log_every = 100
    c.train.image_every = 2000
    c.train.checkpoint_every = 2000
    c.train.eval_every = 10_000
    c.train.eval_examples = 2048
    c.eval.batch_size = 64
    return c
