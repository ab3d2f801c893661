"""Human3.6M (4 views) mixed with single-view in-the-wild videos in every training batch.

    python -m experiments.train --config=h36m_in_the_wild.py --workdir=runs/h36m_in_the_wild \\
        --config.data.data_dir=/path/to/tensorflow_datasets \\
        --config.data.mix[0].options.root_dir=/path/to/TikTok_dataset

h36m.py, plus the `in_the_wild` builder (data_builders/in_the_wild; TikTok-dancing layout) as a
second training source: of every batch of 32, 24 examples are Human3.6M frames
(c.data.weight 0.75) and 8 are in-the-wild frames (c.data.mix[0].weight 0.25), padded from one
view to four with `view_valid` = 0 on the padding, so they add own-view mask terms only (no
triangulation, no cross-view or agreement term). Evaluation reads Human3.6M alone. The
in-the-wild crop size is h36m's (256): a mixture needs one crop size.
"""

from experiments.configs import base
from experiments.configs import h36m


# The supervised reference reads ground-truth joints, which in-the-wild video has not: it is
# h36m.py:oracle.
VARIANTS = tuple(v for v in base.VARIANTS if v != "oracle")


def get_config(variant: str = "default"):
    if variant == "oracle":
        raise ValueError("h36m_in_the_wild.py has no variant 'oracle' (in-the-wild video has no "
                         "ground-truth joints to supervise with): use h36m.py:oracle")
    c = h36m.get_config(variant)
    c.data.weight = 0.75
    c.data.mix = [base.mix_source(
        "in_the_wild", 0.25,
        options=dict(root_dir="", image_size=c.data.options.image_size))]
    # The fit cache indexes the examples of one training split: a mixture trains the network
    # alone (no template fits).
    base.without_fits(c)
    return c
