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
- `constant`: the standing skeleton (`evaluation.template_keypoints`).

Prints one table row per alternative: MPJPE, P-MPJPE, 2D-PCK, and the left/right consistency
across views.
"""

from absl import app
from absl import flags

from experiments import flags as experiment_flags

_SPLIT = flags.DEFINE_string("split", "val", "Split to diagnose (the test split is read by "
                             "experiments.evaluate alone).")
_EXAMPLES = flags.DEFINE_integer("examples", 256, "First N examples of the split (0 = all).")

ROWS = ("prediction", "pred xy + true z", "true xy + pred z", "pred xy + fused z", "fused",
        "constant")


def alternatives(keypoints_BxVxJx3, batch, image_size: int, depth_range_mm: float):
    """{row name: B×V×J×3 keypoints} for every row of ROWS but `constant`.

    Reads the batch's ground truth (`joints_world`) for the `true` rows only.
    """
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    from maskpose_jax import evaluation  # pylint: disable=import-outside-toplevel
    from maskpose_jax import fused  # pylint: disable=import-outside-toplevel
    from maskpose_jax import multiview  # pylint: disable=import-outside-toplevel

    pred = jnp.asarray(keypoints_BxVxJx3, jnp.float32)
    f32 = {k: jnp.asarray(batch[k], jnp.float32)
           for k in ("joints_world", "crop", "intrinsics", "extrinsics", "distortion")}
    truth = jax.vmap(multiview.oracle_targets, (0, 0, 0, 0, 0, None, None))(
        f32["joints_world"], f32["crop"], f32["intrinsics"], f32["extrinsics"],
        f32["distortion"], image_size, depth_range_mm)
    valid_BxV = jnp.asarray(evaluation.view_valid(batch), jnp.float32)
    world_BxJx3 = jax.vmap(fused.fuse_views, (0, 0, 0, 0, 0, None))(
        pred, f32["crop"], f32["intrinsics"], f32["extrinsics"], valid_BxV, image_size)
    fused_z = jax.vmap(fused.relative_depths, (0, 0, None))(world_BxJx3, f32["extrinsics"],
                                                             depth_range_mm)
    fused_xy = jax.vmap(fused.project_pose, (0, 0, 0, 0, 0, None))(
        world_BxJx3, f32["crop"], f32["intrinsics"], f32["extrinsics"], f32["distortion"],
        image_size)
    rows = {
        "prediction": pred,
        "pred xy + true z": pred.at[..., 2].set(truth[..., 2]),
        "true xy + pred z": truth.at[..., 2].set(pred[..., 2]),
        "pred xy + fused z": pred.at[..., 2].set(fused_z),
        "fused": jnp.concatenate([fused_xy, fused_z[..., None]], axis=-1),
    }
    return {k: np.asarray(v) for k, v in rows.items()}


def main(argv):
    del argv
    import numpy as np  # pylint: disable=import-outside-toplevel

    import data_builders  # pylint: disable=import-outside-toplevel
    from maskpose_jax import datasets  # pylint: disable=import-outside-toplevel
    from maskpose_jax import evaluation  # pylint: disable=import-outside-toplevel
    from maskpose_jax import input_pipeline  # pylint: disable=import-outside-toplevel
    from maskpose_jax import reporting  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel
    from maskpose_jax import train  # pylint: disable=import-outside-toplevel

    config = experiment_flags.config()
    workdir = experiment_flags.workdir(f"runs/{config.data.name}")
    source = data_builders.data_source(datasets.get_builder(config), _SPLIT.value)
    image_size = datasets.image_size_of(source)
    if _EXAMPLES.value:
        source = [source[i] for i in range(min(_EXAMPLES.value, len(source)))]
    state = train.local_copy(train.restore_latest(config, workdir, image_size,
                                                  sharding.make_mesh()))
    detector, _ = train.create_models(config)
    predict = train.make_predict(detector)
    depth_range = float(config.model.depth_range_mm)
    batch_size = int(config.eval.batch_size)
    accumulators = {k: evaluation.Accumulator(image_size, depth_range) for k in ROWS}
    dataset = input_pipeline.make_dataset(
        source, global_batch_size=batch_size, training=False, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch, views=tuple(config.data.views))
    for index, batch in enumerate(dataset):
        if index % 10 == 0:
            reporting.say(f"batch {index + 1} of {-(-len(source) // batch_size)}")
        count = len(batch["frame"])
        images = batch["image"]
        if count < batch_size:
            images = np.concatenate([images, np.repeat(images[-1:], batch_size - count, 0)])
        keypoints = np.asarray(predict(state.params, state.batch_stats, images))[:count]
        rows = alternatives(keypoints, batch, image_size, depth_range)
        rows["constant"] = np.broadcast_to(evaluation.template_keypoints(), keypoints.shape)
        for name, values in rows.items():
            accumulators[name].add(values, batch)
    threshold = float(config.eval.pck2d_threshold)
    print(f"{config.data.name}/{_SPLIT.value}, variant {config.variant}, {workdir}")
    print("| keypoints | MPJPE | P-MPJPE | 2D-PCK | L/R consistency |")
    print("|---|---:|---:|---:|---:|")
    for name in ROWS:
        r = accumulators[name].results(threshold)
        print(f"| {name} | {r['mpjpe']:.1f} | {r['p_mpjpe']:.1f} | {r['pck2d']:.3f} | "
              f"{r['lr_consistency']:.2f} |")


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
