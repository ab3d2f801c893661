"""One 3D pose per frame (DESIGN §7, "the direction now"): fuse the views, draw the fusion.

The detector predicts 2.5D keypoints per view. Here every joint is triangulated from the views'
predicted 2D into one world pose (weighted linear DLT, differentiable: the mask losses of every
view reach the 2D of every view through it), that pose is projected into every view's crop and
drawn, and the mask terms compare the drawings with the masks (a visual-hull fit, amortised by
the network). Each view's relative depth z learns from the fused pose's depth in that camera and
its 2D from the fused pose's reprojection (stop-gradient targets: self-supervised depth, as in
EpipolarPose, Kocabas et al. CVPR 2019).

- `draw_pose` (the forward model of ONE world pose in V views: projections, Skeleton Masks, the
  fixed body), `pose_terms` (its terms, from that drawing and the masks) and `pose_mask_terms`,
  the two with the Physique Masks between them (pure; also the objective of
  `experiments/fit.py`, the per-example fitting harness).
- `pose_objective`: their weighted sum, the objective of every fit below.
- `fuse_views`: the world pose of one example from its views' 2D; `consistent_labels` first
  makes the views' left/right labels agree (an option).
- `refine_pose`: K Adam steps of those terms from a pose (the network-in-the-loop fit).
- `template_starts`, `template_fit`: a pose from the masks alone, the standing template fitted
  at K yaws (the harness's start, and the fit cache's first entries, maskpose_jax/fit_cache.py).
- `example_pose`: the world pose scored for one example's detector output (fused, or the one
  view lifted); `fused_terms`: the batched training terms of a detector output.

No ground truth is read anywhere in this module. Units: mm and normalized crop coordinates.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from maskpose_jax import geometry
from maskpose_jax import losses
from maskpose_jax import multiview
from maskpose_jax import render
from maskpose_jax import skeleton

# Terms of `pose_mask_terms` (per example) and the extra ones of `fused_terms`.
POSE_TERMS = ("skel", "phys", "inside", "cover", "sym", "proportion", "bend", "stance")
FUSED_TERMS = POSE_TERMS + ("depth", "reproject")


def proportion_loss(joints_Jx3_mm):
    """L_proportion: squared log-ratio of every limb's share of the skeleton to the template's.

    An anatomy prior, not a label: `skeleton.STANDING_TEMPLATE_MM`'s limb lengths, each divided by
    their sum, are the proportions of a generic adult. Scale-free, so any body size pays nothing.

    Args:
        joints_Jx3_mm: one pose, any rigid frame, mm.

    Returns:
        Scalar, mean over the 16 limbs of log(share / template share)^2.
    """
    template_Jx3 = np.asarray(skeleton.STANDING_TEMPLATE_MM, np.float64)
    limbs = np.array(skeleton.LIMBS)
    template_L = np.linalg.norm(template_Jx3[limbs[:, 1]] - template_Jx3[limbs[:, 0]], axis=-1)
    share_template_L = (template_L / template_L.sum()).astype(np.float32)
    length_L = jnp.sqrt(jnp.sum((joints_Jx3_mm[limbs[:, 1]] - joints_Jx3_mm[limbs[:, 0]]) ** 2,
                                axis=-1) + 1e-6)
    share_L = length_L / jnp.sum(length_L)
    return jnp.mean(jnp.log(share_L / share_template_L + 1e-6) ** 2)


def bend_loss(joints_Jx3_mm):
    """L_bend: knees bend one way only, an anatomy prior (not a label).

    With the left axis l = l_hip - r_hip, a knee flexes so that (thigh x shin) . l >= 0 (the shin
    swings back); per knee the loss is max(0, -(unit thigh x unit shin) . unit l)^2. Elbows are left
    out: their hinge axis turns with the upper arm, not with the body.

    Args:
        joints_Jx3_mm: one pose, any rigid frame, mm.

    Returns:
        Scalar, mean over the two knees (0 for any pose whose knees bend forward or not at all).
    """
    j = skeleton.JOINT_INDEX

    def unit(v):
        return v / jnp.sqrt(jnp.sum(v ** 2, axis=-1, keepdims=True) + 1e-6)

    left_3 = unit(joints_Jx3_mm[j["l_hip"]] - joints_Jx3_mm[j["r_hip"]])
    legs = np.array([[j["r_hip"], j["r_knee"], j["r_ankle"]], [j["l_hip"], j["l_knee"], j["l_ankle"]]])
    thigh_2x3 = unit(joints_Jx3_mm[legs[:, 1]] - joints_Jx3_mm[legs[:, 0]])
    shin_2x3 = unit(joints_Jx3_mm[legs[:, 2]] - joints_Jx3_mm[legs[:, 1]])
    return jnp.mean(jnp.maximum(-jnp.cross(thigh_2x3, shin_2x3) @ left_3, 0.0) ** 2)


def stance_loss(joints_Jx3_mm):
    """L_stance: a weak prior toward a generic standing pose, whatever the pose's orientation.

    `skeleton.STANDING_TEMPLATE_MM`, scaled to the pose's size and rotated onto it (Kabsch about
    the pelvis; no gradient through the fit), is compared joint by joint: mean squared distance
    in m^2. A prior of a mean pose, not a label: it holds joints that the masks leave undecided
    near where people usually have them.

    Args:
        joints_Jx3_mm: one pose, any rigid frame, mm.

    Returns:
        Scalar, m^2.
    """
    template_Jx3 = jnp.asarray(skeleton.STANDING_TEMPLATE_MM, jnp.float32)
    rel_Jx3 = joints_Jx3_mm - joints_Jx3_mm[skeleton.PELVIS]
    target_Jx3 = jax.lax.stop_gradient(
        geometry.align_similarity(template_Jx3, rel_Jx3, scale=True))
    return jnp.mean(jnp.sum((rel_Jx3 - target_Jx3) ** 2, axis=-1)) * 1e-6


def project_pose(joints_world_Jx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, distortion_Vx5,
                 image_size):
    """One world pose in every view's crop: VxJx2 normalized crop coordinates (with distortion)."""
    return multiview.project_to_views(joints_world_Jx3[None], crop_Vx2x3, intrinsics_Vx3x3,
                                      extrinsics_Vx3x4, distortion_Vx5, image_size)[0]


# Hand tips continue the forearm by this share of its length; toes point forward this far, mm.
_HAND_SHARE = 0.5
_FOOT_LENGTH_MM = 150.0


def body_points(joints_world_Jx3):
    """The joints and the four points of `skeleton.BODY_BONES`: (J + 4)x3, mm.

    Hand tips continue each forearm; toes lie forward of each ankle, forward being the
    horizontal-ish direction left hip - right hip crossed with pelvis -> thorax (the facing).
    """
    j = skeleton.JOINT_INDEX
    left_3 = joints_world_Jx3[j["l_hip"]] - joints_world_Jx3[j["r_hip"]]
    up_3 = joints_world_Jx3[skeleton.THORAX] - joints_world_Jx3[skeleton.PELVIS]
    forward_3 = jnp.cross(left_3, up_3)
    forward_3 = forward_3 / jnp.sqrt(jnp.sum(forward_3 ** 2) + 1e-6)
    hands_2x3 = joints_world_Jx3[np.array([j["l_wrist"], j["r_wrist"]])] + _HAND_SHARE * (
        joints_world_Jx3[np.array([j["l_wrist"], j["r_wrist"]])]
        - joints_world_Jx3[np.array([j["l_elbow"], j["r_elbow"]])])
    toes_2x3 = (joints_world_Jx3[np.array([j["r_ankle"], j["l_ankle"]])]
                + _FOOT_LENGTH_MM * forward_3)
    return jnp.concatenate([joints_world_Jx3, hands_2x3, toes_2x3])


def _body_masks(joints_world_Jx3, views, size, radii_mm, body_scale=1.0):
    """The generic body (`body_points`, bone radii in mm) drawn in every view at its scale there.

    A soft capsule exp(-d^2 / s) is 0.5 at d = sqrt(s ln 2), so a bone of radius r mm drawn in a
    view where one mm spans k normalized units gets s = (k r)^2 / ln 2; k = 2 a f / ((N - 1) Z)
    with a the crop's scale, f the focal length and Z the pose's pelvis depth (no gradient).
    """
    reference = max(radii_mm)
    scales = tuple((r / reference) ** 2 for r in radii_mm)
    kp_VxPx2 = project_pose(body_points(joints_world_Jx3), views["crop"], views["intrinsics"],
                            views["extrinsics"], views["distortion"], size)

    def one(kp_Px2, crop_2x3, intrinsics_3x3, extrinsics_3x4):
        depth = geometry.cam_from_world(joints_world_Jx3[skeleton.PELVIS][None],
                                        extrinsics_3x4)[0, 2]
        depth = jax.lax.stop_gradient(jnp.maximum(depth, multiview.MIN_DEPTH_MM))
        scale = jnp.sqrt(jnp.abs(crop_2x3[0, 0] * crop_2x3[1, 1] - crop_2x3[0, 1] * crop_2x3[1, 0]))
        focal = jnp.sqrt(jnp.abs(intrinsics_3x3[0, 0] * intrinsics_3x3[1, 1]))
        per_mm = 2.0 * scale * focal / ((size - 1) * depth)
        width = (per_mm * reference * body_scale) ** 2 / np.log(2.0)
        return render.skeleton_mask(kp_Px2, size, width, skeleton.BODY_BONES, scales)

    return jax.vmap(one)(kp_VxPx2, views["crop"], views["intrinsics"], views["extrinsics"])


def _masked_mean(values_V, valid_V):
    return jnp.sum(valid_V * values_V) / jnp.maximum(jnp.sum(valid_V), 1.0)


def draw_pose(joints_world_Jx3, views, loss_config, image_size, capsule_width=None,
              body_radii_mm=None, body_scale=1.0):
    """The forward model of one world pose in V calibrated views: projections and masks.

    Args:
        joints_world_Jx3: the pose, world frame, mm.
        views: dict of one example's per-view arrays (`example_views`): crop, intrinsics,
          extrinsics, distortion.
        loss_config: `config.loss` (body_width, use_phys).
        image_size: crop side N (static int).
        capsule_width: squared width of a fixed capsule body (drawn when not None).
        body_radii_mm: per-bone radii of a body drawn at its size in mm (drawn when not None).
        body_scale: width factor of the capsule or mm body (a traced scalar is fine).

    Returns:
        dict: "kp_VxJx2" (normalized crop coordinates), "skel_VxNxN" (the Skeleton Masks) and,
        with use_phys and a fixed body, "body_VxNxN" (its Physique Masks).
    """
    size = int(image_size)
    kp_VxJx2 = project_pose(joints_world_Jx3, views["crop"], views["intrinsics"],
                            views["extrinsics"], views["distortion"], size)
    out = {"kp_VxJx2": kp_VxJx2,
           "skel_VxNxN": jax.vmap(lambda k: render.skeleton_mask(
               k, size, float(loss_config.body_width)))(kp_VxJx2)}
    if loss_config.use_phys:
        if body_radii_mm is not None:
            out["body_VxNxN"] = _body_masks(joints_world_Jx3, views, size, body_radii_mm,
                                            body_scale)
        elif capsule_width is not None:
            width = float(capsule_width) * body_scale ** 2
            out["body_VxNxN"] = jax.vmap(lambda k: render.skeleton_mask(k, size, width))(kp_VxJx2)
    return out


def pose_terms(joints_world_Jx3, drawn, phys_VxNxN, views, loss_config):
    """The unsupervised terms of one world pose, from its drawing (`draw_pose`) and the masks.

    Per view, with the switches of `loss_config`: skel (the paper's clipped Skeleton Mask term,
    `losses.skeleton_mask_loss`), phys (`phys_VxNxN` against the mask), inside
    (`losses.inside_loss`) and cover (`losses.coverage_loss`), averaged over valid views; and
    per pose sym (`losses.symmetry_loss`), proportion, bend and stance.

    Args:
        joints_world_Jx3: the pose, world frame, mm.
        drawn: `draw_pose(joints_world_Jx3, views, ...)`.
        phys_VxNxN: the Physique Masks (drawn["body_VxNxN"], or the network on
          drawn["skel_VxNxN"]); None without use_phys.
        views: mask, weight (background pixels already scaled), outside_distance VxNxN and
          valid [V] of one example (`example_views`).
        loss_config: `config.loss` (clip_threshold, cover_radius, use_skel, use_phys,
          use_inside, use_cover, use_sym, use_proportion, use_bend, use_stance).

    Returns:
        dict: every term of POSE_TERMS (0 when switched off) and the diagnostic "skel_iou"
        (Skeleton Mask against the mask at 0.5).
    """
    valid_V = views["valid"]
    kp_VxJx2, skel_VxNxN = drawn["kp_VxJx2"], drawn["skel_VxNxN"]
    mask_VxNxN, weight_VxNxN = views["mask"], views["weight"]
    zero = jnp.zeros((), jnp.float32)
    out = {name: zero for name in POSE_TERMS}
    out["skel_iou"] = _masked_mean(jax.vmap(losses.mask_iou)(skel_VxNxN, mask_VxNxN), valid_V)
    if loss_config.use_skel:
        clip = float(loss_config.clip_threshold)
        out["skel"] = _masked_mean(jax.vmap(
            lambda s, m, w: losses.skeleton_mask_loss(s, m, w, clip))(
                skel_VxNxN, mask_VxNxN, weight_VxNxN), valid_V)
    if loss_config.use_phys:
        out["phys"] = _masked_mean(jax.vmap(losses.physique_loss)(
            phys_VxNxN, mask_VxNxN, weight_VxNxN), valid_V)
    if loss_config.use_inside:
        out["inside"] = _masked_mean(jax.vmap(losses.inside_loss)(
            kp_VxJx2, views["outside_distance"]), valid_V)
    if loss_config.use_cover:
        radius = float(loss_config.cover_radius)
        out["cover"] = _masked_mean(jax.vmap(
            lambda k, m, w: losses.coverage_loss(k, m, w, radius))(
                kp_VxJx2, mask_VxNxN, weight_VxNxN), valid_V)
    if loss_config.use_sym:
        out["sym"] = losses.symmetry_loss(joints_world_Jx3)
    if loss_config.use_proportion:
        out["proportion"] = proportion_loss(joints_world_Jx3)
    if loss_config.use_bend:
        out["bend"] = bend_loss(joints_world_Jx3)
    if loss_config.use_stance:
        out["stance"] = stance_loss(joints_world_Jx3)
    return out


def pose_mask_terms(joints_world_Jx3, views, loss_config, image_size, physique_apply=None,
                    capsule_width=None, body_radii_mm=None, body_scale=1.0):
    """The unsupervised terms of one world pose seen by V calibrated views: `draw_pose`, the
    Physique Masks (the fixed body's, or `physique_apply` on the Skeleton Masks), `pose_terms`.

    Args:
        joints_world_Jx3, views, loss_config, image_size, capsule_width, body_radii_mm,
          body_scale: as in `draw_pose` and `pose_terms`.
        physique_apply: VxNxN Skeleton Masks -> Physique Masks, or None (a fixed body, or no
          physique term).

    Returns:
        `pose_terms`' dict, and the projected keypoints "kp_VxJx2".
    """
    drawn = draw_pose(joints_world_Jx3, views, loss_config, image_size, capsule_width,
                      body_radii_mm, body_scale)
    phys_VxNxN = drawn.get("body_VxNxN")
    if loss_config.use_phys and phys_VxNxN is None:
        phys_VxNxN = physique_apply(drawn["skel_VxNxN"])
    return {**pose_terms(joints_world_Jx3, drawn, phys_VxNxN, views, loss_config),
            "kp_VxJx2": drawn["kp_VxJx2"]}


def fuse_views(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, valid_V,
               image_size):
    """Every joint triangulated from the views' predicted 2D: the example's one world pose.

    Weighted linear DLT (`geometry.triangulate`, weights = valid), differentiable in the 2D,
    of keypoints in pinhole coordinates (`multiview.pinhole_keypoints`). Needs >= 2 valid views.

    Returns:
        Jx3 world joints, mm.
    """
    uv_VxJx2 = jax.vmap(multiview.full_px_from_normalized, (0, 0, None))(
        keypoints_VxJx3[..., :2], crop_Vx2x3, image_size)
    proj_Vx3x4 = jax.vmap(geometry.projection_matrix)(intrinsics_Vx3x3, extrinsics_Vx3x4)
    weights_VxJ = jnp.broadcast_to(valid_V[:, None], uv_VxJx2.shape[:2])
    # The ridge (normal matrix ~ the valid view count) moves a pose 5 m away by ~5e-3 mm and
    # keeps the discarded solve of a single-view example finite.
    return geometry.triangulate(uv_VxJx2, proj_Vx3x4, weights_VxJ, ridge=1e-6)


def consistent_labels(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, valid_V,
                      image_size):
    """The views' keypoints with left and right exchanged in the views that disagree.

    One image rarely tells a person's left leg from the right, so the views of one frame may
    label them differently, and a triangulation that mixes them puts both legs between the two.
    Every pattern of exchanged views (2^(V-1), the first view kept) of the keypoints, in pinhole
    coordinates (`multiview.pinhole_keypoints`), is triangulated (`fuse_views`); the pattern
    whose fused pose reprojects through the pinholes closest to the relabelled 2D (mean
    distance over valid views and joints, normalized crop units) wins, or its complement when
    that exchanges fewer of the valid views (the same pose, relabelled: the majority's labels).
    The choice carries no gradient; the exchanged keypoints do.

    Returns:
        VxJx3 keypoints, each view as predicted or with `skeleton.FLIP_PERMUTATION` applied.
    """
    num_views = keypoints_VxJx3.shape[0]
    flip = np.asarray(skeleton.FLIP_PERMUTATION)
    patterns_PxV = np.array([[(p >> v) & 1 for v in range(num_views)]
                             for p in range(0, 2 ** num_views, 2)], bool)

    def relabel(pattern_V, kp_VxJx3):
        return jnp.where(pattern_V[:, None, None], kp_VxJx3[:, flip], kp_VxJx3)

    def residual(pattern_V):
        kp_VxJx3 = jax.lax.stop_gradient(relabel(pattern_V, keypoints_VxJx3))
        world_Jx3 = fuse_views(kp_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, valid_V,
                               image_size)
        xy_VxJx2 = project_pose(world_Jx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4,
                                pinhole_Vx5, image_size)
        distance_V = jnp.mean(jnp.linalg.norm(xy_VxJx2 - kp_VxJx3[..., :2], axis=-1), axis=-1)
        return _masked_mean(distance_V, valid_V)

    pinhole_Vx5 = jnp.zeros((num_views, 5), keypoints_VxJx3.dtype)  # pinhole keypoints
    patterns = jnp.asarray(patterns_PxV)
    best_V = patterns[jnp.argmin(jax.vmap(residual)(patterns))]
    exchanged = jnp.sum(best_V * valid_V)
    best_V = jnp.where(exchanged > jnp.sum(valid_V) / 2, ~best_V, best_V)
    return relabel(best_V, keypoints_VxJx3)


def template_starts(views, restarts):
    """BxKx17x3 standing templates (mm) at K yaws about Z, centred on the masks' triangulated
    centre (the mask centroids of the views, triangulated): a start that reads no truth."""
    size = views["mask"].shape[-1]
    x_NxN, y_NxN = render.pixel_grid(size)

    def centre(example):
        mass_V = jnp.maximum(jnp.sum(example["mask"], axis=(1, 2)), 1e-6)
        xy_Vx2 = jnp.stack([jnp.sum(example["mask"] * x_NxN, axis=(1, 2)),
                            jnp.sum(example["mask"] * y_NxN, axis=(1, 2))], -1) / mass_V[:, None]
        uv_Vx2 = jax.vmap(multiview.full_px_from_normalized, (0, 0, None))(
            xy_Vx2[:, None], example["crop"], size)
        proj_Vx3x4 = jax.vmap(geometry.projection_matrix)(example["intrinsics"],
                                                           example["extrinsics"])
        return geometry.triangulate(uv_Vx2, proj_Vx3x4, example["valid"][:, None])[0]

    centre_Bx3 = jax.vmap(centre)(views)
    template_Jx3 = np.asarray(skeleton.STANDING_TEMPLATE_MM, np.float32)
    template_Jx3 = template_Jx3 - template_Jx3.mean(axis=0)
    yaws = 2 * np.pi * np.arange(restarts) / restarts
    rotated_KxJx3 = jnp.stack([template_Jx3 @ geometry.rotation_about_z(a).T for a in yaws])
    return centre_Bx3[:, None, None, :] + rotated_KxJx3[None]


def relative_depths(joints_world_Jx3, extrinsics_Vx3x4, depth_range_mm):
    """VxJ: each joint's camera depth minus the pelvis's, in the detector's z units."""
    def one(extrinsics_3x4):
        depth_J = geometry.cam_from_world(joints_world_Jx3, extrinsics_3x4)[:, 2]
        return (depth_J - depth_J[skeleton.PELVIS]) / (depth_range_mm / 2.0)
    return jax.vmap(one)(extrinsics_Vx3x4)


def example_views(batch, loss_config):
    """The per-view inputs of `pose_mask_terms` for a batch: invalid views made harmless, and
    the background weights scaled by `loss_config.background_scale` (uniform without geodesic)."""
    valid_BxV = losses.view_valid(batch)
    crop, intrinsics, extrinsics, distortion = losses.safe_cameras(batch, valid_BxV)
    keep_BxVx1x1 = valid_BxV[:, :, None, None] > 0
    mask = jnp.where(keep_BxVx1x1, jnp.asarray(batch["mask"], jnp.float32), 0.0)
    if bool(loss_config.use_geodesic):
        weight = jnp.where(keep_BxVx1x1, jnp.asarray(batch["weight"], jnp.float32), 0.0)
        weight = jnp.where(mask < 0.5, float(loss_config.background_scale) * weight, weight)
    else:
        weight = jnp.ones_like(mask)
    outside = jnp.where(keep_BxVx1x1, jnp.asarray(batch["outside_distance"], jnp.float32), 0.0)
    return dict(mask=mask, weight=weight, outside_distance=outside, crop=crop,
                intrinsics=intrinsics, extrinsics=extrinsics, distortion=distortion,
                valid=valid_BxV)


def pose_objective(joints_world_Jx3, example, loss_config, image_size, weights,
                   capsule_width=None, body_radii_mm=None, body_scale=1.0):
    """The weighted sum of `pose_mask_terms` (terms of POSE_TERMS not in `weights` weigh 0): the
    objective of the network-in-the-loop fit and of its cache (no physique network)."""
    terms = pose_mask_terms(joints_world_Jx3, example, loss_config, image_size, None,
                            capsule_width, body_radii_mm, body_scale)
    return sum(weights[t] * terms[t] for t in POSE_TERMS if t in weights)


def refine_pose(joints_world_Jx3, example, loss_config, image_size, weights, steps, lr_mm,
                capsule_width=None, body_radii_mm=None, body_scale=1.0):
    """`steps` Adam steps (learning rate `lr_mm`) of the weighted POSE_TERMS from a start pose.

    The network-in-the-loop fit (SPIN, Kolotouros et al. ICCV 2019): started from the network's
    own fused pose, the fit is a better pose than the prediction, and teaches it (stop-gradient).
    Needs a fixed body (capsules or the mm body) when the physique term is on: ValueError else.

    Args:
        joints_world_Jx3: the start, world frame, mm (no gradient flows through the result).
        example: one example's views (`example_views`).
        weights: dict term -> weight (scalars; terms of POSE_TERMS not in it weigh 0).
        steps: Adam steps (static int).
        lr_mm: Adam learning rate, mm.

    Returns:
        Jx3 refined world joints, mm (stop-gradient).
    """
    if loss_config.use_phys and capsule_width is None and body_radii_mm is None:
        raise ValueError("config.loss.refine_steps > 0 needs a fixed body (physique.kind "
                         "'capsules' or 'body'): the physique network has nothing to fit with")

    def total(joints_Jx3):
        return pose_objective(joints_Jx3, example, loss_config, image_size, weights,
                              capsule_width, body_radii_mm, body_scale)

    optimizer = optax.adam(float(lr_mm))

    def step(carry, _):
        joints_Jx3, opt_state = carry
        updates, opt_state = optimizer.update(jax.grad(total)(joints_Jx3), opt_state)
        return (optax.apply_updates(joints_Jx3, updates), opt_state), None

    start_Jx3 = jax.lax.stop_gradient(joints_world_Jx3)
    (joints_Jx3, _), _ = jax.lax.scan(step, (start_Jx3, optimizer.init(start_Jx3)), None,
                                      length=int(steps))
    return jax.lax.stop_gradient(joints_Jx3)


def template_fit(views, loss_config, image_size, weights, steps, restarts, lr_mm,
                 choose_after=0, capsule_width=None, body_radii_mm=None, body_scale=1.0):
    """Per example, the best of `restarts` fits of the standing template: a pose from masks alone.

    Every example's template (`template_starts`, K yaws) is fitted by `refine_pose` and the yaw
    of lowest `pose_objective` kept; the same as experiments/fit.py's template start. With
    `choose_after` > 0 the yaws are fitted that many steps, and only the best continues for the
    remaining `steps - choose_after` (a fresh Adam): the cost of one fit plus the short ones.

    Args:
        views: a batch of `example_views` (B examples).
        weights: dict term -> weight of the objective (`pose_objective`).
        steps, restarts, choose_after: Adam steps, yaws and the steps before the choice (static).
        lr_mm: Adam learning rate, mm.

    Returns:
        BxJx3 world joints, mm (no gradient).
    """
    first = int(choose_after) if 0 < int(choose_after) < int(steps) else int(steps)
    starts_BxKxJx3 = template_starts(views, int(restarts))

    def one(starts_KxJx3, example):
        def fit(start_Jx3, count):
            return refine_pose(start_Jx3, example, loss_config, image_size, weights, count,
                               lr_mm, capsule_width, body_radii_mm, body_scale)

        fits_KxJx3 = jax.vmap(lambda start: fit(start, first))(starts_KxJx3)
        loss_K = jax.vmap(lambda j: pose_objective(j, example, loss_config, image_size, weights,
                                                   capsule_width, body_radii_mm,
                                                   body_scale))(fits_KxJx3)
        best_Jx3 = fits_KxJx3[jnp.argmin(loss_K)]
        if first < int(steps):
            best_Jx3 = fit(best_Jx3, int(steps) - first)
        return best_Jx3

    return jax.vmap(one)(starts_BxKxJx3, views)


def example_pose(keypoints_VxJx3, example, loss_config, image_size, depth_range_mm):
    """The world pose (Jx3, mm) that the fused path scores for one example's detector output,
    and the keypoints it was triangulated from (VxJx3, `multiview.pinhole_keypoints`: the
    lenses undone once, for every later lift of the same keypoints).

    With two valid views or more, the views' 2D fused (`fuse_views`; with
    loss_config.consistent_labels the views' left/right labels made to agree first). A
    single-view example (a padded mixture entry) has nothing to fuse: its pose is its own view
    lifted at the crop-scale root depth. The triangulation of the root (over every view, padding
    included, so that the solve stays finite) is computed either way, and discarded when fused.
    """
    size = int(image_size)
    valid_V = example["valid"]
    cameras = (example["crop"], example["intrinsics"], example["extrinsics"])
    multi = jnp.sum(valid_V) >= 2
    # Triangulation and lifting see the rays of the keypoints: each lens undone once.
    pinhole_VxJx3 = multiview.pinhole_keypoints(keypoints_VxJx3, example["crop"],
                                                example["intrinsics"], example["distortion"],
                                                size)
    root_world_3 = multiview.triangulate_root(pinhole_VxJx3, *cameras, size, valid_V,
                                              depth_range_mm)
    _, lifted_VxJx3 = multiview.lift_views(pinhole_VxJx3, root_world_3, *cameras, size,
                                           depth_range_mm)
    joints_world_Jx3 = lifted_VxJx3[jnp.argmax(valid_V)]
    if keypoints_VxJx3.shape[0] >= 2:
        fuse_valid_V = jnp.where(multi, valid_V, 1.0)
        fuse_input_VxJx3 = pinhole_VxJx3
        if bool(loss_config.consistent_labels):  # only the fusion sees the exchanged labels;
            # the targets teach the raw ones
            fuse_input_VxJx3 = consistent_labels(pinhole_VxJx3, *cameras, fuse_valid_V, size)
        fused_Jx3 = fuse_views(fuse_input_VxJx3, *cameras, fuse_valid_V, size)
        joints_world_Jx3 = jnp.where(multi, fused_Jx3, joints_world_Jx3)
    return joints_world_Jx3, pinhole_VxJx3


def fused_terms(keypoints_BxVxJx3, batch, physique_apply, loss_config, image_size,
                depth_range_mm, capsule_width=None, body_radii_mm=None, body_scale=1.0,
                refine_weights=None, cache=None):
    """The unsupervised training terms of a batch through one fused pose per example.

    Per example: the views' 2D are fused (`fuse_views`), `pose_mask_terms` scores the fused pose
    in every view, and two stop-gradient targets teach each view the fused pose: depth = mean
    |z - relative depth of the fused pose in that camera| and reproject = mean |xy - projection
    of the fused pose| (normalized crop units). An example with one valid view is scored through
    its own lifted pose (DESIGN §7: single-view examples use their own view's terms).

    Args:
        keypoints_BxVxJx3: detector output per example and view.
        batch: training batch (mask, weight, outside_distance, cameras, optional view_valid).
        physique_apply: MxNxN Skeleton Masks -> Physique Masks (network kind), or None.
        loss_config: `config.loss`.
        image_size: crop side N (static int).
        depth_range_mm: the detector's depth span, mm.
        capsule_width: the capsule body's squared width, or None.
        body_radii_mm: the generic body's bone radii, mm, or None (`pose_mask_terms`).
        body_scale: width factor of the fixed body (coarse to fine).
        refine_weights: with `loss_config.refine_steps` > 0, the term weights of the
            network-in-the-loop fit (`refine_pose`): the depth and reproject targets are then the
            fused pose refined by that fit, not the fused pose itself.
            With `loss_config.refine_swap` every start is also tried with left and right
            exchanged (`skeleton.FLIP_PERMUTATION`), the fit starting from the lower objective:
            the masks hardly tell a pose from its relabelling, the body's toes and the knee prior
            do.
        cache: with refinement, the fit cache's entries of this batch (SPIN's dictionary of
            fits): {"joints": BxJx3 world joints, mm; "filled": B, 1 where an entry is held}.
            Per example the fit starts from whichever of the cached pose and the fused pose
            scores the lower objective now (`pose_objective`, this step's weights), and the
            new entry is the better of that start and its refinement: an example's fit improves
            over its visits. No gradient reaches the cache.

    Returns:
        dict of batch means: FUSED_TERMS and the diagnostics "skel_iou", "view_gap_mm" (mean
        distance between each view's own lifted pose, at the fused pelvis, and the fused pose)
        and "refine_mm" (mean distance from the fused pose to the depth / reproject target; 0
        without refinement). With a cache also "cache_used" (share of examples whose fit started
        from the cached pose) and, not averaged, "cache_joints_BxJx3" (the new entries); with
        refine_swap "refine_swapped" (share of fits started from a relabelled pose)
    """
    size = int(image_size)
    keypoints_BxVxJx3 = jnp.asarray(keypoints_BxVxJx3, jnp.float32)
    views = example_views(batch, loss_config)
    refine_steps = int(loss_config.refine_steps)
    swap = bool(loss_config.refine_swap)
    if refine_steps and refine_weights is None:
        raise ValueError("config.loss.refine_steps > 0: fused_terms needs refine_weights")
    if cache is not None and not refine_steps:
        raise ValueError("a fit cache needs config.loss.refine_steps > 0")
    num_examples = keypoints_BxVxJx3.shape[0]
    if cache is None:  # vmapped placeholders, never read
        cached = dict(joints=jnp.zeros((num_examples, 1, 1)), filled=jnp.zeros((num_examples,)))
    else:
        cached = dict(joints=jnp.asarray(cache["joints"], jnp.float32),
                      filled=jnp.asarray(cache["filled"], jnp.float32))

    def objective(joints_Jx3, example):
        return pose_objective(joints_Jx3, example, loss_config, size, refine_weights,
                              capsule_width, body_radii_mm, body_scale)

    def per_example(keypoints_VxJx3, example, cached):
        valid_V = example["valid"]
        joints_world_Jx3, pinhole_VxJx3 = example_pose(keypoints_VxJx3, example, loss_config,
                                                       size, depth_range_mm)
        out = pose_mask_terms(joints_world_Jx3, example, loss_config, size, physique_apply,
                              capsule_width, body_radii_mm, body_scale)
        target = jax.lax.stop_gradient(joints_world_Jx3)
        xy_VxJx2 = jax.lax.stop_gradient(out.pop("kp_VxJx2"))
        out["refine_mm"] = jnp.zeros((), jnp.float32)
        if refine_steps:
            # Candidate starts: the fused pose, and the cached fit; with refine_swap each also
            # with left and right exchanged. The fit starts from the lowest objective.
            flip = np.asarray(skeleton.FLIP_PERMUTATION)
            starts = [target] + ([target[flip]] if swap else [])
            held = []
            if cache is not None:
                held = [cached["joints"]] + ([cached["joints"][flip]] if swap else [])
            start = target
            if len(starts) + len(held) > 1:
                candidates_KxJx3 = jnp.stack(starts + held)
                start_loss_K = jax.vmap(lambda j: objective(j, example))(candidates_KxJx3)
                if held:  # an empty entry is never chosen
                    start_loss_K = jnp.where(
                        (jnp.arange(len(starts) + len(held)) < len(starts))
                        | (cached["filled"] > 0), start_loss_K, jnp.inf)
                best = jnp.argmin(start_loss_K)
                start, start_loss = candidates_KxJx3[best], start_loss_K[best]
                if swap:
                    out["refine_swapped"] = (best % 2 == 1).astype(jnp.float32)
                if held:
                    out["cache_used"] = (best >= len(starts)).astype(jnp.float32)
            refined = refine_pose(start, example, loss_config, size, refine_weights,
                                  refine_steps, float(loss_config.refine_lr_mm), capsule_width,
                                  body_radii_mm, body_scale)
            if cache is not None:  # Adam may overshoot: keep the better of start and fit
                refined = jnp.where(objective(refined, example) < start_loss, refined, start)
                out["cache_joints_BxJx3"] = refined
            out["refine_mm"] = jnp.mean(jnp.linalg.norm(refined - target, axis=-1))
            target = refined
            xy_VxJx2 = project_pose(target, example["crop"], example["intrinsics"],
                                    example["extrinsics"], example["distortion"], size)
        z_VxJ = relative_depths(target, example["extrinsics"], depth_range_mm)
        out["depth"] = _masked_mean(jnp.mean(jnp.abs(keypoints_VxJx3[..., 2] - z_VxJ), -1),
                                    valid_V)
        out["reproject"] = _masked_mean(
            jnp.mean(jnp.abs(keypoints_VxJx3[..., :2] - xy_VxJx2), axis=(-2, -1)), valid_V)
        root_world_3 = target[skeleton.PELVIS]
        _, own_world_VxJx3 = multiview.lift_views(
            jax.lax.stop_gradient(pinhole_VxJx3), root_world_3, example["crop"],
            example["intrinsics"], example["extrinsics"], size, depth_range_mm)
        gap_V = jnp.mean(jnp.linalg.norm(own_world_VxJx3 - target[None], axis=-1), axis=-1)
        out["view_gap_mm"] = _masked_mean(gap_V, valid_V)
        return out

    with jax.named_scope("rendering"):
        per = jax.vmap(per_example)(keypoints_BxVxJx3, views, cached)
    return {k: v if k.endswith("_BxJx3") else jnp.mean(v) for k, v in per.items()}
