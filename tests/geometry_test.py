"""Tests for maskpose_jax.geometry against NumPy float64 references, round trips and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from maskpose_jax import geometry


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _random_camera(rng, depth_mm=4000.0):
    """A random K (with a little skew), and [R|t] that puts the world origin ~depth_mm ahead."""
    rot = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    t = np.array([rng.normal(0, 200), rng.normal(0, 200), depth_mm + rng.normal(0, 300)])
    fx, fy = rng.uniform(800, 1200, size=2)
    intrinsics = np.array([[fx, rng.normal(0, 2), rng.uniform(450, 550)],
                           [0.0, fy, rng.uniform(450, 550)],
                           [0.0, 0.0, 1.0]])
    return intrinsics, np.concatenate([rot, t[:, None]], axis=1)


def _random_distortion(rng):
    return np.array([rng.normal(0, 0.2), rng.normal(0, 0.2), rng.normal(0, 0.01),
                     rng.normal(0, 0.002), rng.normal(0, 0.002)])


def _project_reference(points_world, intrinsics, extrinsics, distortion=None):
    """Per-point float64 projection, distortion in the OpenCV (k1, k2, p1, p2, k3) form."""
    uvs = []
    for point in points_world:
        x_c, y_c, z_c = extrinsics[:, :3] @ point + extrinsics[:, 3]
        x, y = x_c / z_c, y_c / z_c
        if distortion is not None:
            k1, k2, k3, p1, p2 = distortion
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
            x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                    y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
        u = intrinsics[0, 0] * x + intrinsics[0, 1] * y + intrinsics[0, 2]
        v = intrinsics[1, 1] * y + intrinsics[1, 2]
        uvs.append((u, v))
    return np.array(uvs)


def _rig(rng, num_views):
    cams = [_random_camera(rng) for _ in range(num_views)]
    projections = np.stack([k @ e for k, e in cams])
    return cams, projections


def test_world_cam_round_trip(x64):
    rng = np.random.default_rng(0)
    _, extrinsics = _random_camera(rng)
    points_world = rng.normal(0, 500, size=(7, 3))
    points_cam = np.asarray(geometry.cam_from_world(points_world, extrinsics))
    expected = np.array([extrinsics[:, :3] @ p + extrinsics[:, 3] for p in points_world])
    np.testing.assert_allclose(points_cam, expected, atol=1e-9)
    np.testing.assert_allclose(geometry.world_from_cam(points_cam, extrinsics), points_world,
                               atol=1e-9)
    center = np.asarray(geometry.camera_center(extrinsics))
    np.testing.assert_allclose(geometry.cam_from_world(center[None], extrinsics), 0.0,
                               atol=1e-9)


@pytest.mark.parametrize("with_distortion", [False, True])
def test_project_matches_float64_reference(x64, with_distortion):
    rng = np.random.default_rng(1)
    intrinsics, extrinsics = _random_camera(rng)
    distortion = _random_distortion(rng) if with_distortion else None
    points_world = rng.normal(0, 600, size=(11, 3))
    expected = _project_reference(points_world, intrinsics, extrinsics, distortion)
    uv = geometry.project(points_world, intrinsics, extrinsics, distortion)
    np.testing.assert_allclose(uv, expected, atol=1e-8)
    points_cam = geometry.cam_from_world(points_world, extrinsics)
    np.testing.assert_allclose(geometry.project_cam(points_cam, intrinsics, distortion),
                               expected, atol=1e-8)


def test_project_float32_close_to_reference():
    rng = np.random.default_rng(2)
    intrinsics, extrinsics = _random_camera(rng)
    distortion = _random_distortion(rng)
    points_world = rng.normal(0, 600, size=(11, 3))
    expected = _project_reference(points_world, intrinsics, extrinsics, distortion)
    uv = jax.jit(geometry.project)(points_world.astype(np.float32), intrinsics, extrinsics,
                                   distortion)
    assert uv.dtype == jnp.float32
    np.testing.assert_allclose(uv, expected, atol=2e-3)


def test_distortion_zero_is_pinhole_and_nonzero_is_not(x64):
    rng = np.random.default_rng(3)
    xy = rng.normal(0, 0.3, size=(9, 2))
    np.testing.assert_allclose(geometry.distort(xy, np.zeros(5)), xy, atol=1e-15)
    assert np.abs(geometry.distort(xy, _random_distortion(rng)) - xy).max() > 1e-3


def _distort_reference(xy, distortion):
    """float64 distortion of normalized points, in OpenCV's (k1, k2, p1, p2, k3) form."""
    k1, k2, k3, p1, p2 = distortion
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                     y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], axis=-1)


@pytest.mark.parametrize("seed", range(4))
def test_undistort_inverts_the_float64_lens(seed):
    rng = np.random.default_rng(seed)
    distortion = np.array([rng.normal(0, 0.3), rng.normal(0, 0.1), rng.normal(0, 0.02),
                           rng.normal(0, 0.01), rng.normal(0, 0.01)])
    xy = rng.uniform(-0.6, 0.6, size=(200, 2))  # a 1,000 px image at f = 1,150 px: |x| < 0.45
    xy_d = _distort_reference(xy, distortion)
    with jax.enable_x64(True):
        np.testing.assert_allclose(geometry.undistort(xy_d, distortion), xy, atol=1e-10)
    undone = geometry.undistort(jnp.asarray(xy_d, jnp.float32),
                                jnp.asarray(distortion, jnp.float32))
    np.testing.assert_allclose(undone, xy, atol=2e-6)
    # pinhole_px: pixels through the lens -> where the pinhole of the same K sees the ray.
    intrinsics, _ = _random_camera(rng)
    uv_lens = xy_d @ intrinsics[:2, :2].T + intrinsics[:2, 2]
    with jax.enable_x64(True):
        np.testing.assert_allclose(geometry.pinhole_px(uv_lens, intrinsics, distortion),
                                   xy @ intrinsics[:2, :2].T + intrinsics[:2, 2], atol=1e-6)


def test_undistort_without_lens_is_the_identity_and_stays_finite_far_away(x64):
    rng = np.random.default_rng(5)
    xy = rng.normal(0, 0.4, size=(20, 2))
    np.testing.assert_array_equal(geometry.undistort(xy, np.zeros(5)), xy)
    # Far outside the image (a wild prediction), where a barrel lens is not invertible: finite
    # values and gradients; a point with no solution keeps its coordinates.
    far = np.array([[3.0, 0.5], [-40.0, 25.0], [1e3, -1e3], [0.2, 0.1]])
    barrel = np.array([-0.3, 0.05, 0.0, 1e-3, 1e-3])
    out = geometry.undistort(far, barrel)
    assert np.isfinite(out).all()
    residual = np.linalg.norm(_distort_reference(np.asarray(out), barrel) - far, axis=-1)
    solved = residual < geometry.UNDISTORT_TOLERANCE
    np.testing.assert_array_equal(np.asarray(out)[~solved], far[~solved])
    assert solved[-1]  # a point in the image is solved
    gradient = jax.grad(lambda p: jnp.sum(geometry.undistort(p, barrel) ** 2))(jnp.asarray(far))
    assert np.isfinite(gradient).all()


def test_projection_matrix_consistent_with_project(x64):
    rng = np.random.default_rng(4)
    intrinsics, extrinsics = _random_camera(rng)
    points_world = rng.normal(0, 600, size=(8, 3))
    proj = np.asarray(geometry.projection_matrix(intrinsics, extrinsics))
    homog = np.concatenate([points_world, np.ones((8, 1))], axis=1) @ proj.T
    np.testing.assert_allclose(homog[:, :2] / homog[:, 2:],
                               geometry.project(points_world, intrinsics, extrinsics),
                               atol=1e-8)


@pytest.mark.parametrize("num_views", [2, 3, 4])
def test_triangulate_noise_free_is_exact(x64, num_views):
    rng = np.random.default_rng(10 + num_views)
    cams, projections = _rig(rng, num_views)
    points_world = rng.normal(0, 500, size=(6, 3))
    points_2d = np.stack([_project_reference(points_world, k, e) for k, e in cams])
    np.testing.assert_allclose(geometry.triangulate(points_2d, projections), points_world,
                               atol=1e-6)
    # The default float32 path stays well under a millimetre.
    with jax.enable_x64(False):
        recovered = geometry.triangulate(points_2d.astype(np.float32),
                                         projections.astype(np.float32))
    assert np.abs(np.asarray(recovered) - points_world).max() < 0.1


def _weighted_plane_lstsq(points_2d, projections, weights):
    """Float64 reference: per point, lstsq over the weighted, |a|-normalized DLT rows."""
    out = []
    for n in range(points_2d.shape[1]):
        rows = []
        for v in range(points_2d.shape[0]):
            for i in range(2):
                row = points_2d[v, n, i] * projections[v, 2] - projections[v, i]
                rows.append(weights[v, n] * row / np.linalg.norm(row[:3]))
        rows = np.array(rows)
        out.append(np.linalg.lstsq(rows[:, :3], -rows[:, 3], rcond=None)[0])
    return np.array(out)


def test_triangulate_with_noise_and_weights(x64):
    rng = np.random.default_rng(20)
    cams, projections = _rig(rng, 4)
    points_world = rng.normal(0, 500, size=(10, 3))
    points_2d = np.stack([_project_reference(points_world, k, e) for k, e in cams])
    noisy_2d = points_2d + rng.normal(0, 0.5, size=points_2d.shape)
    weights = rng.uniform(0.2, 1.0, size=(4, 10))
    recovered = np.asarray(geometry.triangulate(noisy_2d, projections, weights))
    np.testing.assert_allclose(recovered, _weighted_plane_lstsq(noisy_2d, projections, weights),
                               atol=1e-6)
    # Half a pixel of noise at f ~ 1000 px and 4 m: a few millimetres.
    assert np.linalg.norm(recovered - points_world, axis=-1).max() < 15.0


@pytest.mark.parametrize("garbage", [1e4, np.nan])
def test_triangulate_ignores_zero_weight_view(x64, garbage):
    rng = np.random.default_rng(30)
    cams, projections = _rig(rng, 4)
    points_world = rng.normal(0, 500, size=(5, 3))
    points_2d = np.stack([_project_reference(points_world, k, e) for k, e in cams])
    points_2d = points_2d + rng.normal(0, 1.0, size=points_2d.shape)
    weights = rng.uniform(0.5, 1.0, size=(4, 5))
    weights[2] = 0.0
    points_2d[2] = garbage * rng.normal(size=points_2d[2].shape)
    keep = [0, 1, 3]
    expected = geometry.triangulate(points_2d[keep], projections[keep], weights[keep])
    np.testing.assert_allclose(geometry.triangulate(points_2d, projections, weights), expected,
                               atol=1e-9)

    def loss(points, w):
        return jnp.sum(geometry.triangulate(points, projections, w) ** 2)

    grad_points, grad_weights = jax.grad(loss, argnums=(0, 1))(points_2d, weights)
    assert np.all(np.isfinite(grad_points)) and np.all(np.isfinite(grad_weights))
    np.testing.assert_array_equal(grad_points[2], 0.0)


def test_triangulate_jit_and_vmap(x64):
    rng = np.random.default_rng(40)
    batch_points, batch_projections = [], []
    for _ in range(3):
        cams, projections = _rig(rng, 3)
        points_world = rng.normal(0, 500, size=(4, 3))
        batch_points.append(np.stack([_project_reference(points_world, k, e) for k, e in cams]))
        batch_projections.append(projections)
    batch_points, batch_projections = np.stack(batch_points), np.stack(batch_projections)
    looped = np.stack([geometry.triangulate(p, q) for p, q in zip(batch_points,
                                                                   batch_projections)])
    batched = jax.jit(jax.vmap(geometry.triangulate))(batch_points, batch_projections)
    np.testing.assert_allclose(batched, looped, atol=1e-8)


def test_triangulate_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(50)
    cams, projections = _rig(rng, 3)
    points_world = rng.normal(0, 500, size=(2, 3))
    points_2d = np.stack([_project_reference(points_world, k, e) for k, e in cams])
    points_2d = points_2d + rng.normal(0, 2.0, size=points_2d.shape)
    weights = rng.uniform(0.5, 1.0, size=(3, 2))
    coeffs = rng.normal(size=(2, 3))

    def loss(points, w):
        return jnp.sum(coeffs * geometry.triangulate(points, projections, w))

    grad_points, grad_weights = jax.grad(loss, argnums=(0, 1))(points_2d, weights)
    for arg, grad, step in ((0, grad_points, 1e-4), (1, grad_weights, 1e-6)):
        args = [points_2d, weights]
        numeric = np.zeros_like(args[arg])
        for idx in np.ndindex(args[arg].shape):
            plus, minus = args[arg].copy(), args[arg].copy()
            plus[idx] += step
            minus[idx] -= step
            f_plus = loss(*[plus if i == arg else a for i, a in enumerate(args)])
            f_minus = loss(*[minus if i == arg else a for i, a in enumerate(args)])
            numeric[idx] = (f_plus - f_minus) / (2 * step)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_affine_apply_and_invert_round_trip(x64):
    rng = np.random.default_rng(60)
    affine = np.concatenate([np.eye(2) * 2.0 + rng.normal(0, 0.3, size=(2, 2)),
                             rng.normal(0, 50, size=(2, 1))], axis=1)
    points = rng.uniform(0, 1000, size=(9, 2))
    mapped = np.asarray(geometry.apply_affine(affine, points))
    expected = np.array([affine @ np.array([u, v, 1.0]) for u, v in points])
    np.testing.assert_allclose(mapped, expected, atol=1e-9)
    inverse = geometry.invert_affine(affine)
    np.testing.assert_allclose(geometry.apply_affine(inverse, mapped), points, atol=1e-9)
    np.testing.assert_allclose(geometry.invert_affine(inverse), affine, atol=1e-9)


def test_crop_affine_maps_box_edges_to_pixel_edges(x64):
    rng = np.random.default_rng(70)
    center, side, out_size = rng.uniform(300, 700, size=2), rng.uniform(100, 400), 64
    affine = geometry.crop_affine(center, side, out_size)
    half = side / 2.0
    corners = np.array([center - half, center + half, [center[0] + half, center[1] - half]])
    np.testing.assert_allclose(
        geometry.apply_affine(affine, corners),
        [[-0.5, -0.5], [out_size - 0.5, out_size - 0.5], [out_size - 0.5, -0.5]], atol=1e-9)
    np.testing.assert_allclose(geometry.apply_affine(affine, center[None]),
                               [[(out_size - 1) / 2.0] * 2], atol=1e-9)
    jitted = jax.jit(geometry.crop_affine, static_argnums=2)(center, side, out_size)
    np.testing.assert_allclose(jitted, affine, atol=1e-9)


def test_normalized_crop_coordinates(x64):
    size = 48
    corners_px = np.array([[0.0, 0.0], [size - 1.0, size - 1.0], [(size - 1) / 2.0, 0.0]])
    np.testing.assert_allclose(geometry.normalized_from_crop_px(corners_px, size),
                               [[-1.0, -1.0], [1.0, 1.0], [0.0, -1.0]], atol=1e-12)
    rng = np.random.default_rng(80)
    uv = rng.uniform(-5, size + 5, size=(10, 2))
    round_trip = geometry.crop_px_from_normalized(
        geometry.normalized_from_crop_px(uv, size), size)
    np.testing.assert_allclose(round_trip, uv, atol=1e-9)


def test_lift_to_cam_inverts_projection(x64):
    rng = np.random.default_rng(90)
    intrinsics, _ = _random_camera(rng)
    root_depth, depth_range, size = 4200.0, 2000.0, 64
    joints_cam = rng.normal(0, 300, size=(17, 3)) + np.array([100.0, -50.0, root_depth])
    joints_cam[0] = [100.0, -50.0, root_depth]
    uv = _project_reference(joints_cam, intrinsics, np.eye(3, 4))
    crop = np.asarray(geometry.crop_affine(uv.mean(axis=0), 500.0, size))
    xy = np.asarray(geometry.normalized_from_crop_px(
        np.array([crop @ np.array([u, v, 1.0]) for u, v in uv]), size))
    z = (joints_cam[:, 2] - root_depth) / (depth_range / 2.0)
    keypoints = np.concatenate([xy, z[:, None]], axis=1)
    lifted = np.asarray(geometry.lift_to_cam(keypoints, crop, intrinsics, root_depth, size,
                                             depth_range))
    np.testing.assert_allclose(lifted, joints_cam, atol=1e-7)
    np.testing.assert_allclose(geometry.project_cam(lifted, intrinsics), uv, atol=1e-8)


def _random_similarity(rng):
    rot = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    return rng.uniform(0.5, 2.0), rot, rng.normal(0, 300, size=3)


def test_similarity_transform_recovers_known_similarity(x64):
    rng = np.random.default_rng(100)
    scale, rot, t = _random_similarity(rng)
    source = rng.normal(0, 400, size=(17, 3))
    target = scale * source @ rot.T + t
    s_fit, rot_fit, t_fit = geometry.similarity_transform(source, target)
    np.testing.assert_allclose(s_fit, scale, rtol=1e-10)
    np.testing.assert_allclose(rot_fit, rot, atol=1e-10)
    np.testing.assert_allclose(t_fit, t, atol=1e-7)
    np.testing.assert_allclose(geometry.align_similarity(source, target), target, atol=1e-7)

    rigid_target = source @ rot.T + t
    s_fit, rot_fit, t_fit = geometry.similarity_transform(source, rigid_target, scale=False)
    assert float(s_fit) == 1.0
    np.testing.assert_allclose(rot_fit, rot, atol=1e-10)
    np.testing.assert_allclose(geometry.align_similarity(source, rigid_target, scale=False),
                               rigid_target, atol=1e-7)


def test_similarity_transform_is_least_squares_and_proper(x64):
    rng = np.random.default_rng(110)
    source = rng.normal(0, 400, size=(12, 3))
    target = source * np.array([1.0, 1.0, -1.0]) + rng.normal(0, 50, size=(12, 3))
    s_fit, rot_fit, t_fit = geometry.similarity_transform(source, target)
    assert np.isclose(np.linalg.det(rot_fit), 1.0)
    np.testing.assert_allclose(rot_fit @ np.asarray(rot_fit).T, np.eye(3), atol=1e-10)
    best = np.sum((s_fit * source @ np.asarray(rot_fit).T + t_fit - target) ** 2)
    # No random proper similarity near the optimum does better.
    for _ in range(200):
        d_rot = Rotation.from_rotvec(rng.normal(0, 0.05, size=3)).as_matrix()
        s = s_fit * np.exp(rng.normal(0, 0.05))
        t = t_fit + rng.normal(0, 10, size=3)
        assert np.sum((s * source @ (d_rot @ rot_fit).T + t - target) ** 2) >= best


def test_rotation_about_z(x64):
    for angle in np.random.default_rng(120).uniform(-np.pi, np.pi, size=4):
        np.testing.assert_allclose(geometry.rotation_about_z(angle),
                                   Rotation.from_euler("z", angle).as_matrix(), atol=1e-12)


def test_look_at_extrinsics(x64):
    rng = np.random.default_rng(130)
    intrinsics = np.array([[1000.0, 0.0, 500.0], [0.0, 1000.0, 480.0], [0.0, 0.0, 1.0]])
    for _ in range(4):
        center = np.array([*rng.uniform(-5000, 5000, size=2), rng.uniform(500, 2500)])
        target = np.array([*rng.uniform(-500, 500, size=2), rng.uniform(500, 1500)])
        extrinsics = np.asarray(geometry.look_at_extrinsics(center, target))
        rot = extrinsics[:, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(rot), 1.0)
        np.testing.assert_allclose(geometry.camera_center(extrinsics), center, atol=1e-9)
        target_cam = np.asarray(geometry.cam_from_world(target[None], extrinsics))[0]
        np.testing.assert_allclose(target_cam[:2], 0.0, atol=1e-9)
        np.testing.assert_allclose(target_cam[2], np.linalg.norm(target - center), rtol=1e-12)
        uv = np.asarray(geometry.project(np.stack([target, target + [0, 0, 100.0]]), intrinsics,
                                         extrinsics))
        np.testing.assert_allclose(uv[0], [500.0, 480.0], atol=1e-9)
        assert uv[1, 1] < uv[0, 1]  # world up is image up (smaller v)
