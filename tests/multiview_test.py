"""Tests for maskpose_jax.multiview: camera round trips and NumPy float64 references."""

import jax
import jax.numpy as jnp
import numpy as np

from maskpose_jax import geometry
from maskpose_jax import losses
from maskpose_jax import multiview
from maskpose_jax import skeleton
from references import project_reference

SIZE = 32
DEPTH_RANGE_MM = 2000.0

# A standing pose in the world frame (Z up, facing +Y, right side towards +X), mm.
_TEMPLATE_JX3 = np.array([
    [0, 0, 950], [120, 0, 950], [120, 20, 520], [120, 0, 80], [-120, 0, 950], [-120, 20, 520],
    [-120, 0, 80], [0, 0, 1180], [0, 0, 1450], [0, 30, 1550], [0, 20, 1680], [-170, 0, 1430],
    [-200, 0, 1150], [-210, 50, 900], [170, 0, 1430], [200, 0, 1150], [210, 50, 900]], float)


# Jitted once per module: eager dispatch of every small op costs more than compiling.
oracle_targets = jax.jit(multiview.oracle_targets, static_argnums=(5,))
triangulate_root = jax.jit(multiview.triangulate_root, static_argnums=(4,))
lift_views = jax.jit(multiview.lift_views, static_argnums=(5,))
project_to_views = jax.jit(multiview.project_to_views, static_argnums=(5,))
pinhole_keypoints = jax.jit(multiview.pinhole_keypoints, static_argnums=(4,))
look_at = jax.jit(geometry.look_at_extrinsics)
crop_affine = jax.jit(geometry.crop_affine, static_argnums=(2,))


def random_pose(rng):
    """A perturbed template, turned about Z and moved on the floor: Jx3 world mm, float64."""
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]])
    joints = _TEMPLATE_JX3 + rng.normal(0, 40, size=_TEMPLATE_JX3.shape)
    return joints @ rot.T + np.array([rng.normal(0, 200), rng.normal(0, 200), 0.0])


def random_rig(rng, joints_world, num_views, size=SIZE, distortion=False):
    """Cameras ~4 m around the origin looking at the person, crops around the projected pose.

    Returns float64 (crop Vx2x3, intrinsics Vx3x3, extrinsics Vx3x4, distortion Vx5).
    """
    crops, intrinsics, extrinsics, dists = [], [], [], []
    azimuths = rng.uniform(0, 2 * np.pi) + np.arange(num_views) * 2 * np.pi / num_views
    for azimuth in azimuths + rng.normal(0, 0.2, num_views):
        radius = rng.uniform(3500, 4500)
        centre = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth),
                           rng.uniform(800, 1600)])
        ext = np.asarray(look_at(centre, np.array([0.0, 0.0, 1000.0]) + rng.normal(0, 100, 3)),
                         np.float64)
        fx, fy = rng.uniform(900, 1200, size=2)
        k = np.array([[fx, 0, rng.uniform(480, 520)], [0, fy, rng.uniform(480, 520)], [0, 0, 1]])
        dist = (np.array([rng.normal(0, 0.1), rng.normal(0, 0.05), 0.0, rng.normal(0, 1e-3),
                          rng.normal(0, 1e-3)]) if distortion else np.zeros(5))
        uv = project_reference(joints_world, k, ext, dist)
        lo, hi = uv.min(0), uv.max(0)
        side = 1.3 * np.max(hi - lo)
        crops.append(np.asarray(crop_affine(0.5 * (lo + hi), side, size), np.float64))
        intrinsics.append(k)
        extrinsics.append(ext)
        dists.append(dist)
    return np.array(crops), np.array(intrinsics), np.array(extrinsics), np.array(dists)


def normalized_reference(uv, crop, size):
    crop_uv = uv @ crop[:, :2].T + crop[:, 2]
    return -1.0 + 2.0 * crop_uv / (size - 1)


def _f32(*arrays):
    return tuple(jnp.asarray(a, jnp.float32) for a in arrays)


def test_round_trip_recovers_the_true_pose():
    rng = np.random.default_rng(0)
    joints = random_pose(rng)
    crop, k, ext, dist = random_rig(rng, joints, 3)
    crop32, k32, ext32, dist32 = _f32(crop, k, ext, dist)
    targets = oracle_targets(jnp.asarray(joints, jnp.float32), crop32, k32, ext32,
                                       dist32, SIZE, DEPTH_RANGE_MM)
    valid = jnp.ones(3)
    root = triangulate_root(targets, crop32, k32, ext32, SIZE, valid, DEPTH_RANGE_MM)
    np.testing.assert_allclose(root, joints[skeleton.PELVIS], atol=5e-3)

    joints_cam, joints_world = lift_views(targets, root, crop32, k32, ext32, SIZE,
                                                    DEPTH_RANGE_MM)
    for v in range(3):
        np.testing.assert_allclose(joints_world[v], joints, atol=1e-2)
        np.testing.assert_allclose(joints_cam[v], joints @ ext[v, :, :3].T + ext[v, :, 3],
                                   atol=3e-2)

    proj = project_to_views(joints_world, crop32, k32, ext32, dist32, SIZE)
    assert proj.shape == (3, 3, skeleton.NUM_JOINTS, 2)
    for v in range(3):
        for w in range(3):
            np.testing.assert_allclose(proj[v, w], targets[w, :, :2], atol=1e-5)

    assert float(losses.agreement_loss(joints_world, valid)) < 1e-4
    corrupted = targets.at[1, 5:9].add(0.2)
    _, corrupted_world = lift_views(corrupted, root, crop32, k32, ext32, SIZE,
                                              DEPTH_RANGE_MM)
    assert float(losses.agreement_loss(corrupted_world, valid)) > 0.01


def test_oracle_targets_and_projection_match_numpy_with_distortion():
    rng = np.random.default_rng(1)
    joints = random_pose(rng)
    crop, k, ext, dist = random_rig(rng, joints, 3, distortion=True)
    targets = oracle_targets(*_f32(joints, crop, k, ext, dist), SIZE, DEPTH_RANGE_MM)
    poses = np.stack([joints + rng.normal(0, 50, joints.shape) for _ in range(3)])
    proj = project_to_views(*_f32(poses, crop, k, ext, dist), SIZE)
    for w in range(3):
        xy_ref = normalized_reference(project_reference(joints, k[w], ext[w], dist[w]), crop[w],
                                      SIZE)
        depth_ref = (joints @ ext[w, :, :3].T + ext[w, :, 3])[:, 2]
        z_ref = (depth_ref - depth_ref[skeleton.PELVIS]) / (DEPTH_RANGE_MM / 2)
        np.testing.assert_allclose(targets[w, :, :2], xy_ref, atol=1e-5)
        np.testing.assert_allclose(targets[w, :, 2], z_ref, atol=1e-6)
        for v in range(3):
            ref = normalized_reference(project_reference(poses[v], k[w], ext[w], dist[w]),
                                       crop[w], SIZE)
            np.testing.assert_allclose(proj[v, w], ref, atol=1e-5)


def test_round_trip_through_lenses_recovers_the_true_pose():
    """Keypoints seen through distorting lenses: undone (pinhole_keypoints), the root
    triangulates and every view lifts to the true pose, and the projection through each lens
    gives the keypoints back."""
    rng = np.random.default_rng(8)
    joints = random_pose(rng)
    crop, k, ext, _ = random_rig(rng, joints, 3)
    dist = np.array([[-0.25, 0.12, 0.0, 2e-3, -1e-3], [0.15, -0.05, 0.01, -2e-3, 1e-3],
                     [-0.1, 0.3, -0.02, 0.0, 2e-3]])  # strong lenses (H36M's k1: -0.2 .. -0.21)
    crop32, k32, ext32, dist32 = _f32(crop, k, ext, dist)
    seen = oracle_targets(jnp.asarray(joints, jnp.float32), crop32, k32, ext32, dist32, SIZE,
                          DEPTH_RANGE_MM)
    pinhole = pinhole_keypoints(seen, crop32, k32, dist32, SIZE)
    assert float(jnp.abs(pinhole - seen).max()) > 1e-3  # the lenses matter at this size
    np.testing.assert_array_equal(pinhole[..., 2], seen[..., 2])
    # No lens: the keypoints and their gradient unchanged, bit for bit.
    no_lens = jnp.zeros_like(dist32)
    np.testing.assert_array_equal(pinhole_keypoints(seen, crop32, k32, no_lens, SIZE), seen)
    grad = jax.grad(lambda kp: jnp.sum(jnp.sin(pinhole_keypoints(kp, crop32, k32, no_lens,
                                                                 SIZE))))(seen)
    np.testing.assert_array_equal(grad, jnp.cos(seen))
    valid = jnp.ones(3)
    root = triangulate_root(pinhole, crop32, k32, ext32, SIZE, valid, DEPTH_RANGE_MM)
    np.testing.assert_allclose(root, joints[skeleton.PELVIS], atol=5e-2)
    _, joints_world = lift_views(pinhole, root, crop32, k32, ext32, SIZE, DEPTH_RANGE_MM)
    for v in range(3):
        np.testing.assert_allclose(joints_world[v], joints, atol=0.1)
    proj = project_to_views(joints_world, crop32, k32, ext32, dist32, SIZE)
    for v in range(3):
        np.testing.assert_allclose(proj[v, v], seen[v, :, :2], atol=1e-5)
    # Without undoing the lenses the same keypoints lift centimetres off.
    raw_root = triangulate_root(seen, crop32, k32, ext32, SIZE, valid, DEPTH_RANGE_MM)
    _, raw_world = lift_views(seen, raw_root, crop32, k32, ext32, SIZE, DEPTH_RANGE_MM)
    assert float(jnp.abs(raw_world - joints).max()) > 10.0


def test_lift_views_matches_numpy():
    rng = np.random.default_rng(2)
    joints = random_pose(rng)
    crop, k, ext, _ = random_rig(rng, joints, 2)
    k[:, 0, 1] = rng.normal(0, 2, 2)  # a little skew
    keypoints = rng.uniform(-1, 1, size=(2, skeleton.NUM_JOINTS, 3))
    root = joints[skeleton.PELVIS] + rng.normal(0, 100, 3)
    joints_cam, joints_world = lift_views(*_f32(keypoints, root, crop, k, ext), SIZE,
                                                    DEPTH_RANGE_MM)
    for v in range(2):
        root_depth = (ext[v, :, :3] @ root + ext[v, :, 3])[2]
        lin_inv = np.linalg.inv(crop[v][:, :2])
        for j in range(skeleton.NUM_JOINTS):
            crop_uv = (keypoints[v, j, :2] + 1) * (SIZE - 1) / 2
            uv = lin_inv @ (crop_uv - crop[v][:, 2])
            depth = root_depth + keypoints[v, j, 2] * DEPTH_RANGE_MM / 2
            cam = depth * np.linalg.solve(k[v], np.array([uv[0], uv[1], 1.0]))
            np.testing.assert_allclose(joints_cam[v, j], cam, rtol=1e-5, atol=2e-2)
            world = ext[v, :, :3].T @ (cam - ext[v, :, 3])
            np.testing.assert_allclose(joints_world[v, j], world, rtol=1e-5, atol=2e-2)


def test_triangulate_root_ignores_invalid_views_and_has_no_gradient():
    rng = np.random.default_rng(3)
    joints = random_pose(rng)
    crop, k, ext, dist = _f32(*random_rig(rng, joints, 4))
    targets = oracle_targets(jnp.asarray(joints, jnp.float32), crop, k, ext, dist,
                                       SIZE, DEPTH_RANGE_MM)
    valid = jnp.array([1.0, 0.0, 1.0, 1.0])
    root = triangulate_root(targets, crop, k, ext, SIZE, valid, DEPTH_RANGE_MM)
    np.testing.assert_allclose(root, joints[skeleton.PELVIS], atol=5e-3)
    garbage = triangulate_root(
        targets.at[1].set(0.7), crop.at[1].set(jnp.nan), k.at[1].set(0.0), ext.at[1].set(jnp.inf),
        SIZE, valid, DEPTH_RANGE_MM)
    np.testing.assert_array_equal(garbage, root)

    noisy = targets + jnp.asarray(rng.normal(0, 0.02, targets.shape), jnp.float32)
    grad = jax.grad(lambda kp: jnp.sum(triangulate_root(
        kp, crop, k, ext, SIZE, valid, DEPTH_RANGE_MM) ** 2))(noisy)
    np.testing.assert_array_equal(grad, 0.0)


def test_single_valid_view_puts_the_root_on_its_pelvis_ray():
    rng = np.random.default_rng(4)
    joints = random_pose(rng)
    crop, k, ext, _ = random_rig(rng, joints, 2)
    keypoints = rng.uniform(-0.5, 0.5, size=(2, skeleton.NUM_JOINTS, 3))
    for valid, view in (([0.0, 1.0], 1), ([1.0, 0.0], 0)):
        root = np.asarray(triangulate_root(*_f32(keypoints, crop, k, ext), SIZE,
                                                     jnp.asarray(valid), DEPTH_RANGE_MM), float)
        assert np.all(np.isfinite(root))
        scale = np.sqrt(abs(np.linalg.det(crop[view][:, :2])))
        focal = np.sqrt(k[view, 0, 0] * k[view, 1, 1])
        depth_ref = focal * DEPTH_RANGE_MM * scale / SIZE
        root_cam = ext[view, :, :3] @ root + ext[view, :, 3]
        np.testing.assert_allclose(root_cam[2], depth_ref, rtol=1e-5)
        xy = normalized_reference(project_reference(root[None], k[view], ext[view], np.zeros(5)),
                                  crop[view], SIZE)[0]
        np.testing.assert_allclose(xy, keypoints[view, skeleton.PELVIS, :2], atol=1e-4)

    one_view = triangulate_root(*_f32(keypoints[:1], crop[:1], k[:1], ext[:1]), SIZE,
                                          jnp.ones(1), DEPTH_RANGE_MM)
    with_padding = triangulate_root(*_f32(keypoints, crop, k, ext), SIZE,
                                              jnp.array([1.0, 0.0]), DEPTH_RANGE_MM)
    np.testing.assert_allclose(one_view, with_padding, rtol=1e-6)


def test_jit_and_vmap_match_eager():
    rng = np.random.default_rng(5)
    joints = random_pose(rng)
    crop, k, ext, dist = _f32(*random_rig(rng, joints, 3, distortion=True))
    keypoints = jnp.asarray(rng.uniform(-0.5, 0.5, size=(2, 3, skeleton.NUM_JOINTS, 3)),
                            jnp.float32)
    valid = jnp.ones(3)

    def pipeline(kp):
        root = multiview.triangulate_root(kp, crop, k, ext, SIZE, valid, DEPTH_RANGE_MM)
        _, world = multiview.lift_views(kp, root, crop, k, ext, SIZE, DEPTH_RANGE_MM)
        return multiview.project_to_views(world, crop, k, ext, dist, SIZE)

    batched = jax.jit(jax.vmap(pipeline))(keypoints)
    for b in range(2):
        np.testing.assert_allclose(batched[b], pipeline(keypoints[b]), atol=1e-5)
