"""Does the training loss identify the pose? A diagnostic that reads ground truth (never training).

    python -m experiments.loss_at_truth --config=synthetic.py [--workdir=runs/synthetic]
        [--examples=64] [--split=train]

On evenly spaced examples of a split it evaluates the config's unsupervised loss terms
(`fused.fused_terms` with `loss.fusion`, else `losses.mask_terms`; weighted by the config's last
stage) at reference poses:

    truth            the true 2.5D pose (`multiview.oracle_targets`);
    truth, noise     the truth with N(0, 0.05) added to x and y (about 5 cm);
    truth, z = 0     the true 2D with every joint at the pelvis's depth;
    half size        the truth shrunk by half about the pelvis;
    template         `skeleton.STANDING_TEMPLATE`, z = 0, for every example;
    collapsed        every joint at the true pelvis;
    prediction       the detector of the workdir's latest checkpoint, when there is one.

A pose with a lower total than "truth" is one the loss prefers to the truth; if the prediction's
total is below the truth's, more optimization will not find the pose. The physique term uses the
checkpoint's network (`config.physique.kind = "network"`; without a checkpoint it is left out)
or the fixed capsules.
"""

import os

from absl import app
from absl import flags

from experiments import flags as experiment_flags

_EXAMPLES = flags.DEFINE_integer("examples", 64, "Examples to evaluate, evenly spaced.")
_SPLIT = flags.DEFINE_string("split", None, "Split to read (default: config.data.train_split).")
_NOISE = 0.05  # std of the 2D noise of "truth, noise", normalized crop units


def reference_poses(truth_BxVxJx3, rng):
    """The reference 2.5D poses of the module docstring (except the prediction), by name."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from maskpose_jax import evaluation, skeleton  # pylint: disable=import-outside-toplevel
    pelvis = truth_BxVxJx3[:, :, skeleton.PELVIS:skeleton.PELVIS + 1]
    noisy = truth_BxVxJx3.copy()
    noisy[..., :2] += rng.normal(0.0, _NOISE, noisy[..., :2].shape)
    flat = truth_BxVxJx3.copy()
    flat[..., 2] = 0.0
    half = pelvis + 0.5 * (truth_BxVxJx3 - pelvis)
    return {
        "truth": truth_BxVxJx3,
        f"truth, noise {_NOISE:g}": np.clip(noisy, -1.0, 1.0),
        "truth, z = 0": flat,
        "half size": half,
        "template": np.broadcast_to(evaluation.template_keypoints(), truth_BxVxJx3.shape),
        "collapsed": np.broadcast_to(pelvis, truth_BxVxJx3.shape),
    }


def main(argv):
    del argv
    import jax  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    from data_builders import configured  # pylint: disable=import-outside-toplevel
    from maskpose_jax import datasets  # pylint: disable=import-outside-toplevel
    from maskpose_jax import factory  # pylint: disable=import-outside-toplevel
    from maskpose_jax import fused  # pylint: disable=import-outside-toplevel
    from maskpose_jax import inference  # pylint: disable=import-outside-toplevel
    from maskpose_jax import input_pipeline  # pylint: disable=import-outside-toplevel
    from maskpose_jax import losses  # pylint: disable=import-outside-toplevel
    from maskpose_jax import multiview  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel

    config = experiment_flags.config()
    if config.loss.supervision != "masks":
        raise app.UsageError("loss_at_truth needs an unsupervised config (loss.supervision = "
                             f"'masks'), got {config.loss.supervision!r}")
    workdir = experiment_flags.workdir(f"runs/{config.data.name}")
    split = _SPLIT.value or config.data.train_split
    try:
        datasets.refuse_test_split(config, split, "--split")
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    source = configured.open_split(config, split)
    size = datasets.image_size_of(source)
    count = min(int(_EXAMPLES.value), len(source))
    if count < 1:
        raise app.UsageError(f"--examples must be >= 1, got {_EXAMPLES.value}")
    picked = [source[int(i)] for i in np.linspace(0, len(source) - 1, count)]
    batch = next(iter(input_pipeline.make_dataset(
        picked, global_batch_size=count, training=False, num_threads=config.data.num_threads,
        prefetch=1, views=tuple(config.data.views))))
    depth_range = float(config.model.depth_range_mm)
    truth = np.asarray(jax.jit(jax.vmap(
        lambda j, c, k, e, d: multiview.oracle_targets(j, c, k, e, d, size, depth_range)))(
            *(np.asarray(batch[k], np.float32)
              for k in ("joints_world", "crop", "intrinsics", "extrinsics", "distortion"))))
    poses = reference_poses(truth, np.random.default_rng(int(config.seed)))

    capsule_width = factory.physique_capsule_width(config)
    has_checkpoint = os.path.isdir(os.path.join(workdir, "checkpoints")) and os.listdir(
        os.path.join(workdir, "checkpoints"))
    loss_config, state = config.loss, None
    detector, physique = factory.create_models(config)
    if has_checkpoint:
        state = inference.local_copy(
            factory.restore_latest(config, workdir, sharding.make_mesh(),
                                   configured.open_split(config, config.data.train_split))[0])
        poses["prediction"] = np.asarray(inference.make_predict(detector)(
            state.params, state.batch_stats, batch["image"]))
    elif config.physique.kind == "network":
        loss_config = config.loss.copy_and_resolve_references()
        loss_config.use_phys = False
        print(f"no checkpoint in {workdir}: the physique network's term is left out")

    def physique_apply(masks):  # called only with a checkpoint (else capsules or no term)
        return physique.apply({"params": state.params["physique"]}, masks)

    weights = config.stages[-1].loss_weights.to_dict()
    fields = input_pipeline.without_ground_truth(batch)
    if config.loss.fusion:
        body_radii = factory.physique_body_radii(config)
        terms_fn = jax.jit(lambda kp: fused.fused_terms(
            kp, fields, physique_apply, loss_config, size, depth_range, capsule_width, body_radii,
            refine_weights=weights))
        all_terms = fused.FUSED_TERMS
    else:
        terms_fn = jax.jit(lambda kp: losses.mask_terms(kp, fields, physique_apply, loss_config,
                                                        size, depth_range, capsule_width))
        all_terms = losses.TERMS
    names = [t for t in all_terms if weights.get(t, 0.0)]
    print(f"{count} examples of {config.data.name}/{split}; total = "
          + " + ".join(f"{weights[t]:g} {t}" for t in names) + " (the last stage's weights)")
    print("| pose | total | " + " | ".join(names) + " | skel IoU |")
    print("|---|" + "---:|" * (len(names) + 2))
    for name, keypoints in poses.items():
        terms = jax.device_get(terms_fn(np.asarray(keypoints, np.float32)))
        total = sum(weights[t] * float(terms[t]) for t in names)
        print(f"| {name} | {total:.4f} | " + " | ".join(f"{float(terms[t]):.4f}" for t in names)
              + f" | {float(terms['skel_iou']):.3f} |")


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
