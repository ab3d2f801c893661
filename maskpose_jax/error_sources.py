"""Where a trained model's 3D error comes from: its keypoints with one part exchanged.

The library side of experiments/error_sources.py (which lists the rows): pure functions of a
batch's predicted keypoints. Reads the batch's ground truth for the `true` rows only; a
diagnostic, never a training path.
"""

import jax
import jax.numpy as jnp
import numpy as np

from maskpose_jax import evaluation
from maskpose_jax import fused
from maskpose_jax import multiview

ROWS = ("prediction", "pred xy + true z", "true xy + pred z", "pred xy + fused z", "fused",
        "fused, consistent labels", "fused + fit", "template + fit", "constant")


def world_keypoints(world_BxJx3, batch, image_size: int, depth_range_mm: float):
    """B×V×J×3 keypoints of one world pose per example in its views: projected xy (with lens
    distortion) and relative depth z, as the detector predicts them."""
    f32 = {k: jnp.asarray(batch[k], jnp.float32)
           for k in ("crop", "intrinsics", "extrinsics", "distortion")}
    z = jax.vmap(fused.relative_depths, (0, 0, None))(world_BxJx3, f32["extrinsics"],
                                                       depth_range_mm)
    xy = jax.vmap(fused.project_pose, (0, 0, 0, 0, 0, None))(
        world_BxJx3, f32["crop"], f32["intrinsics"], f32["extrinsics"], f32["distortion"],
        image_size)
    return jnp.concatenate([xy, z[..., None]], axis=-1)


def alternatives(keypoints_BxVxJx3, batch, image_size: int, depth_range_mm: float,
                 fit=None):
    """{row name: B×V×J×3 keypoints} for every row of ROWS but `constant` and `template + fit`
    (the caller's), and `fused + fit` only when `fit`, a function of (B×J×3 fused world poses,
    batch) -> B×J×3 fits, is given.

    Reads the batch's ground truth (`joints_world`) for the `true` rows only.
    """
    pred = jnp.asarray(keypoints_BxVxJx3, jnp.float32)
    f32 = {k: jnp.asarray(batch[k], jnp.float32)
           for k in ("joints_world", "crop", "intrinsics", "extrinsics", "distortion")}
    truth = jax.vmap(multiview.oracle_targets, (0, 0, 0, 0, 0, None, None))(
        f32["joints_world"], f32["crop"], f32["intrinsics"], f32["extrinsics"],
        f32["distortion"], image_size, depth_range_mm)
    valid_BxV = jnp.asarray(evaluation.view_valid(batch), jnp.float32)
    cameras = (f32["crop"], f32["intrinsics"], f32["extrinsics"])

    def world_of(pinhole_BxVxJx3):  # keypoints in pinhole coordinates -> fused world poses
        return jax.vmap(fused.fuse_views, (0, 0, 0, 0, 0, None))(
            pinhole_BxVxJx3, *cameras, valid_BxV, image_size)

    def keypoints_of(world_BxJx3):
        return world_keypoints(world_BxJx3, batch, image_size, depth_range_mm)

    pinhole = jax.vmap(multiview.pinhole_keypoints, (0, 0, 0, 0, None))(
        pred, f32["crop"], f32["intrinsics"], f32["distortion"], image_size)
    relabelled = jax.vmap(fused.consistent_labels, (0, 0, 0, 0, 0, None))(
        pinhole, *cameras, valid_BxV, image_size)
    fused_pose = keypoints_of(world_of(pinhole))
    fused_z = fused_pose[..., 2]
    rows = {
        "prediction": pred,
        "pred xy + true z": pred.at[..., 2].set(truth[..., 2]),
        "true xy + pred z": truth.at[..., 2].set(pred[..., 2]),
        "pred xy + fused z": pred.at[..., 2].set(fused_z),
        "fused": fused_pose,
        "fused, consistent labels": keypoints_of(world_of(relabelled)),
    }
    if fit is not None:
        rows["fused + fit"] = keypoints_of(fit(world_of(pinhole), batch))
    return {k: np.asarray(v) for k, v in rows.items()}
