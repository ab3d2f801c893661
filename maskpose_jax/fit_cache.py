"""The fit cache: one fitted world pose per training example, kept in the train state.

With `config.loss.fit_cache` the network-in-the-loop fit (`fused.fused_terms`, SPIN's dictionary
of fits) warm-starts from each example's best fit so far. With `config.loss.fit_init_steps` > 0
the cache is filled before the first step by fitting the standing template to every training
example's masks (`fused.template_fit`: K yaws, the lowest objective kept): analysis by synthesis
per example, from masks and cameras alone, which the network then amortizes. The fits read no
ground truth: their batches hold only `input_pipeline.TRAIN_FIELDS`.
"""

import time

import jax
from jax.experimental import multihost_utils
import numpy as np

from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import reporting
from maskpose_jax import skeleton


def size(config, train_source) -> int:
    """Entries of the fit cache: the training split's examples with config.loss.fit_cache, else 0.

    Raises:
        ValueError: a cache without refinement, the mask supervision or a single training
            source; initial fits without a cache.
    """
    if int(config.loss.fit_init_steps) and not config.loss.fit_cache:
        raise ValueError("config.loss.fit_init_steps > 0 fills the fit cache: it needs "
                         "config.loss.fit_cache = True")
    if not config.loss.fit_cache:
        return 0
    if not int(config.loss.refine_steps):
        raise ValueError("config.loss.fit_cache keeps the fits of config.loss.refine_steps: "
                         "set refine_steps > 0")
    if config.loss.supervision != "masks":
        raise ValueError("config.loss.fit_cache fits poses to masks: it needs "
                         "config.loss.supervision = 'masks'")
    if config.data.mix:
        raise ValueError("config.loss.fit_cache indexes the examples of one training split: it "
                         "cannot be used with config.data.mix")
    return len(train_source)


def initial_fits(config, train_source, image_size: int, capsule_width=None,
                 body_radii_mm=None) -> dict:
    """The cache filled with template fits of every training example (config.loss.fit_init_*).

    Each process fits its slice of the split (`process_index::process_count`) in batches of
    `config.eval.batch_size` (the last padded, so one compilation), with the first stage's pose
    terms and body width; the slices are then gathered, so every process returns the whole cache.

    Returns:
        {"joints": NxJx3 float32 (mm), "filled": N float32 (all 1)}, N = len(train_source).
    """
    steps = int(config.loss.fit_init_steps)
    stage = config.stages[0]
    weights = {t: float(w) for t, w in stage.loss_weights.items() if t in fused.POSE_TERMS}
    lr = float(config.loss.fit_init_lr_mm)

    @jax.jit
    def fit(batch):
        views = fused.example_views(batch, config.loss)
        return fused.template_fit(views, config.loss, image_size, weights, steps,
                                  int(config.loss.fit_init_restarts), lr,
                                  int(config.loss.fit_init_choose_after), capsule_width,
                                  body_radii_mm, float(stage.body_scale))

    process, count = jax.process_index(), jax.process_count()
    indices = np.arange(process, len(train_source), count)
    batch_size = int(config.eval.batch_size)
    # One ordered pass over this process's slice (`indices`), read lazily.
    dataset = input_pipeline.make_dataset(
        train_source, global_batch_size=batch_size * count, training=False,
        process_index=process, process_count=count, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch, views=tuple(config.data.views))
    total = -(-len(indices) // batch_size)
    reporting.say(f"fitting the template to {len(train_source)} training examples "
                  f"({steps} steps, {int(config.loss.fit_init_restarts)} yaws; "
                  f"config.loss.fit_init_steps)")
    fits, begin = [], time.time()
    for number, batch in enumerate(dataset, 1):
        # Only what a training batch carries: the fits cannot read the truth.
        batch = input_pipeline.without_ground_truth(batch)
        real = len(batch["image"])
        if real < batch_size:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - real, 0)])
                     for k, v in batch.items()}
        fits.append(np.asarray(fit(batch))[:real])
        if number % 10 == 0 or number == total:
            elapsed = time.time() - begin
            reporting.say(f"  fits: batch {number}/{total}, {elapsed:.0f} s, "
                          f"ETA {elapsed / number * (total - number):.0f} s")
    mine_SxJx3 = np.concatenate(fits).astype(np.float32)
    joints_NxJx3 = np.zeros((len(train_source), skeleton.NUM_JOINTS, 3), np.float32)
    if count > 1:
        width = -(-len(train_source) // count)  # equal shapes for the gather
        padded = np.zeros((width, skeleton.NUM_JOINTS, 3), np.float32)
        padded[:len(mine_SxJx3)] = mine_SxJx3
        gathered = np.asarray(multihost_utils.process_allgather(padded))
        for other in range(count):
            theirs = np.arange(other, len(train_source), count)
            joints_NxJx3[theirs] = gathered[other][:len(theirs)]
    else:
        joints_NxJx3[indices] = mine_SxJx3
    return {"joints": joints_NxJx3, "filled": np.ones((len(train_source),), np.float32)}
