"""Camera and pose geometry: pure jax.numpy functions written for one example.

Conventions (the one place they are written down; every other module relies on them):

- Units: millimetres for lengths, pixels for images.
- World frame: Z up, X/Y on the floor (the Human3.6M world frame).
- Extrinsics `[R|t]` (3x4) map world to camera: X_cam = R @ X_world + t (mm). R is a proper
  rotation (orthonormal, det +1).
- Camera frame: OpenCV, x right, y down, z forward (along the optical axis).
- Intrinsics K (3x3) = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] in pixels (s = 0 for real rigs).
- Lens distortion (Human3.6M convention) acts on normalized image coordinates x = X/Z, y = Y/Z,
  with coefficients (k1, k2, k3, p1, p2): see `distort`.
- Pixel (u, v) = (column, row); the centre of pixel (row i, column j) is at (u=j, v=i), so an image
  of W pixels spans u in [-0.5, W - 0.5].
- Crop affine: a 2x3 matrix A mapping full-image pixels to crop pixels, crop_uv = A @ [u, v, 1].
- Normalized crop coordinates (what the network predicts and the Skeleton Mask draws in): for an
  N x N crop, x = -1 + 2 u_crop / (N - 1), y = -1 + 2 v_crop / (N - 1), so the centres of the
  corner pixels sit at +-1 (x right, y down).

Every function also accepts NumPy arrays; all are jit/vmap friendly (image and crop sizes are
static Python ints).
"""

import jax
import jax.numpy as jnp

_EPS = 1e-12
# `undistort`: Newton steps, the longest step (normalized units) and the residual it accepts.
UNDISTORT_ITERATIONS = 8
UNDISTORT_MAX_STEP = 0.25
UNDISTORT_TOLERANCE = 1e-5


# --- Rigid transforms and cameras -----------------------------------------------------------


def cam_from_world(points_world_Nx3, extrinsics_3x4):
    """Moves world points into the camera frame.

    Args:
        points_world_Nx3: points in the world frame, mm.
        extrinsics_3x4: [R|t], world -> camera, mm.

    Returns:
        Nx3 points in the camera frame, mm.
    """
    rot_3x3, t_3 = extrinsics_3x4[:, :3], extrinsics_3x4[:, 3]
    return points_world_Nx3 @ rot_3x3.T + t_3


def world_from_cam(points_cam_Nx3, extrinsics_3x4):
    """Moves camera-frame points into the world frame (inverse of `cam_from_world`).

    Args:
        points_cam_Nx3: points in the camera frame, mm.
        extrinsics_3x4: [R|t], world -> camera, mm; R must be a rotation (R^-1 = R^T).

    Returns:
        Nx3 points in the world frame, mm.
    """
    rot_3x3, t_3 = extrinsics_3x4[:, :3], extrinsics_3x4[:, 3]
    return (points_cam_Nx3 - t_3) @ rot_3x3


def camera_center(extrinsics_3x4):
    """Returns the camera's optical centre in the world frame (3,), mm: -R^T t."""
    rot_3x3, t_3 = extrinsics_3x4[:, :3], extrinsics_3x4[:, 3]
    return -rot_3x3.T @ t_3


def projection_matrix(intrinsics_3x3, extrinsics_3x4):
    """Returns P = K [R|t] (3x4): homogeneous world mm -> homogeneous pixels (no distortion)."""
    return intrinsics_3x3 @ extrinsics_3x4


def distort(xy_normalized_Nx2, distortion_5):
    """Applies Human3.6M lens distortion to normalized image coordinates.

    r^2 = |x|^2, radial = 1 + k1 r^2 + k2 r^4 + k3 r^6, tan = 2 (p2 x + p1 y),
    x_d = x (radial + tan) + r^2 (p2, p1).

    Args:
        xy_normalized_Nx2: (X/Z, Y/Z) in the camera frame, unitless.
        distortion_5: (k1, k2, k3, p1, p2).

    Returns:
        Nx2 distorted normalized coordinates.
    """
    distortion_5 = jnp.asarray(distortion_5)
    k1, k2, k3, p1, p2 = (distortion_5[i] for i in range(5))
    x, y = xy_normalized_Nx2[:, 0], xy_normalized_Nx2[:, 1]
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    tan = 2.0 * (p2 * x + p1 * y)
    scale = (radial + tan)[:, None]
    return xy_normalized_Nx2 * scale + r2[:, None] * jnp.stack([p2, p1])


def undistort(xy_distorted_Nx2, distortion_5, iterations=UNDISTORT_ITERATIONS):
    """Inverts `distort`: the normalized coordinates that `distort` maps to `xy_distorted_Nx2`.

    Newton's method from x = x_d, each step's length capped at UNDISTORT_MAX_STEP and a
    near-singular Jacobian kept away from 0, so that every value stays finite (a wild prediction
    far outside the image included). A point it does not solve to UNDISTORT_TOLERANCE (outside
    the region where the lens model is invertible) keeps its distorted coordinates. With zero
    coefficients the result is the input. Differentiable (through the unrolled steps).

    Args:
        xy_distorted_Nx2: distorted normalized image coordinates.
        distortion_5: (k1, k2, k3, p1, p2).
        iterations: Newton steps (static int).

    Returns:
        Nx2 undistorted normalized coordinates (X/Z, Y/Z).
    """
    xy_d = jnp.asarray(xy_distorted_Nx2)
    distortion_5 = jnp.asarray(distortion_5, xy_d.dtype)

    def distort_one(xy_2):
        return distort(xy_2[None], distortion_5)[0]

    jacobian = jax.vmap(jax.jacfwd(distort_one))

    def step(xy_Nx2, _):
        residual_Nx2 = distort(xy_Nx2, distortion_5) - xy_d
        (a, b), (c, d) = jnp.moveaxis(jacobian(xy_Nx2), (1, 2), (0, 1))
        det = a * d - b * c
        det = jnp.where(jnp.abs(det) > 1e-6, det, 1e-6)
        r0, r1 = residual_Nx2[:, 0], residual_Nx2[:, 1]
        delta_Nx2 = jnp.stack([d * r0 - b * r1, a * r1 - c * r0], axis=-1) / det[:, None]
        length = jnp.sqrt(jnp.sum(delta_Nx2 * delta_Nx2, axis=-1, keepdims=True) + _EPS)
        return xy_Nx2 - delta_Nx2 * jnp.minimum(1.0, UNDISTORT_MAX_STEP / length), None

    xy_Nx2, _ = jax.lax.scan(step, xy_d, None, length=iterations)
    error_N = jnp.linalg.norm(distort(xy_Nx2, distortion_5) - xy_d, axis=-1)
    return jnp.where((error_N < UNDISTORT_TOLERANCE)[:, None], xy_Nx2, xy_d)


def normalized_from_px(uv_Nx2, intrinsics_3x3):
    """Pixels -> normalized image coordinates (X/Z, Y/Z): the exact inverse of K, skew included."""
    fx, skew, cx = intrinsics_3x3[0, 0], intrinsics_3x3[0, 1], intrinsics_3x3[0, 2]
    fy, cy = intrinsics_3x3[1, 1], intrinsics_3x3[1, 2]
    y_N = (uv_Nx2[:, 1] - cy) / fy
    x_N = (uv_Nx2[:, 0] - cx - skew * y_N) / fx
    return jnp.stack([x_N, y_N], axis=-1)


def _px_from_normalized(xy_Nx2, intrinsics_3x3):
    return xy_Nx2 @ intrinsics_3x3[:2, :2].T + intrinsics_3x3[:2, 2]


def pinhole_px(uv_Nx2, intrinsics_3x3, distortion_5):
    """Pixels of a camera with lens distortion -> where the same rays meet the image of its
    pinhole (K [R|t], no distortion): the coordinates `triangulate` and `lift_to_cam` take.
    Added as a shift, so that zero coefficients give back `uv_Nx2` bit for bit."""
    xy_Nx2 = normalized_from_px(uv_Nx2, intrinsics_3x3)
    return uv_Nx2 + (undistort(xy_Nx2, distortion_5) - xy_Nx2) @ intrinsics_3x3[:2, :2].T


def project_cam(points_cam_Nx3, intrinsics_3x3, distortion=None):
    """Projects camera-frame points to pixels.

    Args:
        points_cam_Nx3: points in the camera frame, mm (Z > 0 in front of the camera).
        intrinsics_3x3: K, pixels.
        distortion: optional (k1, k2, k3, p1, p2), see `distort`; None projects a pinhole.

    Returns:
        Nx2 pixel coordinates (u, v).
    """
    xy_Nx2 = points_cam_Nx3[:, :2] / points_cam_Nx3[:, 2:3]
    if distortion is not None:
        xy_Nx2 = distort(xy_Nx2, distortion)
    return _px_from_normalized(xy_Nx2, intrinsics_3x3)


def project(points_world_Nx3, intrinsics_3x3, extrinsics_3x4, distortion=None):
    """Projects world points to pixels.

    Args:
        points_world_Nx3: points in the world frame, mm.
        intrinsics_3x3: K, pixels.
        extrinsics_3x4: [R|t], world -> camera, mm.
        distortion: optional (k1, k2, k3, p1, p2); None projects a pinhole.

    Returns:
        Nx2 pixel coordinates (u, v).
    """
    return project_cam(cam_from_world(points_world_Nx3, extrinsics_3x4), intrinsics_3x3,
                       distortion)


def triangulate(points_VxNx2, projections_Vx3x4, weights_VxN=None, ridge=0.0):
    """Triangulates N points from V views by weighted linear least squares (DLT).

    Each view gives two planes through its camera centre, u P_2 - P_0 and v P_2 - P_1. Every
    plane equation a.X + b = 0 is divided by |a|, so its residual is the point-to-plane distance
    in mm, and multiplied by the view's weight; the point minimizing the summed squared residuals
    solves the 3x3 normal equations. This inhomogeneous form has smooth, finite gradients (no SVD
    or eigen decomposition) and cannot return a point at infinity. A zero-weight view contributes
    nothing, whatever its 2D (NaN or inf included). At least two views with non-zero weight and
    distinct centres are needed, otherwise the system is singular.

    Args:
        points_VxNx2: pixel coordinates (u, v) of N points in V views (undistorted pixels).
        projections_Vx3x4: P = K [R|t] per view (world mm -> pixels), see `projection_matrix`.
        weights_VxN: optional non-negative weights; a view's residuals are scaled by its weight.
        ridge: added to the normal matrix's diagonal (a pull toward the origin): a tiny value
            keeps a degenerate system (one camera) finite at a negligible bias elsewhere.

    Returns:
        Nx3 points in the world frame, mm.
    """
    points_VxNx2 = jnp.asarray(points_VxNx2)
    projections_Vx3x4 = jnp.asarray(projections_Vx3x4)
    if weights_VxN is None:
        weights_VxN = jnp.ones(points_VxNx2.shape[:2], points_VxNx2.dtype)
    weights_VxN = jnp.asarray(weights_VxN)
    used_VxN = weights_VxN > 0
    # Sanitize ignored views first so neither their values nor their gradients can be NaN.
    points_VxNx2 = jnp.where(used_VxN[..., None], points_VxNx2, 0.0)
    weights_VxN = jnp.where(used_VxN, weights_VxN, 0.0)
    # rows_VxNx2x4[v, n, i] = uv_i P_2 - P_i, i in {0, 1}.
    rows_VxNx2x4 = (points_VxNx2[..., None] * projections_Vx3x4[:, None, None, 2, :]
                    - projections_Vx3x4[:, None, :2, :])
    normal_VxNx2x3 = rows_VxNx2x4[..., :3]
    norm_VxNx2 = jnp.sqrt(jnp.sum(normal_VxNx2x3 ** 2, axis=-1) + _EPS)
    rows_VxNx2x4 = rows_VxNx2x4 * (weights_VxN[..., None] / norm_VxNx2)[..., None]
    a_VxNx2x3, b_VxNx2 = rows_VxNx2x4[..., :3], rows_VxNx2x4[..., 3]
    lhs_Nx3x3 = jnp.einsum("vnki,vnkj->nij", a_VxNx2x3, a_VxNx2x3) + ridge * jnp.eye(3)
    rhs_Nx3 = -jnp.einsum("vnki,vnk->ni", a_VxNx2x3, b_VxNx2)
    return jnp.linalg.solve(lhs_Nx3x3, rhs_Nx3[..., None])[..., 0]


# --- 2D affine maps and crops ----------------------------------------------------------------


def apply_affine(affine_2x3, points_Nx2):
    """Applies a 2x3 affine map to 2D points: A @ [p, 1]. Returns Nx2."""
    return points_Nx2 @ affine_2x3[:, :2].T + affine_2x3[:, 2]


def invert_affine(affine_2x3):
    """Returns the 2x3 affine map that undoes `affine_2x3` (which must be invertible)."""
    lin_inv_2x2 = jnp.linalg.inv(affine_2x3[:, :2])
    return jnp.concatenate([lin_inv_2x2, -(lin_inv_2x2 @ affine_2x3[:, 2])[:, None]], axis=1)


def crop_affine(center_uv, side_px, out_size):
    """Affine map from full-image pixels to an out_size x out_size crop of a square box.

    The box of side `side_px` centred at `center_uv` has its edges mapped to the crop's pixel
    edges: crop_u = (u - (cu - side/2)) * out_size / side - 0.5, and the same for v.

    Args:
        center_uv: (2,) box centre, full-image pixels.
        side_px: box side, full-image pixels (scalar).
        out_size: crop size in pixels (static int).

    Returns:
        2x3 affine, crop_uv = A @ [u, v, 1].
    """
    center_uv = jnp.asarray(center_uv)
    scale = out_size / jnp.asarray(side_px, center_uv.dtype)
    offset_2 = (side_px / 2.0 - center_uv) * scale - 0.5
    zero = jnp.zeros_like(scale)
    return jnp.stack([jnp.stack([scale, zero, offset_2[0]]),
                      jnp.stack([zero, scale, offset_2[1]])])


def normalized_from_crop_px(uv_Nx2, size):
    """Crop pixels (u, v) -> normalized crop coordinates in [-1, 1] (corner pixel centres at +-1).

    Args:
        uv_Nx2: crop pixel coordinates.
        size: crop side N in pixels (static int).

    Returns:
        Nx2 normalized coordinates, x = -1 + 2 u / (N - 1).
    """
    return -1.0 + 2.0 * uv_Nx2 / (size - 1)


def crop_px_from_normalized(xy_Nx2, size):
    """Normalized crop coordinates -> crop pixels (inverse of `normalized_from_crop_px`)."""
    return (xy_Nx2 + 1.0) * ((size - 1) / 2.0)


def lift_to_cam(keypoints_Jx3, crop_from_px_2x3, intrinsics_3x3, root_depth_mm, image_size,
                depth_range_mm=2000.0):
    """Lifts 2.5D network keypoints to camera-frame 3D (DESIGN §7).

    x, y (normalized crop) -> crop pixels -> full-image pixels (inverse crop affine); depth
    Z = root_depth + z * depth_range / 2; X = (u - cx) / fx * Z, Y = (v - cy) / fy * Z (the exact
    inverse of K, skew included). The keypoints are pinhole coordinates: the lifted points
    reproject to them through K [R|t]; keypoints of a camera with lens distortion go through
    `pinhole_px` (`multiview.pinhole_keypoints`) first.

    Args:
        keypoints_Jx3: (x, y, z), x, y normalized crop coordinates, z relative depth in
          [-1, 1] units of depth_range / 2.
        crop_from_px_2x3: crop affine, full-image pixels -> crop pixels.
        intrinsics_3x3: K of the full image, pixels.
        root_depth_mm: camera-frame depth of the root (pelvis), mm (scalar).
        image_size: side of the square crop the keypoints refer to, pixels (static int).
        depth_range_mm: depth span that z in [-1, 1] covers, mm.

    Returns:
        Jx3 points in the camera frame, mm.
    """
    crop_uv_Jx2 = crop_px_from_normalized(keypoints_Jx3[:, :2], image_size)
    uv_Jx2 = apply_affine(invert_affine(crop_from_px_2x3), crop_uv_Jx2)
    depth_J = root_depth_mm + keypoints_Jx3[:, 2] * (depth_range_mm / 2.0)
    xy_Jx2 = normalized_from_px(uv_Jx2, intrinsics_3x3)
    return jnp.concatenate([xy_Jx2 * depth_J[:, None], depth_J[:, None]], axis=-1)


# --- Alignment and rigs ----------------------------------------------------------------------


def similarity_transform(source_Nx3, target_Nx3, scale=True):
    """Least-squares similarity (Umeyama) with target ~ s R source + t.

    R is a proper rotation (det +1). With scale=False, s = 1 (rigid fit).

    Args:
        source_Nx3: points to move (any units, e.g. mm).
        target_Nx3: corresponding points to match.
        scale: whether to fit the scale s.

    Returns:
        (s scalar, R 3x3, t (3,)) in the units of the inputs.
    """
    source_Nx3 = jnp.asarray(source_Nx3)
    target_Nx3 = jnp.asarray(target_Nx3)
    mean_src_3 = source_Nx3.mean(axis=0)
    mean_tgt_3 = target_Nx3.mean(axis=0)
    src_Nx3 = source_Nx3 - mean_src_3
    tgt_Nx3 = target_Nx3 - mean_tgt_3
    cov_3x3 = tgt_Nx3.T @ src_Nx3 / source_Nx3.shape[0]
    u_3x3, sing_3, vt_3x3 = jnp.linalg.svd(cov_3x3)
    sign = jnp.sign(jnp.linalg.det(u_3x3) * jnp.linalg.det(vt_3x3))
    sign = jnp.where(sign == 0, 1.0, sign)
    fix_3 = jnp.stack([jnp.ones_like(sign), jnp.ones_like(sign), sign])
    rot_3x3 = (u_3x3 * fix_3) @ vt_3x3
    if scale:
        var_src = jnp.sum(src_Nx3 ** 2) / source_Nx3.shape[0]
        s = jnp.sum(sing_3 * fix_3) / var_src
    else:
        s = jnp.ones((), source_Nx3.dtype)
    t_3 = mean_tgt_3 - s * (rot_3x3 @ mean_src_3)
    return s, rot_3x3, t_3


def align_similarity(source_Nx3, target_Nx3, scale=True):
    """Returns source moved by its least-squares similarity onto target (Nx3), see
    `similarity_transform`; with scale=False the fit is rigid (Procrustes without scale)."""
    s, rot_3x3, t_3 = similarity_transform(source_Nx3, target_Nx3, scale)
    return s * (jnp.asarray(source_Nx3) @ rot_3x3.T) + t_3


def rotation_about_z(angle_rad):
    """Returns the 3x3 rotation by `angle_rad` about the world Z (up) axis, counter-clockwise
    seen from above."""
    c, s = jnp.cos(angle_rad), jnp.sin(angle_rad)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack([jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]),
                      jnp.stack([zero, zero, one])])


def look_at_extrinsics(camera_center_3, target_3, up=(0.0, 0.0, 1.0)):
    """Extrinsics of a camera at `camera_center_3` looking at `target_3`, image up along `up`.

    The optical axis (camera z) points at the target; camera y (image down) is the component of
    -up orthogonal to it. Undefined when the viewing direction is parallel to `up`.

    Args:
        camera_center_3: camera position, world mm.
        target_3: point to look at, world mm.
        up: world direction that appears upward in the image.

    Returns:
        3x4 [R|t], world -> camera, mm.
    """
    center_3 = jnp.asarray(camera_center_3)
    forward_3 = jnp.asarray(target_3, center_3.dtype) - center_3
    forward_3 = forward_3 / jnp.linalg.norm(forward_3)
    right_3 = jnp.cross(forward_3, jnp.asarray(up, center_3.dtype))
    right_3 = right_3 / jnp.linalg.norm(right_3)
    down_3 = jnp.cross(forward_3, right_3)
    rot_3x3 = jnp.stack([right_3, down_3, forward_3])
    return jnp.concatenate([rot_3x3, (-rot_3x3 @ center_3)[:, None]], axis=1)
