"""Tests for the ray-cast renderer, against float64 NumPy references."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from data_builders import cameras as cameras_lib
from data_builders import frames
from data_builders.synthetic import body as body_lib
from data_builders.synthetic import raycast
from data_builders.synthetic import rig as rig_lib
from maskpose_jax import geometry


def _point_segment_distance(points_Nx3, start_3, end_3):
    axis_3 = end_3 - start_3
    s_N = np.clip((points_Nx3 - start_3) @ axis_3 / max(axis_3 @ axis_3, 1e-300), 0.0, 1.0)
    return np.linalg.norm(points_Nx3 - (start_3 + s_N[:, None] * axis_3), axis=-1)


def _reference_hit(origin_3, dir_Nx3, start_3, end_3, radius, t_max=2e4):
    """float64 first hit of rays on a capsule, by convex minimization + bisection.

    f(t) = dist(o + t d, segment) - r is convex in t, so a ternary search finds its minimum;
    the entry point is the root of f on [0, t_min]. Returns (t_N with inf on a miss, f_min_N).
    """
    f = lambda t_N: _point_segment_distance(origin_3 + t_N[:, None] * dir_Nx3, start_3,
                                            end_3) - radius
    lo, hi = np.zeros(len(dir_Nx3)), np.full(len(dir_Nx3), t_max)
    for _ in range(200):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        smaller = f(m1) < f(m2)
        hi, lo = np.where(smaller, m2, hi), np.where(smaller, lo, m1)
    t_min = 0.5 * (lo + hi)
    f_min = f(t_min)
    lo, hi = np.zeros_like(t_min), t_min
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        inside = f(mid) <= 0.0
        hi, lo = np.where(inside, mid, hi), np.where(inside, lo, mid)
    return np.where(f_min <= 0.0, 0.5 * (lo + hi), np.inf), f_min


def _random_rays(rng, start_3, end_3, radius, count, distance):
    """Rays from one origin `distance` away, aimed near random points of the capsule."""
    center_3 = 0.5 * (start_3 + end_3)
    origin_3 = center_3 + distance * rng.normal(size=3) / np.sqrt(3.0)
    targets_Nx3 = (start_3 + rng.uniform(-0.3, 1.3, size=(count, 1)) * (end_3 - start_3)
                   + rng.normal(scale=radius, size=(count, 3)))
    dir_Nx3 = targets_Nx3 - origin_3
    return origin_3, dir_Nx3 / np.linalg.norm(dir_Nx3, axis=-1, keepdims=True)


@pytest.mark.parametrize("distance", [400.0, 1500.0, 6000.0])
def test_ray_capsule_intersection_matches_brute_force(distance):
    rng = np.random.default_rng(int(distance))
    for _ in range(4):
        start_3 = rng.normal(scale=300.0, size=3)
        end_3 = start_3 + rng.normal(scale=250.0, size=3)
        radius = rng.uniform(20.0, 120.0)
        origin_3, dir_Nx3 = _random_rays(rng, start_3, end_3, radius, 200, distance + 300.0)
        t_ref_N, f_min_N = _reference_hit(origin_3, dir_Nx3, start_3, end_3, radius)
        t_N = np.asarray(raycast.ray_capsule_intersection(
            jnp.asarray(origin_3, jnp.float32), jnp.asarray(dir_Nx3, jnp.float32),
            jnp.asarray(start_3[None], jnp.float32), jnp.asarray(end_3[None], jnp.float32),
            jnp.asarray([radius], jnp.float32)))[:, 0]
        clear_N = np.abs(f_min_N) > 0.01          # not grazing: hit or miss is unambiguous
        assert 40 < np.sum(np.isfinite(t_ref_N) & clear_N) < 190
        np.testing.assert_array_equal(np.isfinite(t_N)[clear_N], np.isfinite(t_ref_N)[clear_N])
        hit_N = np.isfinite(t_ref_N) & np.isfinite(t_N)
        # float32 with the camera metres away: within 0.07 mm at 6 m (grazing rays included).
        np.testing.assert_allclose(t_N[hit_N], t_ref_N[hit_N], atol=1e-3 + 1e-5 * distance)


def test_ray_capsule_intersection_special_cases():
    start_3, end_3, radius = np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 300.0]), 50.0
    origin_3 = np.array([10.0, -20.0, -1000.0])
    dir_Nx3 = np.array([[0.0, 0.0, 1.0],                   # along the axis: hits the start cap
                        [0.0, 0.0, -1.0],                  # away from it: no hit
                        [1.0, 0.0, 0.0]])                  # beside it, below: no hit
    t_N = np.asarray(raycast.ray_capsule_intersection(
        jnp.asarray(origin_3), jnp.asarray(dir_Nx3), jnp.asarray(start_3[None]),
        jnp.asarray(end_3[None]), jnp.asarray([radius])))[:, 0]
    assert t_N[0] == pytest.approx(1000.0 - np.sqrt(radius**2 - 10.0**2 - 20.0**2), abs=1e-3)
    assert np.isinf(t_N[1]) and np.isinf(t_N[2])
    # From a point on the axis line (no perpendicular offset): along the axis and slightly off.
    on_axis_3 = np.array([0.0, 0.0, -1000.0])
    tilted_Nx3 = np.array([[0.0, 0.0, 1.0], [0.03, 0.0, 1.0], [0.0, -0.045, 1.0]])
    tilted_Nx3 /= np.linalg.norm(tilted_Nx3, axis=-1, keepdims=True)
    t_N = np.asarray(raycast.ray_capsule_intersection(
        jnp.asarray(on_axis_3), jnp.asarray(tilted_Nx3), jnp.asarray(start_3[None]),
        jnp.asarray(end_3[None]), jnp.asarray([radius])))[:, 0]
    t_ref_N, _ = _reference_hit(on_axis_3, tilted_Nx3, start_3, end_3, radius)
    assert t_N[0] == pytest.approx(950.0, abs=1e-3)
    np.testing.assert_allclose(t_N, t_ref_N, atol=1e-2)
    # A sphere is a capsule with equal ends.
    t_sphere = np.asarray(raycast.ray_capsule_intersection(
        jnp.zeros(3), jnp.asarray([[0.0, 0.0, 1.0]]), jnp.asarray([[0.0, 3.0, 500.0]]),
        jnp.asarray([[0.0, 3.0, 500.0]]), jnp.asarray([40.0])))[0, 0]
    assert t_sphere == pytest.approx(500.0 - np.sqrt(40.0**2 - 9.0), abs=1e-3)


def test_trace_returns_nearest_capsule():
    rng = np.random.default_rng(3)
    count = 21
    start_Cx3 = rng.normal(scale=300.0, size=(count, 3))
    end_Cx3 = start_Cx3 + rng.normal(scale=200.0, size=(count, 3))
    radius_C = rng.uniform(30.0, 100.0, size=count)
    origin_3 = np.array([200.0, -4000.0, 500.0])
    targets_Nx3 = rng.normal(scale=400.0, size=(3000, 3))
    dir_Nx3 = targets_Nx3 - origin_3
    dir_Nx3 /= np.linalg.norm(dir_Nx3, axis=-1, keepdims=True)
    t_ref_NxC, f_min_NxC = (np.stack(x, axis=1) for x in zip(*[
        _reference_hit(origin_3, dir_Nx3, start_Cx3[c], end_Cx3[c], radius_C[c])
        for c in range(count)]))
    t_N, index_N = (np.asarray(x) for x in raycast._trace(
        jnp.asarray(origin_3, jnp.float32), jnp.asarray(dir_Nx3, jnp.float32),
        jnp.asarray(start_Cx3, jnp.float32), jnp.asarray(end_Cx3, jnp.float32),
        jnp.asarray(radius_C, jnp.float32)))
    t_ref_N = t_ref_NxC.min(axis=1)
    order_NxC = np.sort(t_ref_NxC, axis=1)
    # Unambiguous rays: no grazing hit, and no near-tie between the two nearest capsules.
    clear_N = (np.all(np.abs(f_min_NxC) > 0.05, axis=1)
               & ((order_NxC[:, 1] > order_NxC[:, 0] + 0.5) | np.isinf(order_NxC[:, 0])))
    hit_N = np.isfinite(t_ref_N) & clear_N
    assert hit_N.sum() > 1000
    np.testing.assert_array_equal(index_N[hit_N], t_ref_NxC[hit_N].argmin(axis=1))
    np.testing.assert_allclose(t_N[hit_N], t_ref_N[hit_N], atol=0.05)
    assert np.all(np.isinf(t_N[np.isinf(t_ref_N)]))


def _pinhole(focal, size):
    c = (size - 1) / 2.0
    return np.array([[focal, 0.0, c], [0.0, focal, c], [0.0, 0.0, 1.0]])


def test_render_mask_matches_brute_force_silhouette():
    rng = np.random.default_rng(5)
    intrinsics = _pinhole(400.0, 200)
    extrinsics = np.asarray(geometry.look_at_extrinsics(np.array([300.0, -2500.0, 800.0]),
                                                        np.zeros(3)))
    count = 3
    start_Cx3 = rng.normal(scale=150.0, size=(count, 3))
    end_Cx3 = start_Cx3 + rng.normal(scale=200.0, size=(count, 3))
    radius_C = rng.uniform(30.0, 80.0, size=count)
    capsules = (start_Cx3, end_Cx3, radius_C, np.zeros(count, np.int32))
    crop = np.asarray(geometry.crop_affine(np.array([100.0, 100.0]), 200.0, 40))
    mask = raycast.render_mask(capsules, intrinsics, extrinsics, crop, (40, 40), supersample=2)

    # Reference: a sample is covered iff its ray passes within r of a segment.
    px_from_crop = np.asarray(geometry.invert_affine(crop))
    offsets = np.array([-0.25, 0.25])
    v, u = np.meshgrid(np.arange(40.0), np.arange(40.0), indexing="ij")
    su = (u[..., None, None] + offsets[None, None, None, :]).repeat(2, axis=2)
    sv = (v[..., None, None] + offsets[None, None, :, None]).repeat(2, axis=3)
    crop_uv_Nx2 = np.stack([su.reshape(-1), sv.reshape(-1)], -1)
    uv_Nx2 = crop_uv_Nx2 @ px_from_crop[:, :2].T + px_from_crop[:, 2]
    uv1_Nx3 = np.concatenate([uv_Nx2, np.ones((len(uv_Nx2), 1))], -1)
    dir_Nx3 = uv1_Nx3 @ np.linalg.inv(intrinsics).T @ extrinsics[:, :3]
    dir_Nx3 /= np.linalg.norm(dir_Nx3, axis=-1, keepdims=True)
    origin_3 = np.asarray(geometry.camera_center(extrinsics))
    gap_N = np.full(len(dir_Nx3), np.inf)
    for c in range(count):
        s_M = np.linspace(0.0, 1.0, 2001)
        points_Mx3 = start_Cx3[c] + s_M[:, None] * (end_Cx3[c] - start_Cx3[c])
        # Squared distance from each segment point to each ray's line (the body is in front).
        along_MxN = (points_Mx3 - origin_3) @ dir_Nx3.T
        dist2_MxN = np.sum((points_Mx3 - origin_3) ** 2, -1)[:, None] - along_MxN**2
        gap_N = np.minimum(gap_N, np.sqrt(np.maximum(dist2_MxN.min(axis=0), 0.0)) - radius_C[c])
    covered_N = gap_N <= 0.0
    reference = covered_N.reshape(40, 40, 4).mean(axis=-1)
    clear = np.abs(gap_N).reshape(40, 40, 4).min(axis=-1) > 0.5
    assert reference.sum() > 100 and clear.mean() > 0.9
    np.testing.assert_array_equal(mask[clear], reference[clear])
    assert set(np.unique(mask)) <= {0.0, 0.25, 0.5, 0.75, 1.0}


@pytest.mark.parametrize("supersample", [1, 2, 3])
def test_sphere_mask_area_matches_analytic_projection(supersample):
    focal, distance, radius = 500.0, 3000.0, 150.0
    intrinsics = _pinhole(focal, 512)
    extrinsics = np.concatenate([np.eye(3), [[0.0], [0.0], [distance]]], axis=1)  # sphere at origin
    sphere = (np.zeros((1, 3)), np.zeros((1, 3)), np.array([radius]), np.zeros(1, np.int32))
    rho_px = focal * radius / np.sqrt(distance**2 - radius**2)
    crop = np.asarray(geometry.crop_affine(np.array([255.5, 255.5]), 3 * rho_px, 64))
    mask = raycast.render_mask(sphere, intrinsics, extrinsics, crop, (64, 64), supersample)
    rho_crop = rho_px * 64 / (3 * rho_px)
    assert mask.sum() == pytest.approx(np.pi * rho_crop**2, rel=0.01)
    assert mask.min() == 0.0 and mask.max() == 1.0


def _scene_body(seed):
    rng = np.random.default_rng(seed)
    body = body_lib.sample_body(rng)
    scene = rig_lib.sample_scene(rng)
    joints_Jx3 = body_lib.standing_joints() + rng.normal(scale=20.0, size=(17, 3))
    joints_Jx3[:, :2] += rng.uniform(-500.0, 500.0, size=2)
    return body, scene, joints_Jx3


def test_lambertian_shading_of_a_sphere():
    body, scene, _ = _scene_body(0)
    body = dataclasses.replace(body, stripes_Px3=body.stripes_Px3 * [0.0, 1.0, 1.0])
    toward_camera = np.array([0.3, -1.0, 0.5]) / np.linalg.norm([0.3, -1.0, 0.5])
    scene = dataclasses.replace(scene, ambient=0.2, sensor_noise=0.0, light_dir_3=toward_camera)
    intrinsics = _pinhole(600.0, 400)
    camera_center_3 = np.array([0.0, -3000.0, 1000.0])
    center_3, radius = np.array([0.0, 0.0, 1000.0]), 200.0
    extrinsics = np.asarray(geometry.look_at_extrinsics(camera_center_3, center_3))
    sphere = (center_3[None], center_3[None], np.array([radius]), np.array([body_lib.UPPER]))
    crop = np.asarray(geometry.crop_affine(np.array([199.5, 199.5]), 100.0, 32))
    mask, image = raycast.render_view(sphere, body, scene, intrinsics, extrinsics, crop, 32,
                                      supersample=1)
    assert mask.min() == 0.0 and mask.max() == 1.0
    # float64 reference at the pixel centres.
    v, u = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    px_from_crop = np.asarray(geometry.invert_affine(crop))
    uv_Nx2 = np.stack([u.ravel(), v.ravel()], -1) @ px_from_crop[:, :2].T + px_from_crop[:, 2]
    dir_Nx3 = np.concatenate([uv_Nx2, np.ones((len(uv_Nx2), 1))], -1) @ np.linalg.inv(intrinsics).T
    dir_Nx3 = dir_Nx3 @ extrinsics[:, :3]
    dir_Nx3 /= np.linalg.norm(dir_Nx3, axis=-1, keepdims=True)
    oc_3 = camera_center_3 - center_3
    b_N = dir_Nx3 @ oc_3
    disc_N = b_N**2 - (oc_3 @ oc_3 - radius**2)
    hit_N = disc_N > 0
    t_N = -b_N - np.sqrt(np.maximum(disc_N, 0.0))
    normal_Nx3 = (camera_center_3 + t_N[:, None] * dir_Nx3 - center_3) / radius
    light_N = 0.2 + 0.8 * np.maximum(normal_Nx3 @ toward_camera, 0.0)
    expected_Nx3 = 255.0 * body.colors_Px3[body_lib.UPPER] * light_N[:, None]
    np.testing.assert_array_equal(mask.ravel() == 1.0, hit_N)
    np.testing.assert_allclose(image.reshape(-1, 3)[hit_N], expected_Nx3[hit_N], atol=0.51 + 1e-3)


def test_joints_project_inside_the_rendered_mask_in_two_views():
    rig = cameras_lib.h36m_rig("S1")[:2]
    for seed in range(3):
        body, scene, joints_Jx3 = _scene_body(seed)
        capsules = body_lib.capsules(joints_Jx3, body)
        for view, cam in enumerate(rig):
            bbox = raycast.full_image_mask_bbox(capsules, cam.intrinsics, cam.extrinsics,
                                                cam.width, cam.height)
            crop = frames.crop_from_mask_bbox(bbox, 48)
            mask, image = raycast.render_view(capsules, body, scene, cam.intrinsics,
                                              cam.extrinsics, crop, 48, view_index=view)
            assert mask.shape == (48, 48) and image.shape == (48, 48, 3)
            assert mask.dtype == np.float32 and image.dtype == np.uint8
            assert mask.min() >= 0.0 and mask.max() <= 1.0
            uv_Jx2 = np.asarray(geometry.apply_affine(crop, geometry.project(
                joints_Jx3, cam.intrinsics, cam.extrinsics)))
            for u, v in np.round(uv_Jx2).astype(int):
                assert 0 <= u < 48 and 0 <= v < 48
                assert mask[max(v - 1, 0):v + 2, max(u - 1, 0):u + 2].max() >= 0.5


def test_crop_contains_the_whole_mask_with_margin():
    size, margin = 64, 0.15
    rig = cameras_lib.h36m_rig("S9")
    for seed in range(2):
        body, scene, joints_Jx3 = _scene_body(seed)
        capsules = body_lib.capsules(joints_Jx3, body)
        for cam in rig:
            bbox = raycast.full_image_mask_bbox(capsules, cam.intrinsics, cam.extrinsics,
                                                cam.width, cam.height)
            crop = frames.crop_from_mask_bbox(bbox, size, margin)
            mask = raycast.render_mask(capsules, cam.intrinsics, cam.extrinsics, crop,
                                       (size, size))
            rows = np.flatnonzero(mask.max(axis=1) > 0)
            cols = np.flatnonzero(mask.max(axis=0) > 0)
            border = size * margin / (1 + 2 * margin)
            assert min(rows[0], cols[0]) >= border - 1.5
            assert max(rows[-1], cols[-1]) <= size - 1 - border + 1.5
            # The box is tight: the long side spans what the margin leaves.
            extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
            assert extent >= size / (1 + 2 * margin) - 3


def test_full_image_bbox_matches_full_resolution_render():
    intrinsics = _pinhole(160.0, 160)
    width, height = 160, 120
    intrinsics[1, 2] = (height - 1) / 2.0
    extrinsics = np.asarray(geometry.look_at_extrinsics(np.array([0.0, -4000.0, 1000.0]),
                                                        np.array([0.0, 0.0, 900.0])))
    body, _, joints_Jx3 = _scene_body(1)
    for shift_x in (0.0, 1400.0, 9000.0):        # in view, half out of the image, far outside
        joints = joints_Jx3 - joints_Jx3[0] * [1, 1, 0] + [shift_x, 0.0, 0.0]
        capsules = body_lib.capsules(joints, body)
        full = raycast.render_mask(capsules, intrinsics, extrinsics, np.eye(2, 3),
                                   (height, width), supersample=2, image_wh=(width, height))
        bbox = raycast.full_image_mask_bbox(capsules, intrinsics, extrinsics, width, height,
                                            grid_px=64, supersample=2)
        if full.max() == 0:
            assert bbox is None
            continue
        rows, cols = np.flatnonzero(full.max(axis=1)), np.flatnonzero(full.max(axis=0))
        reference = np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5])
        cell = max(reference[2] - reference[0], reference[3] - reference[1]) / 64 + 1.0
        assert np.all(np.abs(bbox - reference) <= 1.5 * cell), (bbox, reference)
        assert bbox[0] >= -0.5 and bbox[2] <= width - 0.5


def test_render_is_deterministic_and_textured():
    body, scene, joints_Jx3 = _scene_body(4)
    capsules = body_lib.capsules(joints_Jx3, body)
    cam = cameras_lib.h36m_rig("S1")[0]
    crop = frames.crop_from_mask_bbox(raycast.full_image_mask_bbox(
        capsules, cam.intrinsics, cam.extrinsics, cam.width, cam.height), 48)
    render = lambda view: raycast.render_view(capsules, body, scene, cam.intrinsics,
                                              cam.extrinsics, crop, 48, view_index=view)
    (mask_a, image_a), (mask_b, image_b), (mask_c, image_c) = render(0), render(0), render(1)
    np.testing.assert_array_equal(mask_a, mask_b)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(mask_a, mask_c)
    assert not np.array_equal(image_a, image_c)          # sensor noise differs per view
    # Soft edges, and a background with texture (not a flat colour).
    assert np.any((mask_a > 0) & (mask_a < 1))
    background = image_a[mask_a == 0].astype(np.float64)
    assert background.std(axis=0).max() > 5.0
    other_scene = rig_lib.sample_scene(np.random.default_rng(99))
    _, image_d = raycast.render_view(capsules, body, other_scene, cam.intrinsics,
                                     cam.extrinsics, crop, 48)
    assert np.abs(image_d.astype(int) - image_a)[mask_a == 0].mean() > 10.0


def test_corrupt_mask_changes_edges_but_keeps_most_of_the_mask():
    body, _, joints_Jx3 = _scene_body(2)
    capsules = body_lib.capsules(joints_Jx3, body)
    cam = cameras_lib.h36m_rig("S1")[1]
    crop = frames.crop_from_mask_bbox(raycast.full_image_mask_bbox(
        capsules, cam.intrinsics, cam.extrinsics, cam.width, cam.height), 64)
    mask = raycast.render_mask(capsules, cam.intrinsics, cam.extrinsics, crop, (64, 64))
    corrupted = raycast.corrupt_mask(mask, np.random.default_rng(0))
    again = raycast.corrupt_mask(mask, np.random.default_rng(0))
    np.testing.assert_array_equal(corrupted, again)
    assert corrupted.dtype == np.float32 and corrupted.shape == mask.shape
    assert corrupted.min() >= 0.0 and corrupted.max() <= 1.0
    assert np.abs(corrupted - mask).mean() > 0.01
    fg, fg_corrupted = mask > 0.5, corrupted > 0.5
    iou = (fg & fg_corrupted).sum() / (fg | fg_corrupted).sum()
    assert 0.6 < iou < 0.99
    np.testing.assert_array_equal(raycast.corrupt_mask(np.zeros((8, 8)), np.random.default_rng(0)),
                                  np.zeros((8, 8), np.float32))
