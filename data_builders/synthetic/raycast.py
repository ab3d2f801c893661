"""Ray-cast renderer for the capsule body: soft silhouettes and shaded RGB crops.

One ray per sample, `supersample` x `supersample` samples per output pixel, each intersected
exactly with every capsule (a cylinder closed by two sphere caps); the nearest hit wins. A
pixel's mask value is the fraction of its samples that hit the body; its colour is the sum of
its body samples' shaded colours plus (1 - mask) times the room's colour at the pixel centre.

Rays of an output image: output pixel centre plus a sub-pixel offset -> full-image pixel through
the inverse of the output affine (a crop affine, or a window of the full image) -> camera ray
through K^-1 -> world ray through R^T from the camera centre. Lens distortion is ignored: the
synthetic cameras are pinholes, so ground truth must be projected without distortion too
(`geometry.project(..., distortion=None)`).

Appearance: Lambertian shading of the part colours under the scene's directional light plus
ambient, fabric stripes along each capsule's axis, the procedural room of `rig.room_color`
(world-fixed, so all views of one example see the same room) and Gaussian sensor noise.

Written in JAX: one jitted function per (output size, supersample) traces all rays of a view,
in chunks. Measured on the 2-core CPU, 65,536 rays x 21 capsules (nearest hit): ~4 ms here,
~55 ms as vectorized NumPy (float32). Units: mm and pixels; conventions of
`maskpose_jax.geometry`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from data_builders import frames
from data_builders.synthetic import rig
from maskpose_jax import geometry

_CHUNK = 2048


def ray_capsule_intersection(origin_3, direction_Rx3, start_Cx3, end_Cx3, radius_C):
    """Distance along each ray to its first hit on each capsule (exact: cylinder + caps).

    All rays leave one origin (a pinhole camera's centre), so every origin-dependent term is a
    per-capsule constant and the per-ray work is one R x 3 by 3 x 3C product plus a few
    element-wise operations.

    Args:
        origin_3: the rays' common origin (world, mm), outside every capsule.
        direction_Rx3: unit ray directions.
        start_Cx3, end_Cx3: capsule segment end points (world, mm).
        radius_C: capsule radii, mm.

    Returns:
        RxC distances t > 0 (mm) to the entry point o + t d; inf where the ray misses.
    """
    axis_Cx3 = end_Cx3 - start_Cx3
    length_C = jnp.sqrt(jnp.sum(axis_Cx3 * axis_Cx3, -1))
    # A sphere (a = b) is a capsule along any axis: take Z.
    unit_Cx3 = jnp.where((length_C > 1e-6)[:, None],
                         axis_Cx3 / jnp.maximum(length_C, 1e-6)[:, None], jnp.array([0., 0., 1.]))
    oa_Cx3 = origin_3 - start_Cx3
    oa_u_C = jnp.sum(oa_Cx3 * unit_Cx3, -1)                # axial coordinate of the origin
    oa_perp_Cx3 = oa_Cx3 - oa_u_C[:, None] * unit_Cx3
    moment_Cx3 = jnp.cross(oa_Cx3, unit_Cx3)
    r2_C = radius_C * radius_C
    num_capsules = start_Cx3.shape[0]
    dots_Rx3C = direction_Rx3 @ jnp.concatenate([unit_Cx3, oa_perp_Cx3, moment_Cx3], 0).T
    d_u, d_oa_perp, d_m = (dots_Rx3C[:, k * num_capsules:(k + 1) * num_capsules]
                           for k in range(3))
    # Infinite cylinder |oa_perp + t d_perp|^2 = r^2. Its discriminant |d_perp|^2 r^2 - (d.m)^2
    # (m = oa x u) avoids the cancellation of the textbook b^2 - a c with the camera metres away.
    qa = 1.0 - d_u * d_u
    disc = qa * r2_C - d_m * d_m
    parallel = qa < 1e-9
    t_side = (-d_oa_perp - jnp.sqrt(jnp.maximum(disc, 0.0))) / jnp.where(parallel, 1.0, qa)
    y = oa_u_C + t_side * d_u                               # axial coordinate of the hit, mm
    side_hit = (disc >= 0.0) & ~parallel & (y > 0.0) & (y < length_C)
    # Otherwise the ray enters the infinite cylinder beyond an end: only that end's sphere can
    # be hit first (for a ray parallel to the axis, the end it travels from).
    use_start = jnp.where(parallel, d_u > 0.0, y <= 0.0)
    # Cap centre c = a or b; o - c = c_u u + p with p = oa_perp for both. The sphere's
    # discriminant r^2 - |d x (o - c)|^2 uses |d x (o - c)|^2 = (d.m)^2 + |d_u p - c_u d_perp|^2,
    # the latter in the basis p/|p|, u x p/|p| of the plane normal to u (d . (u x p) = -d.m):
    # no large terms cancel, unlike b^2 - |o - c|^2.
    # With the origin on the axis line (p = 0) the basis is undefined, and the plain expansion
    # d_u^2 |p|^2 - 2 c_u d_u (d.p) + c_u^2 |d_perp|^2 is exact.
    c_u = jnp.where(use_start, oa_u_C, oa_u_C - length_C)
    p2_C = jnp.sum(oa_perp_Cx3 * oa_perp_Cx3, -1)
    p_len_C = jnp.sqrt(jnp.maximum(p2_C, 1e-6))
    across_1 = d_u * p_len_C - c_u * d_oa_perp / p_len_C
    across_2 = c_u * d_m / p_len_C
    across2 = jnp.where(p2_C > 1e-6, across_1 * across_1 + across_2 * across_2,
                        d_u * d_u * p2_C - 2.0 * c_u * d_u * d_oa_perp + c_u * c_u * qa)
    disc_cap = r2_C - (d_m * d_m + across2)
    b_cap = d_oa_perp + c_u * d_u                            # d . (o - c)
    t_cap = -b_cap - jnp.sqrt(jnp.maximum(disc_cap, 0.0))
    cap_hit = (disc >= 0.0) & (disc_cap >= 0.0)
    t = jnp.where(side_hit, t_side, jnp.where(cap_hit, t_cap, jnp.inf))
    return jnp.where(t > 0.0, t, jnp.inf)


def _sample_rays(out_hw, supersample, px_from_out_2x3, k_inv_3x3, extrinsics_3x4):
    """World rays for every sample; returns (origin_3, direction_Rx3, full-image uv_Rx2),
    R = H W S^2, ordered (row, column, sub-row, sub-column)."""
    height, width = out_hw
    offsets_S = (jnp.arange(supersample) + 0.5) / supersample - 0.5
    v = (jnp.arange(height)[:, None] + offsets_S[None, :]).reshape(-1)
    u = (jnp.arange(width)[:, None] + offsets_S[None, :]).reshape(-1)
    vv, uu = jnp.meshgrid(v, u, indexing="ij")             # (H S) x (W S)
    vv = vv.reshape(height, supersample, width, supersample).transpose(0, 2, 1, 3)
    uu = uu.reshape(height, supersample, width, supersample).transpose(0, 2, 1, 3)
    out_uv_Rx2 = jnp.stack([uu.reshape(-1), vv.reshape(-1)], -1)
    uv_Rx2 = geometry.apply_affine(px_from_out_2x3, out_uv_Rx2)
    uv1_Rx3 = jnp.concatenate([uv_Rx2, jnp.ones_like(uv_Rx2[:, :1])], -1)
    rot_3x3 = extrinsics_3x4[:, :3]
    dir_Rx3 = uv1_Rx3 @ (rot_3x3.T @ k_inv_3x3).T
    dir_Rx3 = dir_Rx3 / jnp.linalg.norm(dir_Rx3, axis=-1, keepdims=True)
    return geometry.camera_center(extrinsics_3x4), dir_Rx3, uv_Rx2


def _trace(origin_3, dir_Rx3, start_Cx3, end_Cx3, radius_C):
    """Nearest hit per ray: (t_R, capsule index_R); t = inf on a miss."""
    num_rays = dir_Rx3.shape[0]
    # Chunks keep the R x C temporaries in cache (measured ~2x faster than one pass at 128^2 x 4).
    chunks = -(-num_rays // _CHUNK)
    padded_Rx3 = jnp.pad(dir_Rx3, ((0, chunks * _CHUNK - num_rays), (0, 0)), constant_values=1.0)

    index_bits = max(1, (start_Cx3.shape[0] - 1).bit_length())

    def nearest(dirs_Kx3):
        t_KxC = ray_capsule_intersection(origin_3, dirs_Kx3, start_Cx3, end_Cx3, radius_C)
        # argmin is slow on XLA:CPU. Positive floats order like their bit patterns, so one
        # integer min over (t with its low mantissa bits replaced by the capsule index) gives
        # both; t loses 2^-(23 - index_bits) of relative precision (5 bits: 0.02 mm at 5 m).
        keys_KxC = ((jax.lax.bitcast_convert_type(t_KxC, jnp.int32) >> index_bits << index_bits)
                    | jnp.arange(t_KxC.shape[1], dtype=jnp.int32))
        return jnp.min(keys_KxC, axis=-1)

    keys_R = jax.lax.map(nearest, padded_Rx3.reshape(chunks, _CHUNK, 3)).reshape(-1)[:num_rays]
    index_R = keys_R & ((1 << index_bits) - 1)
    t_R = jax.lax.bitcast_convert_type(keys_R >> index_bits << index_bits, jnp.float32)
    # inf has an all-zero mantissa, so a miss decodes back to inf.
    return t_R, index_R


def _shade(origin_3, dir_Rx3, t_R, index_R, capsules_arrays, colors_Px3, stripes_Px3, scene):
    """Shaded body colour at each ray's hit (R x 3; meaningless where the ray missed)."""
    start_Cx3, end_Cx3, radius_C, part_C = capsules_arrays
    t_R = jnp.where(jnp.isfinite(t_R), t_R, 0.0)
    p_Rx3 = origin_3 + t_R[:, None] * dir_Rx3
    a_Rx3, b_Rx3 = start_Cx3[index_R], end_Cx3[index_R]
    axis_Rx3 = b_Rx3 - a_Rx3
    length_R = jnp.sqrt(jnp.maximum(jnp.sum(axis_Rx3**2, -1), 1e-12))
    s_R = jnp.clip(jnp.sum((p_Rx3 - a_Rx3) * axis_Rx3, -1) / length_R**2, 0.0, 1.0)
    normal_Rx3 = p_Rx3 - (a_Rx3 + s_R[:, None] * axis_Rx3)
    normal_Rx3 = normal_Rx3 / jnp.maximum(jnp.linalg.norm(normal_Rx3, axis=-1, keepdims=True),
                                          1e-9)
    part_R = part_C[index_R]
    amp_R, period_R, phase_R = (stripes_Px3[part_R, k] for k in range(3))
    texture_R = 1.0 + amp_R * jnp.sin(2 * jnp.pi * s_R * length_R / jnp.maximum(period_R, 1.0)
                                      + phase_R)
    diffuse_R = jnp.maximum(normal_Rx3 @ scene["light_dir_3"], 0.0)
    light_R = scene["ambient"] + (1.0 - scene["ambient"]) * diffuse_R
    return colors_Px3[part_R] * (texture_R * light_R)[:, None]


@functools.partial(jax.jit, static_argnames=("out_hw", "supersample", "with_image"))
def _render(capsules_arrays, colors_Px3, stripes_Px3, scene, k_inv_3x3, extrinsics_3x4,
            px_from_out_2x3, image_wh, view_index, out_hw, supersample, with_image):
    height, width = out_hw
    start_Cx3, end_Cx3, radius_C, _ = capsules_arrays
    origin_3, dir_Rx3, uv_Rx2 = _sample_rays(out_hw, supersample, px_from_out_2x3, k_inv_3x3,
                                             extrinsics_3x4)
    t_R, index_R = _trace(origin_3, dir_Rx3, start_Cx3, end_Cx3, radius_C)
    hit_R = jnp.isfinite(t_R)
    if image_wh is not None:
        hit_R &= jnp.all((uv_Rx2 >= -0.5) & (uv_Rx2 <= image_wh - 0.5), axis=-1)
    per_pixel = (height, width, supersample * supersample)
    mask_HxW = jnp.mean(hit_R.reshape(per_pixel).astype(jnp.float32), axis=-1)
    if not with_image:
        return mask_HxW, None
    body_Rx3 = _shade(origin_3, dir_Rx3, t_R, index_R, capsules_arrays, colors_Px3,
                      stripes_Px3, scene)
    body_HxWx3 = jnp.mean(jnp.where(hit_R[:, None], body_Rx3, 0.0).reshape(per_pixel + (3,)),
                          axis=2)
    # The room is smooth at pixel scale: one ray per pixel centre, blended by coverage.
    _, centre_dir_Px3, _ = _sample_rays(out_hw, 1, px_from_out_2x3, k_inv_3x3, extrinsics_3x4)
    person_xy_2 = 0.5 * jnp.mean(start_Cx3[:, :2] + end_Cx3[:, :2], axis=0)
    room_HxWx3 = rig.room_color(origin_3, centre_dir_Px3, scene, person_xy_2).reshape(
        height, width, 3)
    image_HxWx3 = (body_HxWx3 + (1.0 - mask_HxW)[..., None] * room_HxWx3) * 255.0
    key = jax.random.fold_in(jax.random.key(scene["seed"]), view_index)
    image_HxWx3 = image_HxWx3 + scene["sensor_noise"] * jax.random.normal(key, image_HxWx3.shape)
    return mask_HxW, jnp.clip(jnp.round(image_HxWx3), 0, 255).astype(jnp.uint8)


def _capsule_arrays(capsules):
    start_Cx3, end_Cx3, radius_C, part_C = capsules
    return (jnp.asarray(start_Cx3, jnp.float32), jnp.asarray(end_Cx3, jnp.float32),
            jnp.asarray(radius_C, jnp.float32), jnp.asarray(part_C, jnp.int32))


def _camera_arrays(intrinsics_3x3, extrinsics_3x4, out_from_px_2x3):
    k_inv_3x3 = np.linalg.inv(np.asarray(intrinsics_3x3, np.float64))
    px_from_out_2x3 = np.asarray(geometry.invert_affine(np.asarray(out_from_px_2x3, np.float64)))
    return (jnp.asarray(k_inv_3x3, jnp.float32), jnp.asarray(extrinsics_3x4, jnp.float32),
            jnp.asarray(px_from_out_2x3, jnp.float32))


def render_mask(capsules, intrinsics_3x3, extrinsics_3x4, out_from_px_2x3, out_hw,
                supersample=2, image_wh=None):
    """Soft silhouette of the capsules in one view.

    Args:
        capsules: (start_Cx3, end_Cx3, radius_C, part_C) from `body.capsules` (world, mm).
        intrinsics_3x3: K of the full image, pixels.
        extrinsics_3x4: [R|t], world -> camera, mm.
        out_from_px_2x3: affine from full-image pixels to output pixels (e.g. a crop affine).
        out_hw: (height, width) of the output, pixels (static).
        supersample: S; S x S rays per output pixel.
        image_wh: optional (width, height) of the full image; samples outside it count as
          misses. None renders beyond the image edges (as for a crop that overhangs them).

    Returns:
        mask_HxW float32 in [0, 1]: the fraction of each pixel's rays that hit the body.
    """
    image_wh = None if image_wh is None else jnp.asarray(image_wh, jnp.float32)
    mask_HxW, _ = _render(_capsule_arrays(capsules), None, None, None,
                          *_camera_arrays(intrinsics_3x3, extrinsics_3x4, out_from_px_2x3),
                          image_wh, 0, out_hw=tuple(out_hw), supersample=supersample,
                          with_image=False)
    return np.asarray(mask_HxW)


def render_view(capsules, body, scene, intrinsics_3x3, extrinsics_3x4, crop_2x3, out_size,
                supersample=2, view_index=0):
    """Renders one crop of one view: soft mask and shaded RGB image.

    The crop may overhang the image edges; the synthetic camera renders there too. The first
    call per (out_size, supersample) compiles (about a second).

    Args:
        capsules: (start_Cx3, end_Cx3, radius_C, part_C) from `body.capsules` (world, mm).
        body: the `body.BodyShape` (part colours and stripes).
        scene: `rig.Scene` (light, room, noise).
        intrinsics_3x3: K of the full image, pixels.
        extrinsics_3x4: [R|t], world -> camera, mm.
        crop_2x3: crop affine, full-image pixels -> crop pixels.
        out_size: crop side N, pixels (static).
        supersample: S; S x S rays per pixel.
        view_index: folded into the sensor-noise seed so views get different noise.

    Returns:
        (mask_NxN float32 in [0, 1], image_NxNx3 uint8).
    """
    mask_HxW, image_HxWx3 = _render(
        _capsule_arrays(capsules), jnp.asarray(body.colors_Px3, jnp.float32),
        jnp.asarray(body.stripes_Px3, jnp.float32), rig.scene_arrays(scene),
        *_camera_arrays(intrinsics_3x3, extrinsics_3x4, crop_2x3), None, view_index,
        out_hw=(out_size, out_size), supersample=supersample, with_image=True)
    return np.asarray(mask_HxW), np.asarray(image_HxWx3)


def projected_bound(capsules, intrinsics_3x3, extrinsics_3x4):
    """Conservative image box of the capsules: projects the corners of the axis-aligned cube
    around each end sphere (the capsules lie in the convex hull of those cubes).

    Returns:
        (u_min, v_min, u_max, v_max) in pixels, or None if a corner is not in front of the
        camera (the box is then unbounded).
    """
    start_Cx3, end_Cx3, radius_C, _ = capsules
    signs_8x3 = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T
    centers_Nx3 = np.concatenate([start_Cx3, end_Cx3])
    radius_N = np.concatenate([radius_C, radius_C])
    corners_Mx3 = (centers_Nx3[:, None, :] + radius_N[:, None, None] * signs_8x3).reshape(-1, 3)
    extrinsics_3x4 = np.asarray(extrinsics_3x4, np.float64)
    corners_cam_Mx3 = corners_Mx3 @ extrinsics_3x4[:, :3].T + extrinsics_3x4[:, 3]
    if np.any(corners_cam_Mx3[:, 2] < 1.0):
        return None
    uv_Mx2 = np.asarray(geometry.project_cam(corners_cam_Mx3, np.asarray(intrinsics_3x3)))
    return np.concatenate([uv_Mx2.min(axis=0), uv_Mx2.max(axis=0)])


def full_image_mask_bbox(capsules, intrinsics_3x3, extrinsics_3x4, width, height, grid_px=64,
                         supersample=1):
    """Bounding box of the body's rendered silhouette in the full image (not of the joints).

    Same answer as rendering the whole image at reduced scale, for a fraction of the rays: only
    the square window around `projected_bound` (clipped to the image) can contain the body, so
    that window is rendered at grid_px x grid_px. Only the body's part inside the image counts,
    as for a real segmenter.

    Args:
        capsules: (start_Cx3, end_Cx3, radius_C, part_C), world, mm.
        intrinsics_3x3: K, pixels; extrinsics_3x4: [R|t], world -> camera, mm.
        width, height: full image size, pixels.
        grid_px: rendering resolution across the window (the box is exact to window/grid_px).
        supersample: S x S rays per grid cell.

    Returns:
        (u_min, v_min, u_max, v_max) float64, full-image pixels: the outer edges of the grid
        cells the silhouette touches, clipped to the image; None when no part of the body is
        in the image.
    """
    lo_u, lo_v, hi_u, hi_v = -0.5, -0.5, width - 0.5, height - 0.5
    bound_4 = projected_bound(capsules, intrinsics_3x3, extrinsics_3x4)
    if bound_4 is not None:
        lo_u, lo_v = max(lo_u, bound_4[0]), max(lo_v, bound_4[1])
        hi_u, hi_v = min(hi_u, bound_4[2]), min(hi_v, bound_4[3])
        if lo_u >= hi_u or lo_v >= hi_v:
            return None
    side = max(hi_u - lo_u, hi_v - lo_v) * (1.0 + 1.0 / grid_px)
    window_2x3 = np.asarray(geometry.crop_affine(
        np.array([0.5 * (lo_u + hi_u), 0.5 * (lo_v + hi_v)]), side, grid_px), np.float64)
    mask_HxW = render_mask(capsules, intrinsics_3x3, extrinsics_3x4, window_2x3,
                           (grid_px, grid_px), supersample, image_wh=(width, height))
    rows = np.flatnonzero(mask_HxW.max(axis=1) > 0)
    cols = np.flatnonzero(mask_HxW.max(axis=0) > 0)
    if rows.size == 0:
        return None
    # Grid cell j spans window u in [j - 0.5, j + 0.5].
    corners_2x2 = np.array([[cols[0] - 0.5, rows[0] - 0.5], [cols[-1] + 0.5, rows[-1] + 0.5]])
    (u0, v0), (u1, v1) = np.asarray(
        geometry.apply_affine(geometry.invert_affine(window_2x3), corners_2x2))
    return np.array([max(u0, -0.5), max(v0, -0.5), min(u1, width - 0.5), min(v1, height - 0.5)])


def corrupt_mask(mask_HxW, rng, holes=2, hole_size=0.08, edge_noise=0.35, shadow_blobs=1):
    """Degrades a clean mask the way an unsupervised segmenter does.

    Ragged edges: the mask is blurred, a smooth random field added and the result re-thresholded
    (softly, keeping values in [0, 1]). Holes: random ellipses inside the foreground are
    cleared. Shadow blobs: flat ellipses stuck to the silhouette's lowest rows are added.

    Args:
        mask_HxW: float mask in [0, 1].
        rng: a `numpy.random.Generator`.
        holes: number of holes.
        hole_size: hole radius as a fraction of the image side.
        edge_noise: strength of the edge perturbation (0 keeps the edges).
        shadow_blobs: number of shadow blobs.

    Returns:
        float32 mask in [0, 1], same shape.
    """
    mask = np.asarray(mask_HxW, np.float64)
    height, width = mask.shape
    side = max(height, width)
    rows, cols = np.mgrid[:height, :width]
    foreground = np.argwhere(mask > 0.5)
    if foreground.size == 0:
        return mask.astype(np.float32)
    if edge_noise > 0:
        field = ndimage.gaussian_filter(rng.normal(size=mask.shape), side / 24.0)
        field /= max(np.abs(field).max(), 1e-9)
        blurred = ndimage.gaussian_filter(mask, side / 80.0)
        mask = np.clip((blurred - 0.5 + edge_noise * 0.5 * field) * 6.0 + 0.5, 0.0, 1.0)
    for _ in range(holes):
        ci, cj = foreground[rng.integers(len(foreground))]
        ri, rj = rng.uniform(0.3, 1.0, size=2) * hole_size * side
        mask[((rows - ci) / ri) ** 2 + ((cols - cj) / rj) ** 2 < 1.0] = 0.0
    bottom = foreground[:, 0].max()
    feet = foreground[foreground[:, 0] >= bottom - 0.05 * side]
    for _ in range(shadow_blobs):
        cj = feet[rng.integers(len(feet)), 1] + rng.normal() * 0.05 * side
        ri, rj = rng.uniform(0.01, 0.03) * side, rng.uniform(0.08, 0.2) * side
        mask[((rows - bottom) / ri) ** 2 + ((cols - cj) / rj) ** 2 < 1.0] = 1.0
    return mask.astype(np.float32)


def render_views(capsules, body, scene, rig, out_size, supersample=2, margin=frames.CROP_MARGIN):
    """Renders one example in every camera of a rig: mask-box crop, soft mask and RGB image.

    Per view: `full_image_mask_bbox` -> `frames.crop_from_mask_bbox` -> `render_view`.

    Args:
        capsules: (start_Cx3, end_Cx3, radius_C, part_C) from `body.capsules` (world, mm).
        body: the `body.BodyShape`.
        scene: `rig.Scene`.
        rig: list of cameras with `intrinsics`, `extrinsics`, `width`, `height` (e.g.
          `data_builders.cameras.Camera`; lens distortion is ignored, see the module notes).
        out_size: crop side N, pixels.
        supersample: S x S rays per pixel.
        margin: crop margin, see `frames.crop_from_mask_bbox`.

    Returns:
        (masks_VxNxN float32, images_VxNxNx3 uint8, crops_Vx2x3 float64), or None when the body
        is in no pixel of some view.
    """
    masks, images, crops = [], [], []
    for view, cam in enumerate(rig):
        bbox_4 = full_image_mask_bbox(capsules, cam.intrinsics, cam.extrinsics, cam.width,
                                      cam.height)
        if bbox_4 is None:
            return None
        crop_2x3 = frames.crop_from_mask_bbox(bbox_4, out_size, margin)
        mask_NxN, image_NxNx3 = render_view(capsules, body, scene, cam.intrinsics,
                                            cam.extrinsics, crop_2x3, out_size, supersample,
                                            view_index=view)
        masks.append(mask_NxN)
        images.append(image_NxNx3)
        crops.append(crop_2x3)
    return np.stack(masks), np.stack(images), np.stack(crops)
