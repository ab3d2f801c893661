"""The detector in eval mode: prediction, the training panel's masks, and the evaluation of a
split (DESIGN §11) with the constant standing skeleton beside it.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from maskpose_jax import cascade
from maskpose_jax import evaluation
from maskpose_jax import factory
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import losses
from maskpose_jax import models
from maskpose_jax import skeleton


def make_predict(detector) -> Callable:
    """`predict(params, batch_stats, images_BxVxNxNx3) -> keypoints_BxVxJx3` (eval mode, jitted)."""

    @jax.jit
    def predict(params, batch_stats, images):
        b, v = images.shape[:2]
        out = detector.apply(models.detector_variables(params["detector"], batch_stats),
                             images.reshape(b * v, *images.shape[2:]), train=False)
        return out["keypoints"].reshape(b, v, skeleton.NUM_JOINTS, 3)

    return predict


def make_visualize(config, detector, physique, image_size: int) -> Callable:
    """Jitted `visualize(params, batch_stats, batch, step)`: for the first example of `batch`
    (a training batch), the predicted keypoints and the Skeleton and Physique Masks per view,
    drawn as the step's loss draws them.

    With config.loss.fusion, the masks are those of the example's fused pose
    (`fused.example_pose`, `fused.draw_pose`) with the fixed body at the cascade's width of
    `step`, or the network on its Skeleton Masks; else each view's own keypoints drawn
    (`losses.view_forward`, own views), the Physique Mask from the capsules or the network.
    Without a Physique term and a fixed body, the Physique Masks are zeros (nothing is drawn).
    """
    predict = make_predict(detector)
    loss_config = config.loss
    capsule_width = factory.physique_capsule_width(config)
    body_radii = factory.physique_body_radii(config)
    depth_range = float(config.model.depth_range_mm)

    # Own views only, every mask drawn (a copy: the config is not changed).
    own_views = ml_collections.ConfigDict({**loss_config.to_dict(), "cross_view": False,
                                           "phys_cross_view": False, "use_skel": True,
                                           "use_phys": True})

    def network(params, skel_VxNxN):
        return physique.apply({"params": params["physique"]}, skel_VxNxN)

    @jax.jit
    def visualize(params, batch_stats, batch, step):
        first = {k: v[:1] for k, v in batch.items()}
        keypoints_VxJx3 = predict(params, batch_stats, first["image"])[0]
        if bool(loss_config.fusion):
            example = jax.tree.map(lambda x: x[0], fused.example_views(first, loss_config))
            pose_Jx3, _ = fused.example_pose(keypoints_VxJx3, example, loss_config, image_size,
                                             depth_range)
            drawn = fused.draw_pose(pose_Jx3, example, loss_config, image_size, capsule_width,
                                    body_radii, cascade.body_scale(step, config.stages))
            skel = drawn["skel_VxNxN"]
            phys = drawn.get("body_VxNxN")
            if phys is None and config.physique.kind == "network":
                phys = network(params, skel)
        else:  # the own views of the per-view path's forward model
            forward = losses.view_forward(keypoints_VxJx3[None], first, own_views, image_size,
                                          depth_range, capsule_width)
            skel = forward["skel_BxPxNxN"][0]
            phys = (network(params, skel) if capsule_width is None
                    else forward["capsule_BxQxNxN"][0])
        if phys is None:
            phys = jnp.zeros_like(skel)
        return keypoints_VxJx3, skel, phys

    return visualize


def local_copy(tree):
    """This process's copy of a replicated pytree, on one local device (for host-side work)."""
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def evaluate(config, predict: Callable, params, batch_stats, source, image_size: int,
             max_examples: int = 0) -> dict:
    """Runs the detector over (the first `max_examples` of) `source` and computes DESIGN §11.

    Runs on one device of this process; the last partial batch is padded so that nothing
    recompiles. The results also hold, under `evaluation.BASELINE_KEY`, the metrics of a constant
    standing skeleton on the same samples (`evaluation.template_keypoints`): the figure a model
    must beat to have learned anything from the images.
    """
    if max_examples:
        source = [source[i] for i in range(min(max_examples, len(source)))]
    batch_size = int(config.eval.batch_size)
    dataset = input_pipeline.make_dataset(
        source, global_batch_size=batch_size, training=False, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch, views=tuple(config.data.views))
    depth_range = float(config.model.depth_range_mm)
    accumulator = evaluation.Accumulator(image_size, depth_range)
    baseline = evaluation.Accumulator(image_size, depth_range)
    for batch in dataset:
        count = len(batch["frame"])
        images = batch["image"]
        if count < batch_size:
            pad = np.repeat(images[-1:], batch_size - count, axis=0)
            images = np.concatenate([images, pad])
        keypoints = np.asarray(predict(params, batch_stats, images))[:count]
        accumulator.add(keypoints, batch)
        baseline.add(np.broadcast_to(evaluation.template_keypoints(), keypoints.shape), batch)
    threshold = float(config.eval.pck2d_threshold)
    results = accumulator.results(threshold)
    reference = baseline.results(threshold)
    results[evaluation.BASELINE_KEY] = {k: reference[k] for k in evaluation.METRIC_KEYS}
    return results
