"""Training losses (DESIGN §7-§8): mask terms from the foreground masks only, and the oracle.

Per-example terms (pure, written for one example):
- `skeleton_mask_loss`: L_skel = mean(W (S - M)^2 [S > clip]) over the pixels of one mask.
- `physique_loss`: L_phys = mean(W (P - M)^2).
- `symmetry_loss`: left/right bone lengths equal, pelvis at the hips' midpoint, thorax at the
  shoulders' midpoint (metres^2).
- `agreement_loss`: the views' world-frame poses coincide after root alignment (metres).
- `oracle_loss`: L1 to ground-truth 2.5D targets (supervised `oracle` variant only).

Batched compositions used by the train step:
- `view_forward` (the forward model: triangulate the root, lift, project into every view, draw
  the Skeleton Masks), `view_terms` (the switched-on terms, from its output and the masks) and
  `mask_terms`, the two with the physique network once on all masks between them. They read
  only image-side data (mask, weight, cameras, crop): no ground truth enters them.
- `oracle_terms`: reads `joints_world`; only the clearly labelled supervised variant calls it.

Averaging: a term is averaged per example over its valid items (mask pairs or views), then over
the batch. The mask pairs of an example are the own views (v, v) and, with cross-view on, every
ordered pair (v, w), v != w, of valid views: V^2 masks for V valid views, all weighted alike.
Views with view_valid = 0 contribute nothing, whatever their data (it is replaced before use).
Every example must have at least one valid view.
"""

import jax
import jax.numpy as jnp
import numpy as np

from maskpose_jax import multiview
from maskpose_jax import render
from maskpose_jax import skeleton

_MM_TO_M = 1e-3
# Added under square roots of squared lengths (m^2) so their gradient stays finite at 0.
_SQRT_EPS_M2 = 1e-12

TERMS = ("skel", "phys", "sym", "agree")
DIAGNOSTICS = ("mask_iou", "skel_iou", "root_depth_mm", "triangulated")

_HIPS = (skeleton.JOINT_INDEX["r_hip"], skeleton.JOINT_INDEX["l_hip"])
_SHOULDERS = (skeleton.JOINT_INDEX["r_shoulder"], skeleton.JOINT_INDEX["l_shoulder"])


# --- Per-example terms -----------------------------------------------------------------------


def skeleton_mask_loss(skel_HxW, mask_HxW, weight_HxW, clip_threshold):
    """L_skel of one mask: mean over pixels of W (S - M)^2 where S > clip_threshold, else 0.

    Args:
        skel_HxW: Skeleton Mask S in [0, 1].
        mask_HxW: foreground mask M in [0, 1].
        weight_HxW: pixel weights W (geodesic weights, or ones).
        clip_threshold: pixels with S <= threshold are left out (they count as 0 in the mean).

    Returns:
        Scalar loss.
    """
    keep_HxW = skel_HxW > clip_threshold
    return jnp.mean(jnp.where(keep_HxW, weight_HxW * (skel_HxW - mask_HxW) ** 2, 0.0))


def physique_loss(phys_HxW, mask_HxW, weight_HxW):
    """L_phys of one mask: mean over pixels of W (P - M)^2.

    Args:
        phys_HxW: Physique Mask P in (0, 1).
        mask_HxW: foreground mask M in [0, 1].
        weight_HxW: pixel weights W.

    Returns:
        Scalar loss.
    """
    return jnp.mean(weight_HxW * (phys_HxW - mask_HxW) ** 2)


def bone_points(keypoints_Jx2, samples, bones=skeleton.BONES):
    """`samples` evenly spaced points along every bone, ends included: [len(bones) * samples, 2]."""
    t_S = np.linspace(0.0, 1.0, samples, dtype=np.float32)[None, :, None]
    start_Bx1x2 = keypoints_Jx2[np.array([i for i, _ in bones])][:, None]
    end_Bx1x2 = keypoints_Jx2[np.array([j for _, j in bones])][:, None]
    return ((1.0 - t_S) * start_Bx1x2 + t_S * end_Bx1x2).reshape(-1, 2)


def sample_outside_distance(points_Px2, outside_HxW):
    """The outside distance transform at arbitrary points (bilinear), normalized units.

    Inside the crop: bilinear interpolation of the pixel grid. Outside it: the value at the
    nearest crop point plus the distance to it, so a point off the crop is still pulled back.

    Args:
        points_Px2: points (x, y), normalized crop coordinates.
        outside_HxW: per-pixel distance to the nearest foreground pixel, 0 inside the mask.

    Returns:
        [P] distances.
    """
    size = outside_HxW.shape[0]
    inside_Px2 = jnp.clip(points_Px2, -1.0, 1.0)
    beyond_P = jnp.sqrt(jnp.sum((points_Px2 - inside_Px2) ** 2, axis=-1) + _SQRT_EPS_M2)
    col_row_2xP = ((inside_Px2 + 1.0) * ((size - 1) / 2.0)).T
    values_P = jax.scipy.ndimage.map_coordinates(outside_HxW, [col_row_2xP[1], col_row_2xP[0]],
                                                 order=1, mode="nearest")
    return values_P + beyond_P - np.sqrt(_SQRT_EPS_M2)


def inside_loss(keypoints_Jx2, outside_HxW, samples=5):
    """L_inside of one mask: mean outside distance of points along every drawn bone.

    Zero when the whole skeleton lies inside the silhouette; a bone off it is pulled in from any
    distance (the Skeleton Mask's clipped L_skel gives such a bone no gradient).

    Args:
        keypoints_Jx2: projected joints, normalized crop coordinates.
        outside_HxW: `input_pipeline.outside_distance` of the target mask.
        samples: points per bone, ends included.

    Returns:
        Scalar, normalized crop units.
    """
    return jnp.mean(sample_outside_distance(bone_points(keypoints_Jx2, samples), outside_HxW))


def coverage_loss(keypoints_Jx2, mask_HxW, weight_HxW, radius):
    """L_cover of one mask: foreground pixels pay their distance to the nearest bone beyond radius.

    mean over foreground pixels (mask >= 0.5), weighted by W, of max(d(p) - radius, 0): a
    silhouette left uncovered pulls the nearest bone toward it, and with geodesic weights the
    extremities (hands, feet: the largest weights) pull the end joints.

    Args:
        keypoints_Jx2: projected joints, normalized crop coordinates.
        mask_HxW: foreground mask in [0, 1].
        weight_HxW: pixel weights (geodesic weights or ones).
        radius: body radius in normalized crop units: pixels this close to a bone are covered.

    Returns:
        Scalar, normalized crop units (0 for an empty mask).
    """
    size = mask_HxW.shape[0]
    distance_HxW = jnp.sqrt(render.bone_distance_sq(keypoints_Jx2, size) + _SQRT_EPS_M2)
    fg_weight_HxW = jnp.where(mask_HxW >= 0.5, weight_HxW, 0.0)
    excess_HxW = jnp.maximum(distance_HxW - radius, 0.0)
    return jnp.sum(fg_weight_HxW * excess_HxW) / jnp.maximum(jnp.sum(fg_weight_HxW), 1e-6)


def _length_m(vec_Nx3_m):
    return jnp.sqrt(jnp.sum(vec_Nx3_m ** 2, axis=-1) + _SQRT_EPS_M2)


def symmetry_loss(joints_Jx3_mm):
    """L_sym of one 3D pose (any rigid frame), in metres^2.

    mean over the 6 mirrored limbs (`skeleton.SYMMETRIC_LIMBS`) of (|limb| - |mirror|)^2, plus
    the mean of |pelvis - hips' midpoint|^2 and |thorax - shoulders' midpoint|^2.

    Args:
        joints_Jx3_mm: joints in the 17-joint order, mm.

    Returns:
        Scalar loss, m^2.
    """
    joints_Jx3 = joints_Jx3_mm * _MM_TO_M
    limbs = np.array([limb for limb, _ in skeleton.SYMMETRIC_LIMBS])
    mirrors = np.array([mirror for _, mirror in skeleton.SYMMETRIC_LIMBS])
    length_L = _length_m(joints_Jx3[limbs[:, 1]] - joints_Jx3[limbs[:, 0]])
    mirror_length_L = _length_m(joints_Jx3[mirrors[:, 1]] - joints_Jx3[mirrors[:, 0]])
    pairs = np.array([_HIPS, _SHOULDERS])
    centres_2x3 = joints_Jx3[np.array([skeleton.PELVIS, skeleton.THORAX])]
    offset_2x3 = centres_2x3 - 0.5 * (joints_Jx3[pairs[:, 0]] + joints_Jx3[pairs[:, 1]])
    return (jnp.mean((length_L - mirror_length_L) ** 2)
            + jnp.mean(jnp.sum(offset_2x3 ** 2, axis=-1)))


def agreement_loss(joints_world_VxJx3_mm, view_valid_V):
    """L_agree of one example: mean root-aligned joint distance between views, in metres.

    Each view's world pose is moved so that its pelvis is at the origin; the loss is the mean,
    over ordered pairs of distinct valid views and over joints, of the Euclidean distance between
    the two poses' joints (an MPJPE between views). 0 with fewer than two valid views.

    Args:
        joints_world_VxJx3_mm: one world-frame pose per view, mm.
        view_valid_V: 1 for a real view, 0 for padding.

    Returns:
        Scalar loss, m.
    """
    num_views = joints_world_VxJx3_mm.shape[0]
    valid_V = jnp.asarray(view_valid_V, jnp.float32)
    rel_VxJx3 = (joints_world_VxJx3_mm
                 - joints_world_VxJx3_mm[:, skeleton.PELVIS:skeleton.PELVIS + 1]) * _MM_TO_M
    dist_VxV = jnp.mean(_length_m(rel_VxJx3[:, None] - rel_VxJx3[None, :]), axis=-1)
    pair_VxV = valid_V[:, None] * valid_V[None, :] * (1.0 - jnp.eye(num_views))
    return jnp.sum(pair_VxV * dist_VxV) / jnp.maximum(jnp.sum(pair_VxV), 1.0)


def oracle_loss(keypoints_VxJx3, targets_VxJx3, view_valid_V):
    """Supervised L1 between predicted and ground-truth 2.5D keypoints (oracle variant ONLY).

    Args:
        keypoints_VxJx3: detector output (x, y, z) per view.
        targets_VxJx3: `multiview.oracle_targets` of the true pose.
        view_valid_V: 1 for a real view, 0 for padding.

    Returns:
        Scalar mean absolute error over valid views, joints and coordinates.
    """
    valid_V = jnp.asarray(view_valid_V, jnp.float32)
    err_V = jnp.mean(jnp.abs(keypoints_VxJx3 - targets_VxJx3), axis=(1, 2))
    return jnp.sum(valid_V * err_V) / jnp.maximum(jnp.sum(valid_V), 1.0)


# --- Batched compositions --------------------------------------------------------------------


def view_valid(batch):
    """BxV float32 view_valid of a batch, 1 for a real view (all ones when it has none; the
    shape is that of the cameras, batch["extrinsics"]). Traced or on the host alike."""
    shape = jnp.shape(batch["extrinsics"])[:2]
    if "view_valid" in batch:
        return jnp.asarray(batch["view_valid"], jnp.float32).reshape(shape)
    return jnp.ones(shape, jnp.float32)


def safe_cameras(batch, valid_BxV):
    """crop, intrinsics, extrinsics, distortion with invalid views replaced by the first valid."""
    first_B = jnp.argmax(valid_BxV > 0, axis=1)
    out = []
    for key in ("crop", "intrinsics", "extrinsics", "distortion"):
        value = jnp.asarray(batch[key], jnp.float32)
        ref = jnp.take_along_axis(value, first_B.reshape((-1,) + (1,) * (value.ndim - 1)), 1)
        keep = (valid_BxV > 0).reshape(valid_BxV.shape + (1,) * (value.ndim - 2))
        out.append(jnp.where(keep, value, ref))
    return out


def _weighted_mean(values_BxP, weights_BxP):
    """Per-example weighted mean over the last axis, then the mean over examples."""
    per_example_B = (jnp.sum(weights_BxP * values_BxP, axis=1)
                     / jnp.maximum(jnp.sum(weights_BxP, axis=1), 1.0))
    return jnp.mean(per_example_B)


def _per_pair(fn):
    """Maps a per-mask function over the leading B and P axes."""
    return jax.vmap(jax.vmap(fn))


def mask_iou(pred_HxW, target_HxW):
    """IoU of two masks thresholded at 0.5 (0 when both are empty)."""
    pred, target = pred_HxW > 0.5, target_HxW > 0.5
    union = jnp.sum(pred | target)
    return jnp.sum(pred & target) / jnp.maximum(union, 1)


def view_pairs(num_views: int, loss_config):
    """The mask pairs p = (source pose v, target view w) of the per-view path, static tables.

    Returns:
        (source_P, target_P, phys_P): int arrays; the own views (v, v), and with cross-view on
        (and V >= 2) every ordered pair; phys_P indexes the pairs whose Physique Masks are drawn
        (the own views only unless loss_config.phys_cross_view: the network is the costly part).
    """
    if bool(loss_config.cross_view) and num_views >= 2:
        source_P, target_P = (a.reshape(-1) for a in np.meshgrid(
            np.arange(num_views), np.arange(num_views), indexing="ij"))
    else:
        source_P = target_P = np.arange(num_views)
    phys_P = (np.arange(len(source_P)) if bool(loss_config.phys_cross_view)
              else np.flatnonzero(source_P == target_P))
    return source_P, target_P, phys_P


def view_forward(keypoints_BxVxJx3, batch, loss_config, image_size, depth_range_mm,
                 capsule_width=None):
    """The forward model of the per-view path: keypoints and cameras -> 3D poses and masks.

    Per example: the pelvis is triangulated from the valid views (no gradient; single-view
    examples use `multiview.fallback_root_depth`), every view is lifted to 3D around it, and,
    with cross-view on and V >= 2, each view's pose is projected into every view. Skeleton Masks
    are drawn at N x N for every pair of `view_pairs` (own views from the predicted x, y
    directly). Nothing here is a loss, and no ground truth is read.

    Args:
        keypoints_BxVxJx3: detector output (x, y, z) per example and view, see `multiview`.
        batch: the cameras: intrinsics BxVx3x3, extrinsics BxVx3x4 (world -> camera, mm), crop
          BxVx2x3, distortion BxVx5, optional view_valid BxV (missing = all ones).
        loss_config: `config.loss` (body_width, cross_view, phys_cross_view, use_skel, use_phys).
        image_size: crop side N, pixels (static int).
        depth_range_mm: the detector's depth span (config.model.depth_range_mm), mm.
        capsule_width: None, or the squared width s_p (normalized units^2) of a fixed capsule
          body, drawn as "capsule_BxQxNxN" (`config.physique.kind = "capsules"`).

    Returns:
        dict: "valid_BxV", "root_depth_B" (mm, over valid views), "joints_cam_BxVxJx3" and
        "joints_world_BxVxJx3" (mm), and when a mask term is on "skel_BxPxNxN" (P pairs) and, with
        `capsule_width`, "capsule_BxQxNxN" (the pairs phys_P).
    """
    num_views, num_joints = keypoints_BxVxJx3.shape[1:3]
    draw = bool(loss_config.use_skel) or bool(loss_config.use_phys)
    size = int(image_size)
    body_width = float(loss_config.body_width)
    keypoints_BxVxJx3 = jnp.asarray(keypoints_BxVxJx3, jnp.float32)
    valid_BxV = view_valid(batch)
    crop, intrinsics, extrinsics, distortion = safe_cameras(batch, valid_BxV)
    source_P, target_P, phys_P = view_pairs(num_views, loss_config)
    own_P = source_P == target_P
    cross = not own_P.all()

    def per_example(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4,
                    distortion_Vx5, valid_V):
        pinhole_VxJx3 = multiview.pinhole_keypoints(keypoints_VxJx3, crop_Vx2x3,
                                                    intrinsics_Vx3x3, distortion_Vx5, size)
        root_world_3 = multiview.triangulate_root(pinhole_VxJx3, crop_Vx2x3, intrinsics_Vx3x3,
                                                  extrinsics_Vx3x4, size, valid_V, depth_range_mm)
        joints_cam_VxJx3, joints_world_VxJx3 = multiview.lift_views(
            pinhole_VxJx3, root_world_3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, size,
            depth_range_mm)
        root_depth_V = jax.vmap(lambda e: (e[:, :3] @ root_world_3 + e[:, 3])[2])(
            extrinsics_Vx3x4)
        out = {"root_depth": jnp.sum(valid_V * root_depth_V) / jnp.maximum(jnp.sum(valid_V), 1),
               "joints_cam_VxJx3": joints_cam_VxJx3, "joints_world_VxJx3": joints_world_VxJx3}
        if draw:
            own_VxJx2 = keypoints_VxJx3[:, :, :2]
            if cross:
                kp_VxVxJx2 = multiview.project_to_views(joints_world_VxJx3, crop_Vx2x3,
                                                        intrinsics_Vx3x3, extrinsics_Vx3x4,
                                                        distortion_Vx5, size)
                kp_PxJx2 = kp_VxVxJx2.reshape(-1, num_joints, 2)
                kp_PxJx2 = jnp.where(own_P[:, None, None], own_VxJx2[source_P], kp_PxJx2)
            else:
                kp_PxJx2 = own_VxJx2
            out["skel_PxNxN"] = jax.vmap(
                lambda k: render.skeleton_mask(k, size, body_width))(kp_PxJx2)
            if bool(loss_config.use_phys) and capsule_width is not None:
                out["capsule_QxNxN"] = jax.vmap(
                    lambda k: render.skeleton_mask(k, size, float(capsule_width)))(
                        kp_PxJx2[phys_P])
        return out

    # The profile label of root triangulation, lifting, cross-view projection and drawing.
    with jax.named_scope("rendering"):
        per = jax.vmap(per_example)(keypoints_BxVxJx3, crop, intrinsics, extrinsics, distortion,
                                    valid_BxV)
    renames = {"root_depth": "root_depth_B", "skel_PxNxN": "skel_BxPxNxN",
               "capsule_QxNxN": "capsule_BxQxNxN", "joints_cam_VxJx3": "joints_cam_BxVxJx3",
               "joints_world_VxJx3": "joints_world_BxVxJx3"}
    return {"valid_BxV": valid_BxV, **{renames[k]: v for k, v in per.items()}}


def physique_input(forward, loss_config):
    """The Skeleton Masks the Physique network draws from: MxNxN, M = B x Q (pairs phys_P)."""
    skel_BxPxNxN = forward["skel_BxPxNxN"]
    _, _, phys_P = view_pairs(forward["valid_BxV"].shape[1], loss_config)
    return skel_BxPxNxN[:, phys_P].reshape((-1,) + skel_BxPxNxN.shape[2:])


def view_terms(forward, phys_BxQxNxN, batch, loss_config):
    """The unsupervised loss terms of the per-view path, from `view_forward`'s output.

    Args:
        forward: `view_forward(...)` of the batch.
        phys_BxQxNxN: the Physique Masks of the pairs phys_P (the network on `physique_input`,
          reshaped, or forward["capsule_BxQxNxN"]); None without use_phys.
        batch: mask and weight BxVxNxN (the foreground masks and geodesic weights).
        loss_config: `config.loss` (clip_threshold, use_geodesic, background_scale, the switches).

    Returns:
        dict of scalars: the terms "skel", "phys", "sym" (m^2), "agree" (m), batch means, and the
        diagnostics "mask_iou" (Physique vs. foreground mask at 0.5, own views; 0 without
        use_phys), "skel_iou" (Skeleton vs. foreground mask at 0.5, own views; 0 when nothing is
        drawn), "root_depth_mm" (root depth over valid views) and "triangulated" (fraction of
        examples with >= 2 valid views). A switched-off term maps to 0.0.
    """
    valid_BxV = forward["valid_BxV"]
    num_views = valid_BxV.shape[1]
    use_skel, use_phys = bool(loss_config.use_skel), bool(loss_config.use_phys)
    use_agree = bool(loss_config.use_agree) and num_views >= 2
    zero = jnp.zeros((), jnp.float32)
    result = {name: zero for name in TERMS + DIAGNOSTICS}
    result["root_depth_mm"] = jnp.mean(forward["root_depth_B"])
    result["triangulated"] = jnp.mean((jnp.sum(valid_BxV > 0, axis=1) >= 2).astype(jnp.float32))
    if bool(loss_config.use_sym):
        sym_BxV = jax.vmap(jax.vmap(symmetry_loss))(forward["joints_cam_BxVxJx3"])
        result["sym"] = jnp.mean(jnp.sum(valid_BxV * sym_BxV, axis=1)
                                 / jnp.maximum(jnp.sum(valid_BxV, axis=1), 1.0))
    if use_agree:
        result["agree"] = jnp.mean(jax.vmap(agreement_loss)(forward["joints_world_BxVxJx3"],
                                                            valid_BxV))
    if not (use_skel or use_phys):
        return result

    source_P, target_P, phys_P = view_pairs(num_views, loss_config)
    valid_BxVx1x1 = valid_BxV[:, :, None, None] > 0
    mask_BxVxNxN = jnp.where(valid_BxVx1x1, jnp.asarray(batch["mask"], jnp.float32), 0.0)
    if bool(loss_config.use_geodesic):
        weight_BxVxNxN = jnp.where(valid_BxVx1x1, jnp.asarray(batch["weight"], jnp.float32), 0.0)
        weight_BxVxNxN = jnp.where(mask_BxVxNxN < 0.5,
                                   float(loss_config.background_scale) * weight_BxVxNxN,
                                   weight_BxVxNxN)
    else:
        weight_BxVxNxN = jnp.ones_like(mask_BxVxNxN)
    pair_BxP = valid_BxV[:, source_P] * valid_BxV[:, target_P]
    mask_BxPxNxN, weight_BxPxNxN = mask_BxVxNxN[:, target_P], weight_BxVxNxN[:, target_P]
    skel_BxPxNxN = forward["skel_BxPxNxN"]
    own_idx = np.flatnonzero(source_P == target_P)
    own_valid_BxV = pair_BxP[:, own_idx]
    result["skel_iou"] = _weighted_mean(
        _per_pair(mask_iou)(skel_BxPxNxN[:, own_idx], mask_BxPxNxN[:, own_idx]), own_valid_BxV)
    if use_skel:
        clip = float(loss_config.clip_threshold)
        skel_BxP = _per_pair(lambda s, m, w: skeleton_mask_loss(s, m, w, clip))(
            skel_BxPxNxN, mask_BxPxNxN, weight_BxPxNxN)
        result["skel"] = _weighted_mean(skel_BxP, pair_BxP)
    if use_phys:
        phys_BxQ = _per_pair(physique_loss)(phys_BxQxNxN, mask_BxPxNxN[:, phys_P],
                                            weight_BxPxNxN[:, phys_P])
        result["phys"] = _weighted_mean(phys_BxQ, pair_BxP[:, phys_P])
        own = np.searchsorted(phys_P, own_idx)
        result["mask_iou"] = _weighted_mean(
            _per_pair(mask_iou)(phys_BxQxNxN[:, own], mask_BxPxNxN[:, own_idx]), own_valid_BxV)
    return result


def mask_terms(keypoints_BxVxJx3, batch, physique_apply, loss_config, image_size,
               depth_range_mm, capsule_width=None):
    """The unsupervised loss terms of a batch (DESIGN §7-§8); no ground truth is read.

    Data flows one way: `view_forward` (keypoints, cameras -> poses and Skeleton Masks), the
    Physique Masks (`physique_apply` once on `physique_input`, or the fixed capsule body), then
    `view_terms` (the terms, against the masks).

    Args:
        keypoints_BxVxJx3, batch, loss_config, image_size, depth_range_mm, capsule_width: as in
          `view_forward` (batch also holds mask and weight BxVxNxN).
        physique_apply: MxNxN Skeleton Masks -> MxNxN Physique Masks (the caller closes over the
          physique parameters and decides their stop-gradients); called once, only if use_phys
          and capsule_width is None.

    Returns:
        `view_terms`' dict.
    """
    forward = view_forward(keypoints_BxVxJx3, batch, loss_config, image_size, depth_range_mm,
                           capsule_width)
    phys_BxQxNxN = None
    if bool(loss_config.use_phys):
        if capsule_width is None:
            skel_BxPxNxN = forward["skel_BxPxNxN"]
            phys_BxQxNxN = physique_apply(physique_input(forward, loss_config)).reshape(
                (skel_BxPxNxN.shape[0], -1) + skel_BxPxNxN.shape[2:])
        else:
            phys_BxQxNxN = forward["capsule_BxQxNxN"]
    return view_terms(forward, phys_BxQxNxN, batch, loss_config)


def oracle_terms(keypoints_BxVxJx3, batch, image_size, depth_range_mm):
    """The supervised oracle term (the `oracle` variant ONLY): L1 to ground-truth 2.5D targets.

    Args:
        keypoints_BxVxJx3: detector output (x, y, z) per example and view.
        batch: batch with joints_world BxJx3 (mm), crop, intrinsics, extrinsics, distortion and
          optional view_valid, shapes as in `mask_terms`.
        image_size: crop side N, pixels (static int).
        depth_range_mm: the detector's depth span, mm.

    Returns:
        {"oracle": scalar}, the batch mean of `oracle_loss`.
    """
    valid_BxV = view_valid(batch)
    crop, intrinsics, extrinsics, distortion = safe_cameras(batch, valid_BxV)
    targets_BxVxJx3 = jax.vmap(
        lambda j, c, k, e, d: multiview.oracle_targets(j, c, k, e, d, int(image_size),
                                                       depth_range_mm))(
        jnp.asarray(batch["joints_world"], jnp.float32), crop, intrinsics, extrinsics, distortion)
    targets_BxVxJx3 = jax.lax.stop_gradient(targets_BxVxJx3)
    loss_B = jax.vmap(oracle_loss)(jnp.asarray(keypoints_BxVxJx3, jnp.float32), targets_BxVxJx3,
                                   valid_BxV)
    return {"oracle": jnp.mean(loss_B)}
