"""Cost and quality of the template fits that fill the fit cache (`fused.template_fit`).

    python -m benchmarks.template_fit --config=synthetic.py[:variant] [--split=val]
        [--examples=64] [--settings=STEPS,YAWS,LR_MM,CHOOSE_AFTER ...]

For each setting (Adam steps, yaws of the standing template, learning rate in mm, steps before
the yaw is chosen; 0 = every yaw runs all steps), fits `--examples` evenly spaced examples of
`--split` with the config's first stage's pose terms, and prints the fits' MPJPE / P-MPJPE
(mm; the truth is read to score only) and the wall time of one jitted call over the examples,
after a compiling call. The fit phase of a run costs about len(train split) / examples times
that time.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from data_builders import configured
from experiments import flags as experiment_flags
from maskpose_jax import datasets
from maskpose_jax import factory
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import metrics

_SPLIT = flags.DEFINE_string("split", "val", "Split whose examples are fitted.")
_EXAMPLES = flags.DEFINE_integer("examples", 64, "Examples, evenly spaced over the split.")
_SETTINGS = flags.DEFINE_multi_string(
    "settings", ["150,8,20,25"], "STEPS,YAWS,LR_MM,CHOOSE_AFTER; repeat the flag for more.")


def main(argv):
    del argv
    config = experiment_flags.config()
    try:  # these figures chose the default's fit settings: val, never test
        datasets.refuse_test_split(config, _SPLIT.value, "--split")
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    source = configured.open_split(config, _SPLIT.value)
    count = min(_EXAMPLES.value, len(source))
    picked = [source[int(i)] for i in np.linspace(0, len(source) - 1, count)]
    batch = next(iter(input_pipeline.make_dataset(picked, global_batch_size=count,
                                                  training=False, num_threads=1, prefetch=1)))
    size = int(batch["mask"].shape[-1])
    truth_BxJx3 = jnp.asarray(batch["joints_world"])
    views = fused.example_views(input_pipeline.without_ground_truth(batch), config.loss)
    stage = config.stages[0]
    weights = {t: float(w) for t, w in stage.loss_weights.items() if t in fused.POSE_TERMS}
    capsule_width = factory.physique_capsule_width(config)
    body_radii = factory.physique_body_radii(config)
    print(f"{count} examples of {config.data.name}/{_SPLIT.value}, {size}px, "
          f"{jax.devices()[0].platform}")
    print("| steps | yaws | lr (mm) | choose after | MPJPE | P-MPJPE | s per call |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for setting in _SETTINGS.value:
        try:
            steps, yaws, lr, choose = setting.split(",")
            steps, yaws, lr, choose = int(steps), int(yaws), float(lr), int(choose)
        except ValueError:
            raise app.UsageError(f"--settings={setting!r}: want STEPS,YAWS,LR_MM,CHOOSE_AFTER, "
                                 "e.g. 150,8,20,25") from None
        fit = jax.jit(lambda v, s=steps, y=yaws, r=lr, c=choose: fused.template_fit(
            v, config.loss, size, weights, s, y, r, c, capsule_width, body_radii,
            float(stage.body_scale)))
        fit(views).block_until_ready()
        begin = time.perf_counter()
        fits_BxJx3 = fit(views).block_until_ready()
        seconds = time.perf_counter() - begin
        print(f"| {steps} | {yaws} | {lr:g} | {choose} "
              f"| {float(jnp.mean(metrics.mpjpe(fits_BxJx3, truth_BxJx3))):.1f} "
              f"| {float(jnp.mean(metrics.p_mpjpe(fits_BxJx3, truth_BxJx3))):.1f} "
              f"| {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
