"""Evaluation metrics for 3D and 2D poses (DESIGN §11), in jax.numpy and jit-able.

Every metric takes a batch, predictions and ground truth of shape [N, J, D] (millimetres for 3D,
pixels for 2D), and returns one value per example, shape [N]; callers average (see
`group_mean`), which keeps per-action and per-subject tables easy.

3D metrics are root-relative: each function subtracts the pelvis (joint `skeleton.PELVIS` = 0)
from both the prediction and the truth before comparing, so the root's absolute position never
counts and the root joint itself has zero error. Means and PCK fractions run over all J joints,
root included (the usual Human3.6M 17-joint convention).

Left/right (DESIGN §11): masks cannot tell left limbs from right ones. Report the prediction as
it is; beside it, labelled, the figure after one global relabelling (`flip_left_right`, one bit
chosen with ground truth for the whole test set) and after the per-pair oracle
(`oracle_lr_swap`), which reads the ground truth of every example.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from maskpose_jax import geometry, skeleton


def _root_relative(joints_NxJxD):
    joints_NxJxD = jnp.asarray(joints_NxJxD)
    return joints_NxJxD - joints_NxJxD[:, skeleton.PELVIS:skeleton.PELVIS + 1]


def _joint_errors(pred_NxJxD, gt_NxJxD):
    return jnp.linalg.norm(pred_NxJxD - gt_NxJxD, axis=-1)


def joint_errors(pred_NxJx3, gt_NxJx3):
    """Root-relative per-joint Euclidean errors.

    Args:
        pred_NxJx3: predicted joints, mm (any common frame with gt).
        gt_NxJx3: ground-truth joints, mm.

    Returns:
        NxJ errors, mm (zero at the pelvis).
    """
    return _joint_errors(_root_relative(pred_NxJx3), _root_relative(gt_NxJx3))


def mpjpe(pred_NxJx3, gt_NxJx3):
    """Mean per-joint position error after root alignment (Protocol 1).

    Args:
        pred_NxJx3: predicted joints, mm.
        gt_NxJx3: ground-truth joints, mm, same frame.

    Returns:
        [N] mean over joints of |pred_rel - gt_rel|, mm.
    """
    return joint_errors(pred_NxJx3, gt_NxJx3).mean(axis=-1)


def n_mpjpe(pred_NxJx3, gt_NxJx3):
    """MPJPE after the least-squares scale of the root-relative prediction onto the truth.

    s = <pred_rel, gt_rel> / <pred_rel, pred_rel> per example (s = 1 for an all-zero prediction).

    Args:
        pred_NxJx3: predicted joints, mm.
        gt_NxJx3: ground-truth joints, mm, same frame.

    Returns:
        [N] mean over joints of |s pred_rel - gt_rel|, mm.
    """
    pred_rel = _root_relative(pred_NxJx3)
    gt_rel = _root_relative(gt_NxJx3)
    num_N = jnp.sum(pred_rel * gt_rel, axis=(1, 2))
    den_N = jnp.sum(pred_rel * pred_rel, axis=(1, 2))
    scale_N = jnp.where(den_N > 0, num_N / jnp.where(den_N > 0, den_N, 1.0), 1.0)
    return _joint_errors(scale_N[:, None, None] * pred_rel, gt_rel).mean(axis=-1)


def _procrustes_aligned(pred_rel_Jx3, gt_rel_Jx3):
    # A prediction with all joints at one point has no rotation to fit; its best similarity is
    # s = 0, i.e. every joint at the truth's mean (and the SVD fit would divide 0 by 0).
    collapsed = jnp.all(pred_rel_Jx3 == 0)
    safe_pred_Jx3 = jnp.where(collapsed, gt_rel_Jx3, pred_rel_Jx3)
    aligned_Jx3 = geometry.align_similarity(safe_pred_Jx3, gt_rel_Jx3, scale=True)
    return jnp.where(collapsed, gt_rel_Jx3.mean(axis=0, keepdims=True), aligned_Jx3)


def p_mpjpe(pred_NxJx3, gt_NxJx3):
    """MPJPE after Procrustes alignment with scale (Protocol 2), per example.

    The root-relative prediction is moved by its least-squares similarity (scale, rotation,
    translation; `geometry.align_similarity`) onto the root-relative truth.

    Args:
        pred_NxJx3: predicted joints, mm.
        gt_NxJx3: ground-truth joints, mm.

    Returns:
        [N] mean over joints of the aligned error, mm.
    """
    pred_rel = _root_relative(pred_NxJx3)
    gt_rel = _root_relative(gt_NxJx3)
    aligned = jax.vmap(_procrustes_aligned)(pred_rel, gt_rel)
    return _joint_errors(aligned, gt_rel).mean(axis=-1)


def pck3d(pred_NxJx3, gt_NxJx3, threshold=150.0):
    """3D percentage of correct keypoints: fraction of joints with root-relative error <= threshold.

    Args:
        pred_NxJx3: predicted joints, mm.
        gt_NxJx3: ground-truth joints, mm.
        threshold: distance threshold, mm (inclusive).

    Returns:
        [N] fractions in [0, 1].
    """
    return (joint_errors(pred_NxJx3, gt_NxJx3) <= threshold).mean(axis=-1)


def auc3d(pred_NxJx3, gt_NxJx3, max_threshold=150.0, num_thresholds=31):
    """Area under the 3D-PCK curve: mean of `pck3d` over linspace(0, max_threshold, num_thresholds).

    Args:
        pred_NxJx3: predicted joints, mm.
        gt_NxJx3: ground-truth joints, mm.
        max_threshold: largest threshold, mm.
        num_thresholds: number of evenly spaced thresholds, 0 and max_threshold included
          (static int).

    Returns:
        [N] values in [0, 1]; 1 only for a prediction exact up to float rounding.
    """
    errors_NxJ = joint_errors(pred_NxJx3, gt_NxJx3)
    thresholds_T = jnp.linspace(0.0, max_threshold, num_thresholds)
    return (errors_NxJ[:, None, :] <= thresholds_T[None, :, None]).mean(axis=(1, 2))


def pck2d(pred_NxJx2, gt_NxJx2, threshold_px, visible_NxJ=None):
    """2D percentage of correct keypoints in absolute pixel coordinates (no root alignment).

    Args:
        pred_NxJx2: predicted (u, v), pixels.
        gt_NxJx2: ground-truth (u, v), pixels, same image.
        threshold_px: distance threshold, pixels (inclusive).
        visible_NxJ: optional bool; only visible joints count. None counts every joint.

    Returns:
        [N] fraction of visible joints within the threshold; NaN for an example with no visible
        joint (drop those before averaging, e.g. `group_mean(..., skip_nan=True)`).
    """
    hits_NxJ = _joint_errors(jnp.asarray(pred_NxJx2), jnp.asarray(gt_NxJx2)) <= threshold_px
    if visible_NxJ is None:
        return hits_NxJ.mean(axis=-1)
    visible_NxJ = jnp.asarray(visible_NxJ, bool)
    count_N = visible_NxJ.sum(axis=-1)
    return jnp.where(count_N > 0,
                     jnp.sum(hits_NxJ & visible_NxJ, axis=-1) / jnp.maximum(count_N, 1),
                     jnp.nan)


def flip_left_right(joints_NxJxD):
    """Exchanges the labels of left and right joints (`skeleton.FLIP_PERMUTATION`).

    Only the joint order changes; coordinates are not mirrored. Works on any leading shape.

    Args:
        joints_NxJxD: joints, J = skeleton.NUM_JOINTS on axis -2.

    Returns:
        Array of the same shape with left and right joints exchanged.
    """
    return jnp.asarray(joints_NxJxD)[..., skeleton.FLIP_PERMUTATION, :]


def oracle_lr_swap(pred_NxJx3, gt_NxJx3):
    """The original authors' per-pair left/right oracle: reads ground truth, reporting aid only.

    For each example and each pair (a, b) in `skeleton.LR_PAIRS`, the prediction's joints a and b
    are exchanged when that lowers |p_a - g_a| + |p_b - g_b| (root-relative distances, as in the
    metrics). Because it uses ground truth per joint it flatters the model: report it only beside
    the honest figure, labelled. Root-relative MPJPE of the result never exceeds the input's.

    Args:
        pred_NxJx3: predicted joints, mm.
        gt_NxJx3: ground-truth joints, mm.

    Returns:
        NxJx3 prediction with the chosen pairs exchanged (same frame and root as the input).
    """
    pred_NxJx3 = jnp.asarray(pred_NxJx3)
    pred_rel = _root_relative(pred_NxJx3)
    gt_rel = _root_relative(gt_NxJx3)
    first, second = (np.array(side) for side in zip(*skeleton.LR_PAIRS))
    p_a, p_b = pred_rel[:, first], pred_rel[:, second]
    g_a, g_b = gt_rel[:, first], gt_rel[:, second]
    keep_NxP = _joint_errors(p_a, g_a) + _joint_errors(p_b, g_b)
    swap_NxP = _joint_errors(p_b, g_a) + _joint_errors(p_a, g_b)
    swap_NxPx1 = (swap_NxP < keep_NxP)[..., None]
    out = pred_NxJx3.at[:, first].set(jnp.where(swap_NxPx1, pred_NxJx3[:, second],
                                                pred_NxJx3[:, first]))
    return out.at[:, second].set(jnp.where(swap_NxPx1, pred_NxJx3[:, first],
                                           pred_NxJx3[:, second]))


ALL_KEY = "all"


def group_mean(values_N, groups: Sequence[str], skip_nan: bool = False) -> dict[str, float]:
    """Means of per-example values per group (e.g. Human3.6M action), on the host.

    Args:
        values_N: per-example values (any array-like of length N).
        groups: N group names; a group may not be called "all".
        skip_nan: drop NaN values (e.g. `pck2d` examples without visible joints) before averaging.

    Returns:
        {"all": mean over every example, then each group in sorted order: its mean}, Python
        floats; a group (or "all") left with no value is NaN.
    """
    values_N = np.asarray(values_N, np.float64).reshape(-1)
    groups = [str(g) for g in groups]
    if len(groups) != len(values_N):
        raise ValueError(f"{len(values_N)} values but {len(groups)} group names")
    if ALL_KEY in groups:
        raise ValueError(f'"{ALL_KEY}" is reserved for the overall mean; rename that group')
    names_N = np.asarray(groups, dtype=object)
    keep_N = ~np.isnan(values_N) if skip_nan else np.ones(len(values_N), bool)

    def _mean(select_N):
        chosen = values_N[select_N & keep_N]
        return float(chosen.mean()) if chosen.size else math.nan

    result = {ALL_KEY: _mean(np.ones(len(values_N), bool))}
    for name in sorted(set(groups)):
        result[name] = _mean(names_N == name)
    return result
