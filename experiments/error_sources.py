"""Where a trained model's 3D error comes from: its 2D, its depth, or its views' disagreement.

    python -m experiments.error_sources --config=synthetic.py --workdir=runs/synthetic
        [--split=val] [--examples=256]

A diagnostic that reads ground truth to *score* alternatives, never to train or choose a
prediction. On `--split` (val by default; the test split is experiments.evaluate's), the
latest checkpoint's keypoints are scored as `experiments.evaluate` scores them, and beside them
with one part exchanged:

- `pred xy + true z` / `true xy + pred z`: which of the two parts of the 2.5D output is wrong;
- `pred xy + fused z`: each view's depth replaced by that of the pose triangulated from all the
  views' predicted 2D (`fused.fuse_views`), the target the default recipe trains depth toward;
- `fused`: the triangulated pose itself, moved into each camera (how good the multi-view
  supervision the network learns from is);
- `fused, consistent labels`: the same after `fused.consistent_labels` (no truth: whether
  views that disagree on left and right spoil the triangulation);
- `fused + fit`: the fused pose refined by `--fit_steps` Adam steps of the last stage's mask
  and prior terms (`fused.refine_pose`, the network-in-the-loop fit run longer; no truth): how
  good a target the fit makes of the network's own pose;
- `template + fit`: the same fit from experiments/fit.py's template start (the standing
  skeleton at the masks' triangulated centre, 4 yaws, the lowest final loss kept; no truth):
  whether the network's pose is a better or a worse start than a generic one;
- `constant`: the standing skeleton (`evaluation.template_keypoints`).

Prints one table row per alternative: MPJPE, P-MPJPE, 2D-PCK, and the left/right consistency
across views.
"""

from absl import app
from absl import flags
import jax
import numpy as np

from data_builders import configured
from experiments import flags as experiment_flags
from maskpose_jax import datasets
from maskpose_jax import error_sources
from maskpose_jax import evaluation
from maskpose_jax import factory
from maskpose_jax import fused
from maskpose_jax import inference
from maskpose_jax import input_pipeline
from maskpose_jax import reporting
from maskpose_jax import sharding

_SPLIT = flags.DEFINE_string("split", "val", "Split to diagnose (the test split is read by "
                             "experiments.evaluate alone).")
_EXAMPLES = flags.DEFINE_integer("examples", 256, "First N examples of the split (0 = all).")
_FIT_STEPS = flags.DEFINE_integer("fit_steps", 100, "Adam steps of the `fused + fit` and "
                                  "`template + fit` rows (0: no such rows).")


def main(argv):
    del argv
    config = experiment_flags.config()
    workdir = experiment_flags.workdir(f"runs/{config.data.name}")
    try:
        datasets.refuse_test_split(config, _SPLIT.value, "--split")
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    source = configured.open_split(config, _SPLIT.value)
    image_size = datasets.image_size_of(source)
    if _EXAMPLES.value:
        source = [source[i] for i in range(min(_EXAMPLES.value, len(source)))]
    state, _ = factory.restore_latest(config, workdir, sharding.make_mesh(),
                                      configured.open_split(config, config.data.train_split))
    state = inference.local_copy(state)
    detector, _ = factory.create_models(config)
    predict = inference.make_predict(detector)
    depth_range = float(config.model.depth_range_mm)
    batch_size = int(config.eval.batch_size)
    accumulators = {k: evaluation.Accumulator(image_size, depth_range) for k in error_sources.ROWS}
    dataset = input_pipeline.make_dataset(
        source, global_batch_size=batch_size, training=False, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch, views=tuple(config.data.views))
    fit = template_fit = None
    if _FIT_STEPS.value:
        stage = config.stages[-1]
        weights = {t: float(w) for t, w in stage.loss_weights.items() if t in fused.POSE_TERMS}
        capsule_width = factory.physique_capsule_width(config)
        body_radii = factory.physique_body_radii(config)
        body_scale = float(stage.body_scale)
        fit = jax.jit(jax.vmap(lambda world_Jx3, example: fused.refine_pose(
            world_Jx3, example, config.loss, image_size, weights, _FIT_STEPS.value,
            float(config.loss.refine_lr_mm), capsule_width, body_radii, body_scale)))
        template_fit = jax.jit(lambda views: fused.template_fit(
            views, config.loss, image_size, weights, _FIT_STEPS.value, 4,
            float(config.loss.refine_lr_mm), 0, capsule_width, body_radii, body_scale))
    else:
        accumulators.pop("fused + fit")
        accumulators.pop("template + fit")
    for index, batch in enumerate(dataset):
        if index % 10 == 0:
            reporting.say(f"batch {index + 1} of {-(-len(source) // batch_size)}")
        count = len(batch["frame"])
        images = batch["image"]
        if count < batch_size:
            images = np.concatenate([images, np.repeat(images[-1:], batch_size - count, 0)])
        keypoints = np.asarray(predict(state.params, state.batch_stats, images))[:count]
        if fit is None:
            rows = error_sources.alternatives(keypoints, batch, image_size, depth_range)
        else:
            views = fused.example_views(input_pipeline.without_ground_truth(batch), config.loss)
            rows = error_sources.alternatives(keypoints, batch, image_size, depth_range,
                                              lambda world_BxJx3, _: fit(world_BxJx3, views))
            rows["template + fit"] = error_sources.world_keypoints(
                template_fit(views), batch, image_size, depth_range)
        rows["constant"] = np.broadcast_to(evaluation.template_keypoints(), keypoints.shape)
        for name, values in rows.items():
            accumulators[name].add(values, batch)
    threshold = float(config.eval.pck2d_threshold)
    print(f"{config.data.name}/{_SPLIT.value}, variant {config.variant}, {workdir}")
    print("| keypoints | MPJPE | P-MPJPE | 2D-PCK | L/R consistency |")
    print("|---|---:|---:|---:|---:|")
    for name in accumulators:
        r = accumulators[name].results(threshold)
        print(f"| {name} | {r['mpjpe']:.1f} | {r['p_mpjpe']:.1f} | {r['pck2d']:.3f} | "
              f"{r['lr_consistency']:.2f} |")


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
