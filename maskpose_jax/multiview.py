"""Multi-view geometry of the detector's predictions (DESIGN §7), for ONE example of V views.

The detector predicts, per view, 2.5D keypoints (x, y, z): x, y in normalized crop coordinates,
z the depth relative to the pelvis in units of depth_range_mm / 2. Here they become 3D:

- `pinhole_keypoints`: the predictions are where the joints appear through each camera's lens
  (the images and masks are distorted); triangulation and lifting need where the same rays meet
  a pinhole camera's image (K [R|t]): this undoes each view's lens distortion, once per example.
- `triangulate_root`: the pelvis is triangulated (linear DLT, `geometry.triangulate`) from the
  pinhole 2D pelvis of every valid view, without gradient.
- `lift_views`: each view's keypoints are lifted to its camera frame at the root's depth in that
  camera, then moved to the world frame.
- `project_to_views`: every view's world pose is projected (with distortion) into every view's
  normalized crop coordinates, for the cross-view Skeleton Masks.
- `oracle_targets`: ground truth in the detector's output convention; used ONLY by the
  supervised `oracle` reference variant, never by the mask losses.

All functions are jit/vmap friendly; `image_size` (the crop side N) is a static Python int.
Units: millimetres and pixels; conventions as in `geometry`.
"""

import jax
import jax.numpy as jnp

from maskpose_jax import geometry
from maskpose_jax import skeleton

# Camera-frame depths are clamped to at least this before a projection, so that a wild
# prediction near or behind a camera projects far away instead of dividing by ~0.
MIN_DEPTH_MM = 100.0


def full_px_from_normalized(xy_Nx2, crop_2x3, image_size):
    """Normalized crop coordinates -> full-image pixels (inverse crop affine).

    Args:
        xy_Nx2: normalized crop coordinates, x = -1 + 2 u_crop / (N - 1).
        crop_2x3: crop affine, full-image pixels -> crop pixels.
        image_size: crop side N, pixels (static int).

    Returns:
        Nx2 full-image pixels (u, v).
    """
    crop_uv_Nx2 = geometry.crop_px_from_normalized(xy_Nx2, image_size)
    return geometry.apply_affine(geometry.invert_affine(crop_2x3), crop_uv_Nx2)


def pinhole_keypoints(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, distortion_Vx5, image_size):
    """Each view's keypoints with their (x, y) moved to where the same rays meet the crop of a
    distortion-free camera (`geometry.pinhole_px`); z unchanged. Projecting a pose lifted from
    them with the view's distortion (`project_to_views`) gives back the keypoints.

    Args:
        keypoints_VxJx3: detector output per view, (x, y) normalized crop coordinates.
        crop_Vx2x3: crop affines, full-image pixels -> crop pixels.
        intrinsics_Vx3x3: K per view, pixels.
        distortion_Vx5: (k1, k2, k3, p1, p2) per view (zeros: the keypoints unchanged).
        image_size: crop side N, pixels (static int).

    Returns:
        VxJx3 keypoints in pinhole normalized crop coordinates.
    """

    def one(keypoints_Jx3, crop_2x3, intrinsics_3x3, distortion_5):
        # The lens's shift, in pixels, then in normalized crop units (bit for bit nothing
        # without distortion: training on pinhole data is unchanged by it).
        uv_Jx2 = full_px_from_normalized(keypoints_Jx3[:, :2], crop_2x3, image_size)
        shift_uv_Jx2 = geometry.pinhole_px(uv_Jx2, intrinsics_3x3, distortion_5) - uv_Jx2
        shift_xy_Jx2 = shift_uv_Jx2 @ crop_2x3[:, :2].T * (2.0 / (image_size - 1))
        return keypoints_Jx3.at[:, :2].add(shift_xy_Jx2)

    return jax.vmap(one)(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, distortion_Vx5)


def normalized_from_full_px(uv_Nx2, crop_2x3, image_size):
    """Full-image pixels -> normalized crop coordinates (through the crop affine). Returns Nx2."""
    return geometry.normalized_from_crop_px(geometry.apply_affine(crop_2x3, uv_Nx2), image_size)


def fallback_root_depth(crop_2x3, intrinsics_3x3, image_size, depth_range_mm):
    """Root depth (mm) at which the crop's full-image side spans `depth_range_mm`.

    The single-view stand-in for triangulation: the 2.5D volume of the detector is taken to be a
    cube, its x/y extent (the crop) as wide as its depth extent. Crop side in full-image pixels
    = N / s with s the crop affine's scale, so depth = f * depth_range * s / N, f = sqrt(fx fy).

    Args:
        crop_2x3: crop affine, full-image pixels -> crop pixels.
        intrinsics_3x3: K, pixels.
        image_size: crop side N, pixels (static int).
        depth_range_mm: the detector's depth span, mm.

    Returns:
        Scalar depth, mm.
    """
    scale = jnp.sqrt(jnp.abs(crop_2x3[0, 0] * crop_2x3[1, 1] - crop_2x3[0, 1] * crop_2x3[1, 0]))
    focal = jnp.sqrt(jnp.abs(intrinsics_3x3[0, 0] * intrinsics_3x3[1, 1]))
    return focal * depth_range_mm * scale / image_size


def triangulate_root(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, image_size,
                     view_valid_V, depth_range_mm=2000.0):
    """Triangulates the predicted pelvis of the valid views (no gradient).

    With at least two valid views: weighted DLT (`geometry.triangulate`, weights = view_valid)
    of the 2D pelvis in pinhole coordinates (`pinhole_keypoints`). With fewer (single-view
    examples), there is nothing to triangulate: the root is put on the first valid view's pelvis
    ray at `fallback_root_depth` (view 0 when none is valid), so the result is always finite for
    real cameras. Invalid views' keypoints and cameras are never read in the two-view case.

    Args:
        keypoints_VxJx3: detector output per view in pinhole coordinates (`pinhole_keypoints`),
          (x, y) normalized crop coordinates, z relative depth (z is not used).
        crop_Vx2x3: crop affines, full-image pixels -> crop pixels.
        intrinsics_Vx3x3: K per view, pixels.
        extrinsics_Vx3x4: [R|t] per view, world -> camera, mm.
        image_size: crop side N, pixels (static int).
        view_valid_V: 1 for a real view, 0 for padding.
        depth_range_mm: the detector's depth span (for the single-view fallback), mm.

    Returns:
        (3,) root (pelvis) position in the world frame, mm, under `stop_gradient`.
    """
    keypoints_VxJx3 = jax.lax.stop_gradient(jnp.asarray(keypoints_VxJx3))
    crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4 = (
        jnp.asarray(a) for a in (crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4))
    valid_V = jnp.asarray(view_valid_V, jnp.float32) > 0
    pelvis_xy_Vx2 = keypoints_VxJx3[:, skeleton.PELVIS, :2]
    first = jnp.argmax(valid_V)
    ray_depth = fallback_root_depth(crop_Vx2x3[first], intrinsics_Vx3x3[first], image_size,
                                    depth_range_mm)
    pelvis_1x3 = jnp.concatenate([pelvis_xy_Vx2[first], jnp.zeros((1,), pelvis_xy_Vx2.dtype)])[None]
    root_cam_1x3 = geometry.lift_to_cam(pelvis_1x3, crop_Vx2x3[first], intrinsics_Vx3x3[first],
                                        ray_depth, image_size, depth_range_mm)
    root_world_3 = geometry.world_from_cam(root_cam_1x3, extrinsics_Vx3x4[first])[0]
    if keypoints_VxJx3.shape[0] >= 2:
        # Invalid views get view `first`'s data so that no NaN/inf of padding enters the solve.
        def safe(a):
            return jnp.where(valid_V.reshape((-1,) + (1,) * (a.ndim - 1)), a, a[first])

        uv_Vx2 = jax.vmap(full_px_from_normalized, (0, 0, None))(
            safe(pelvis_xy_Vx2), safe(crop_Vx2x3), image_size)
        proj_Vx3x4 = jax.vmap(geometry.projection_matrix)(safe(intrinsics_Vx3x3),
                                                           safe(extrinsics_Vx3x4))
        # With < 2 valid views the system is singular; its (non-finite) solution is discarded.
        tri_3 = geometry.triangulate(uv_Vx2[:, None], proj_Vx3x4,
                                     valid_V.astype(uv_Vx2.dtype)[:, None])[0]
        root_world_3 = jnp.where(jnp.sum(valid_V) >= 2, tri_3, root_world_3)
    return jax.lax.stop_gradient(root_world_3)


def lift_views(keypoints_VxJx3, root_world_3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4,
               image_size, depth_range_mm=2000.0):
    """Lifts every view's 2.5D keypoints to 3D around a common root.

    View v's root depth is the camera-frame depth of `root_world_3` in v; joints follow
    `geometry.lift_to_cam` (Z_j = Z_root + z_j depth_range / 2).

    Args:
        keypoints_VxJx3: detector output per view in pinhole coordinates (`pinhole_keypoints`),
          (x, y) normalized crop coordinates, z in units of depth_range_mm / 2.
        root_world_3: root (pelvis) position, world frame, mm.
        crop_Vx2x3: crop affines, full-image pixels -> crop pixels.
        intrinsics_Vx3x3: K per view, pixels.
        extrinsics_Vx3x4: [R|t] per view, world -> camera, mm.
        image_size: crop side N, pixels (static int).
        depth_range_mm: depth span that z in [-1, 1] covers, mm.

    Returns:
        (joints_cam_VxJx3 in each view's camera frame, joints_world_VxJx3 in the world frame), mm.
    """

    def lift_one(keypoints_Jx3, crop_2x3, intrinsics_3x3, extrinsics_3x4):
        root_depth = geometry.cam_from_world(root_world_3[None], extrinsics_3x4)[0, 2]
        joints_cam_Jx3 = geometry.lift_to_cam(keypoints_Jx3, crop_2x3, intrinsics_3x3,
                                              root_depth, image_size, depth_range_mm)
        return joints_cam_Jx3, geometry.world_from_cam(joints_cam_Jx3, extrinsics_3x4)

    return jax.vmap(lift_one)(keypoints_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4)


def _project_clamped(points_world_Nx3, intrinsics_3x3, extrinsics_3x4, distortion_5):
    points_cam_Nx3 = geometry.cam_from_world(points_world_Nx3, extrinsics_3x4)
    points_cam_Nx3 = points_cam_Nx3.at[:, 2].set(jnp.maximum(points_cam_Nx3[:, 2], MIN_DEPTH_MM))
    return geometry.project_cam(points_cam_Nx3, intrinsics_3x3, distortion_5)


def project_to_views(joints_world_VxJx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4,
                     distortion_Vx5, image_size):
    """Projects every view's world pose into every view's crop (normalized coordinates).

    Entry [v, w] is view v's pose seen by camera w: projected with w's lens distortion, through
    w's crop affine, normalized. The diagonal [v, v] gives back view v's own predicted (x, y)
    (lifted from its pinhole keypoints, projected through its lens) up to float rounding; the
    mask losses draw the own view from the prediction itself. Camera-frame depths are
    clamped to >= MIN_DEPTH_MM before dividing.

    Args:
        joints_world_VxJx3: one world-frame pose per view, mm.
        crop_Vx2x3: crop affines, full-image pixels -> crop pixels.
        intrinsics_Vx3x3: K per view, pixels.
        extrinsics_Vx3x4: [R|t] per view, world -> camera, mm.
        distortion_Vx5: (k1, k2, k3, p1, p2) per view.
        image_size: crop side N, pixels (static int).

    Returns:
        VxVxJx2 normalized crop coordinates, [v, w] = pose of view v in view w.
    """

    def into_view(crop_2x3, intrinsics_3x3, extrinsics_3x4, distortion_5):
        def one_pose(joints_Jx3):
            uv_Jx2 = _project_clamped(joints_Jx3, intrinsics_3x3, extrinsics_3x4, distortion_5)
            return normalized_from_full_px(uv_Jx2, crop_2x3, image_size)
        return jax.vmap(one_pose)(joints_world_VxJx3)

    # into_view maps over target views w: result [w, v]; swap to [v, w].
    by_target_WxVxJx2 = jax.vmap(into_view)(crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4,
                                            distortion_Vx5)
    return jnp.swapaxes(by_target_WxVxJx2, 0, 1)


def oracle_targets(joints_world_Jx3, crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4,
                   distortion_Vx5, image_size, depth_range_mm=2000.0):
    """Ground-truth 2.5D targets in the detector's output convention (supervised variant ONLY).

    x, y: the true joints projected (with distortion) into each crop, normalized; z: the joint's
    camera-frame depth minus the pelvis's, in units of depth_range_mm / 2. With zero distortion,
    `lift_views` at the true pelvis inverts this exactly.

    Args:
        joints_world_Jx3: ground-truth joints, world frame, mm.
        crop_Vx2x3: crop affines, full-image pixels -> crop pixels.
        intrinsics_Vx3x3: K per view, pixels.
        extrinsics_Vx3x4: [R|t] per view, world -> camera, mm.
        distortion_Vx5: (k1, k2, k3, p1, p2) per view.
        image_size: crop side N, pixels (static int).
        depth_range_mm: depth span that z in [-1, 1] covers, mm.

    Returns:
        VxJx3 targets (x, y, z).
    """

    def one_view(crop_2x3, intrinsics_3x3, extrinsics_3x4, distortion_5):
        joints_cam_Jx3 = geometry.cam_from_world(joints_world_Jx3, extrinsics_3x4)
        uv_Jx2 = geometry.project_cam(joints_cam_Jx3, intrinsics_3x3, distortion_5)
        xy_Jx2 = normalized_from_full_px(uv_Jx2, crop_2x3, image_size)
        z_J = (joints_cam_Jx3[:, 2] - joints_cam_Jx3[skeleton.PELVIS, 2]) / (depth_range_mm / 2.0)
        return jnp.concatenate([xy_Jx2, z_J[:, None]], axis=-1)

    return jax.vmap(one_view)(crop_Vx2x3, intrinsics_Vx3x3, extrinsics_Vx3x4, distortion_Vx5)
