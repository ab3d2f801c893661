"""Evaluation (DESIGN §11): from detector keypoints to the metrics of a split (written by
`reporting.write_results`).

Every valid view of every example is one evaluated sample: the view's monocular prediction,
lifted to camera-frame millimetres, against the ground truth moved into that camera. The root
depth of the lift comes from the pelvis triangulated from the *predicted* 2D pelvis of all valid
views of the example (`multiview.triangulate_root`); no ground truth enters the prediction. The
metrics (`maskpose_jax.metrics`) are root-relative, so the root depth only sets the lift's scale.

Left/right: masks cannot tell a left limb from a right one, so beside the prediction as it is the
table reports, labelled, (a) one global relabelling for the whole set, chosen by the lower overall
MPJPE (one bit of ground truth), and (b) the original authors' per-pair oracle swap, which reads
the ground truth of every sample. The oracle's 2D figure applies the pair swaps chosen in 3D to
the 2D keypoints, so one labelling serves both.
"""

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from maskpose_jax import geometry, input_pipeline, losses, metrics, multiview, skeleton

# Result keys of the as-predicted metrics, in table order, with their table labels.
METRIC_KEYS = ("mpjpe", "n_mpjpe", "p_mpjpe", "pck3d", "auc3d", "pck2d")
MM_KEYS = frozenset({"mpjpe", "n_mpjpe", "p_mpjpe"})
GLOBAL_FLIP_SUFFIX = "_global_flip"
# Samples per metric evaluation (bounds the temporaries of a whole test set).
_CHUNK = 65536
ORACLE_SUFFIX = "_oracle"
# results[BASELINE_KEY]: METRIC_KEYS of the constant `template_keypoints` prediction (no network).
BASELINE_KEY = "baseline_template"


def view_valid(batch: Mapping[str, Any]) -> np.ndarray:
    """B×V bool NumPy `losses.view_valid` (host side)."""
    return np.asarray(losses.view_valid(batch)) > 0.5


@functools.partial(jax.jit, static_argnames=("image_size", "depth_range_mm"))
def _lift_batch(keypoints_BxVxJx3, crop_BxVx2x3, intrinsics_BxVx3x3, extrinsics_BxVx3x4,
                distortion_BxVx5, view_valid_BxV, image_size, depth_range_mm):
    def one(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, distortion_Vx5,
            valid_V):
        keypoints_VxJx3 = multiview.pinhole_keypoints(keypoints_VxJx3, crop_Vx2x3,
                                                      intrinsics_Vx3x3, distortion_Vx5, image_size)
        root_world_3 = multiview.triangulate_root(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3,
                                                  extrinsics_Vx3x4, image_size, valid_V,
                                                  depth_range_mm)
        joints_cam_VxJx3, _ = multiview.lift_views(keypoints_VxJx3, root_world_3, crop_Vx2x3,
                                                   intrinsics_Vx3x3, extrinsics_Vx3x4, image_size,
                                                   depth_range_mm)
        return joints_cam_VxJx3
    return jax.vmap(one)(keypoints_BxVxJx3, crop_BxVx2x3, intrinsics_BxVx3x3,
                         extrinsics_BxVx3x4, distortion_BxVx5, view_valid_BxV)


def predictions_in_camera(keypoints_BxVxJx3, batch: Mapping[str, Any], image_size: int,
                          depth_range_mm: float) -> np.ndarray:
    """Lifts every view's 2.5D prediction to camera-frame 3D with a triangulated root depth.

    Per example, each view's lens distortion is undone (`multiview.pinhole_keypoints`), the
    pelvis is triangulated from the 2D pelvis of its valid views, and in each view its depth
    sets Z_root of `geometry.lift_to_cam`. No ground truth is read.

    A single view cannot give a root depth by triangulation: an example with exactly one valid
    view (MPI-INF-3DHP's test set, in-the-wild video) takes the root depth from its crop's scale
    (`multiview.fallback_root_depth`: the crop side spans `depth_range_mm`, the rule the training
    losses use for single-view examples; no ground truth). Its MPJPE then carries the error of
    that scale prior; N-MPJPE and P-MPJPE do not. `Accumulator.results` counts such samples in
    `num_single_view`. Examples with no valid view at all (batch padding) give NaN rows, which
    callers drop.

    Args:
        keypoints_BxVxJx3: detector output per view, (x, y) normalized crop coordinates, z depth
            relative to the pelvis in units of depth_range_mm / 2.
        batch: host arrays `crop` B×V×2×3, `intrinsics` B×V×3×3, `extrinsics` B×V×3×4 (world →
            camera, mm), optional `distortion` B×V×5 (missing = pinhole cameras) and
            `view_valid` B×V (1 real view, 0 padding; missing = all ones).
        image_size: crop side N in pixels (static int).
        depth_range_mm: depth span that z in [-1, 1] covers, mm.

    Returns:
        B×V×J×3 float32 NumPy joints in each view's camera frame, mm.
    """
    valid_BxV = view_valid(batch)
    counts_B = valid_BxV.sum(axis=1)
    distortion = batch.get("distortion")
    if distortion is None:
        distortion = np.zeros(np.shape(batch["crop"])[:2] + (5,), np.float32)
    joints_cam_BxVxJx3 = _lift_batch(
        jnp.asarray(keypoints_BxVxJx3, jnp.float32), jnp.asarray(batch["crop"], jnp.float32),
        jnp.asarray(batch["intrinsics"], jnp.float32),
        jnp.asarray(batch["extrinsics"], jnp.float32), jnp.asarray(distortion, jnp.float32),
        jnp.asarray(valid_BxV, jnp.float32),
        image_size=int(image_size), depth_range_mm=float(depth_range_mm))
    joints_cam_BxVxJx3 = np.array(joints_cam_BxVxJx3)
    joints_cam_BxVxJx3[counts_B == 0] = np.nan
    return joints_cam_BxVxJx3


@jax.jit
def _truth_in_camera(joints_world_BxJx3, extrinsics_BxVx3x4):
    per_view = jax.vmap(geometry.cam_from_world, in_axes=(None, 0))
    return jax.vmap(per_view)(joints_world_BxJx3, extrinsics_BxVx3x4)


def truth_in_camera(joints_world_BxJx3, extrinsics_BxVx3x4):
    """Moves the ground-truth joints into every view's camera frame.

    Args:
        joints_world_BxJx3: ground truth, world frame, mm.
        extrinsics_BxVx3x4: [R|t] per view, world → camera, mm.

    Returns:
        B×V×J×3 joints in each view's camera frame, mm (a jax array).
    """
    return _truth_in_camera(jnp.asarray(joints_world_BxJx3), jnp.asarray(extrinsics_BxVx3x4))


@jax.jit
def _truth_in_crop_px(joints_world_BxJx3, intrinsics_BxVx3x3, extrinsics_BxVx3x4,
                      distortion_BxVx5, crop_BxVx2x3):
    def one_view(joints_world_Jx3, intrinsics_3x3, extrinsics_3x4, distortion_5, crop_2x3):
        uv_Jx2 = geometry.project(joints_world_Jx3, intrinsics_3x3, extrinsics_3x4, distortion_5)
        return geometry.apply_affine(crop_2x3, uv_Jx2)
    per_view = jax.vmap(one_view, in_axes=(None, 0, 0, 0, 0))
    return jax.vmap(per_view)(joints_world_BxJx3, intrinsics_BxVx3x3, extrinsics_BxVx3x4,
                              distortion_BxVx5, crop_BxVx2x3)


# Batch fields the accumulator reads, each with a leading example axis.
_PER_EXAMPLE = ("crop", "intrinsics", "extrinsics", "distortion", "joints_world", "action")


def template_keypoints() -> np.ndarray:
    """The constant prediction of the no-network reference: `skeleton.STANDING_TEMPLATE` with every
    joint at the pelvis's depth (z = 0), J×3 float32."""
    keypoints = np.zeros((skeleton.NUM_JOINTS, 3), np.float32)
    keypoints[:, :2] = skeleton.STANDING_TEMPLATE
    return keypoints


class Accumulator:
    """Collects evaluated samples (one per valid view of each example), batch by batch, on the host.

    Usage: `acc = Accumulator(image_size, depth_range_mm)`, then `acc.add(keypoints, batch)` for
    every evaluation batch, then `acc.results(pck2d_threshold)`.
    """

    def __init__(self, image_size: int, depth_range_mm: float):
        """Args: image_size: crop side N, pixels; depth_range_mm: the detector's z span, mm."""
        self.image_size = int(image_size)
        self.depth_range_mm = float(depth_range_mm)
        self._parts = {k: [] for k in ("pred_cam", "gt_cam", "pred_2d", "gt_2d", "actions",
                                       "frames")}
        self.num_frames = 0
        self.num_single_view = 0

    def add(self, keypoints_BxVxJx3, batch: Mapping[str, Any]) -> None:
        """Adds one evaluation batch.

        Args:
            keypoints_BxVxJx3: detector keypoints (host or device array), see
                `predictions_in_camera`.
            batch: an evaluation batch (`input_pipeline.EVAL_FIELDS`, host NumPy): crop,
                intrinsics, extrinsics, distortion, joints_world B×J×3 (mm), action (B names),
                optional view_valid B×V. Examples without a valid view (padding) are skipped;
                single-view examples get the crop-scale root depth (`predictions_in_camera`).
        """
        keypoints_BxVxJx3 = np.asarray(keypoints_BxVxJx3, np.float32)
        valid_BxV = view_valid(batch)
        keep_B = valid_BxV.any(axis=1)
        if not keep_B.any():
            return
        batch = {k: np.asarray(batch[k])[keep_B] for k in _PER_EXAMPLE}
        batch["view_valid"] = valid_BxV[keep_B]
        keypoints_BxVxJx3, valid_BxV = keypoints_BxVxJx3[keep_B], valid_BxV[keep_B]
        pred_cam_BxVxJx3 = predictions_in_camera(keypoints_BxVxJx3, batch, self.image_size,
                                                 self.depth_range_mm)
        gt_cam_BxVxJx3 = np.asarray(truth_in_camera(batch["joints_world"].astype(np.float32),
                                            batch["extrinsics"].astype(np.float32)))
        pred_2d_BxVxJx2 = np.asarray(geometry.crop_px_from_normalized(
            keypoints_BxVxJx3[..., :2], self.image_size))
        gt_2d_BxVxJx2 = np.asarray(_truth_in_crop_px(
            *(jnp.asarray(batch[k], jnp.float32)
              for k in ("joints_world", "intrinsics", "extrinsics", "distortion", "crop"))))
        actions_BxV = np.broadcast_to(
            np.asarray([input_pipeline.text(a) for a in batch["action"]], dtype=object)[:, None],
            valid_BxV.shape)
        frames_BxV = np.broadcast_to(
            self.num_frames + np.arange(len(keypoints_BxVxJx3))[:, None], valid_BxV.shape)
        for name, values in (("pred_cam", pred_cam_BxVxJx3), ("gt_cam", gt_cam_BxVxJx3),
                             ("pred_2d", pred_2d_BxVxJx2), ("gt_2d", gt_2d_BxVxJx2),
                             ("actions", actions_BxV), ("frames", frames_BxV)):
            self._parts[name].append(values[valid_BxV])
        self.num_frames += int(keep_B.sum())
        self.num_single_view += int((valid_BxV.sum(axis=1) == 1).sum())

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything collected: pred_cam / gt_cam N×J×3 (mm, camera frame), pred_2d / gt_2d
        N×J×2 (crop pixels; the truth projected with lens distortion), actions [N] (str), frames
        [N] (the index of each sample's frame among those added)."""
        if not self._parts["actions"]:
            raise ValueError("nothing to evaluate: no batch with a valid view was added")
        return {k: np.concatenate(v) for k, v in self._parts.items()}

    def results(self, pck2d_threshold: float) -> dict[str, Any]:
        """`compute_results` over everything collected, plus `num_frames` (examples added) and
        `num_single_view` (samples whose root depth came from the crop scale, not triangulation)."""
        a = self.arrays()
        out = compute_results(a["pred_cam"], a["gt_cam"], a["pred_2d"], a["gt_2d"],
                              a["actions"], self.image_size, pck2d_threshold, a["frames"])
        out["num_frames"] = self.num_frames
        out["num_single_view"] = self.num_single_view
        return out


def _metric_values(pred_cam_NxJx3, gt_cam_NxJx3, pred_2d_NxJx2, gt_2d_NxJx2,
                   threshold_px) -> dict[str, np.ndarray]:
    """Per-sample values [N] of every metric of METRIC_KEYS, in chunks of samples (bounded memory
    for whole test sets)."""
    parts, chunk = {k: [] for k in METRIC_KEYS}, _CHUNK
    for start in range(0, pred_cam_NxJx3.shape[0], chunk):
        p, g = pred_cam_NxJx3[start:start + chunk], gt_cam_NxJx3[start:start + chunk]
        p2, g2 = pred_2d_NxJx2[start:start + chunk], gt_2d_NxJx2[start:start + chunk]
        for k, v in (("mpjpe", metrics.mpjpe(p, g)), ("n_mpjpe", metrics.n_mpjpe(p, g)),
                     ("p_mpjpe", metrics.p_mpjpe(p, g)), ("pck3d", metrics.pck3d(p, g)),
                     ("auc3d", metrics.auc3d(p, g)),
                     ("pck2d", metrics.pck2d(p2, g2, threshold_px))):
            parts[k].append(np.asarray(v, np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _swap_pairs(joints_NxJxD, swap_NxP):
    first, second = (np.array(side) for side in zip(*skeleton.LR_PAIRS))
    out = np.array(joints_NxJxD)
    swap = swap_NxP[..., None]
    out[:, first] = np.where(swap, joints_NxJxD[:, second], joints_NxJxD[:, first])
    out[:, second] = np.where(swap, joints_NxJxD[:, first], joints_NxJxD[:, second])
    return out


def compute_results(pred_cam_NxJx3, gt_cam_NxJx3, pred_2d_NxJx2, gt_2d_NxJx2,
                    actions_N: Sequence[str], image_size: int,
                    pck2d_threshold: float, frames_N=None) -> dict[str, Any]:
    """The results of DESIGN §11 over N evaluated samples.

    Args:
        pred_cam_NxJx3: predicted joints, camera frame, mm.
        gt_cam_NxJx3: ground-truth joints, same camera frame, mm.
        pred_2d_NxJx2: predicted joints, crop pixels.
        gt_2d_NxJx2: ground-truth joints projected into the crop, crop pixels.
        actions_N: action name of each sample (per-action table).
        image_size: crop side N, pixels.
        pck2d_threshold: 2D PCK threshold as a fraction of the crop side.
        frames_N: optional frame index of each sample (the views of one frame share it), for
            the left/right consistency across views.

    Returns:
        Python floats: METRIC_KEYS as predicted (mm for errors, fractions for PCK/AUC); the same
        keys + "_global_flip" (one relabelling for the whole set, applied when it lowers the
        overall MPJPE; `global_flip_applied` says whether it was) and + "_oracle" (per-pair swap
        reading the ground truth); `per_action` {action: {metric: value, "num_examples": n}} as
        predicted; `per_joint_mpjpe` {joint: root-relative error, mm} as predicted;
        `lr_consistency`: over frames with >= 2 views and the 6 left/right pairs, the share where
        every view labels the pair the same way relative to the truth (the oracle swap's choice is
        the same in all of them; reads truth, a diagnostic; NaN without such frames);
        `num_examples` N; `pck2d_threshold` and `pck2d_threshold_px`.
    """
    pred_cam = np.asarray(pred_cam_NxJx3, np.float32)
    gt_cam = np.asarray(gt_cam_NxJx3, np.float32)
    pred_2d = np.asarray(pred_2d_NxJx2, np.float32)
    gt_2d = np.asarray(gt_2d_NxJx2, np.float32)
    actions = [input_pipeline.text(a) for a in actions_N]
    n = pred_cam.shape[0]
    if n == 0:
        raise ValueError("nothing to evaluate: no samples")
    if not (gt_cam.shape[0] == pred_2d.shape[0] == gt_2d.shape[0] == len(actions) == n):
        raise ValueError(
            f"sample counts differ: pred_cam {n}, gt_cam {gt_cam.shape[0]}, pred_2d "
            f"{pred_2d.shape[0]}, gt_2d {gt_2d.shape[0]}, actions {len(actions)}")
    threshold_px = float(pck2d_threshold) * int(image_size)
    values = _metric_values(pred_cam, gt_cam, pred_2d, gt_2d, threshold_px)
    results: dict[str, Any] = {k: float(v.mean()) for k, v in values.items()}

    flipped = _metric_values(np.asarray(metrics.flip_left_right(pred_cam)), gt_cam,
                             np.asarray(metrics.flip_left_right(pred_2d)), gt_2d, threshold_px)
    flip = bool(flipped["mpjpe"].mean() < values["mpjpe"].mean())
    for k in METRIC_KEYS:
        results[k + GLOBAL_FLIP_SUFFIX] = float((flipped if flip else values)[k].mean())
    results["global_flip_applied"] = flip

    oracle_cam = np.asarray(metrics.oracle_lr_swap(pred_cam, gt_cam))
    first = np.array([a for a, _ in skeleton.LR_PAIRS])
    # A pair was swapped where its first joint moved (a pair of equal joints swaps to itself).
    swap_NxP = np.any(oracle_cam[:, first] != pred_cam[:, first], axis=-1)
    oracle = _metric_values(oracle_cam, gt_cam, _swap_pairs(pred_2d, swap_NxP), gt_2d,
                            threshold_px)
    for k in METRIC_KEYS:
        results[k + ORACLE_SUFFIX] = float(oracle[k].mean())

    joint_errors_J = np.asarray(metrics.joint_errors(pred_cam, gt_cam)).mean(axis=0)
    results["per_joint_mpjpe"] = {name: float(e)
                                  for name, e in zip(skeleton.JOINT_NAMES, joint_errors_J)}
    results["lr_consistency"] = _lr_consistency(swap_NxP, frames_N)

    per_action: dict[str, dict[str, float]] = {}
    for k in METRIC_KEYS:
        for action, value in metrics.group_mean(values[k], actions).items():
            if action != metrics.ALL_KEY:
                per_action.setdefault(action, {})[k] = value
    names, counts = np.unique(np.asarray(actions, dtype=str), return_counts=True)
    for action, count in zip(names.tolist(), counts.tolist()):
        per_action[action]["num_examples"] = count
    results["per_action"] = per_action
    results["num_examples"] = n
    results["pck2d_threshold"] = float(pck2d_threshold)
    results["pck2d_threshold_px"] = threshold_px
    return results


def _lr_consistency(swap_NxP, frames_N) -> float:
    """Share of (frame with >= 2 views, left/right pair) whose swap bit is the same in all views."""
    if frames_N is None:
        return float("nan")
    frames_N = np.asarray(frames_N)
    _, index_N, counts_F = np.unique(frames_N, return_inverse=True, return_counts=True)
    swaps_FxP = np.zeros((len(counts_F), swap_NxP.shape[1]))
    np.add.at(swaps_FxP, index_N, swap_NxP.astype(np.float64))
    multi_F = counts_F >= 2
    if not multi_F.any():
        return float("nan")
    agree_FxP = (swaps_FxP == 0) | (swaps_FxP == counts_F[:, None])
    return float(agree_FxP[multi_F].mean())
