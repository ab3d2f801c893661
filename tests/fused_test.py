"""Tests for the fused-pose path (maskpose_jax.fused) and the long-range mask terms of losses.

References are NumPy float64 brute force (every pixel against every bone / foreground pixel),
finite differences, and round trips through the cameras.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from experiments.configs import synthetic
from maskpose_jax import fused
from maskpose_jax import geometry
from maskpose_jax import input_pipeline
from maskpose_jax import losses
from maskpose_jax import multiview
from maskpose_jax import render
from maskpose_jax import skeleton

SIZE = 24
DEPTH_RANGE_MM = 2000.0


def segment_distance_sq_np(points_Px2, a_2, b_2):
    ab = b_2 - a_2
    t = np.clip(((points_Px2 - a_2) @ ab) / max(ab @ ab, 1e-12), 0.0, 1.0)
    return np.sum((points_Px2 - (a_2 + t[:, None] * ab)) ** 2, axis=-1)


def pixel_points_np(size):
    grid = -1.0 + 2.0 * np.arange(size) / (size - 1)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], -1)


def bone_distance_sq_np(keypoints_Jx2, size):
    points = pixel_points_np(size)
    d = np.min([segment_distance_sq_np(points, keypoints_Jx2[i], keypoints_Jx2[j])
                for i, j in skeleton.BONES], axis=0)
    return d.reshape(size, size)


def random_keypoints(rng):
    return np.asarray(skeleton.STANDING_TEMPLATE) + rng.normal(0, 0.15, (skeleton.NUM_JOINTS, 2))


def test_bone_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(3):
        kp = random_keypoints(rng)
        got = np.asarray(render.bone_distance_sq(jnp.asarray(kp, jnp.float32), SIZE))
        np.testing.assert_allclose(got, bone_distance_sq_np(kp, SIZE), atol=2e-5, rtol=1e-4)


def test_outside_distance_matches_brute_force():
    rng = np.random.default_rng(1)
    mask = (ndimage.gaussian_filter(rng.uniform(size=(SIZE, SIZE)), 3) > 0.5).astype(np.float32)
    mask[SIZE // 2, SIZE // 2] = 1.0
    points = pixel_points_np(SIZE)
    fg = points[mask.ravel() >= 0.5]
    want = np.min(np.linalg.norm(points[:, None] - fg[None], axis=-1), axis=1)
    np.testing.assert_allclose(input_pipeline.outside_distance(mask).ravel(), want, atol=1e-5)
    assert not input_pipeline.outside_distance(np.zeros((SIZE, SIZE))).any()


def test_inside_loss_matches_numpy_bilinear_and_pulls_from_outside():
    rng = np.random.default_rng(2)
    outside = rng.uniform(0, 1, (SIZE, SIZE)).astype(np.float32)
    kp = random_keypoints(rng)
    kp[3] = (1.4, 1.3)   # an ankle off the crop: its bone's samples pay the distance beyond it
    points = np.asarray(losses.bone_points(jnp.asarray(kp), 5))
    clipped = np.clip(points, -1, 1)
    uv = (clipped + 1) * (SIZE - 1) / 2
    values = ndimage.map_coordinates(outside.astype(np.float64), [uv[:, 1], uv[:, 0]], order=1,
                                     mode="nearest")
    want = np.mean(values + np.linalg.norm(points - clipped, axis=-1))
    got = float(losses.inside_loss(jnp.asarray(kp, jnp.float32), jnp.asarray(outside)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    grad = np.asarray(jax.grad(losses.inside_loss)(jnp.asarray(kp, jnp.float32),
                                                   jnp.zeros((SIZE, SIZE))))
    assert grad[3, 0] > 0 and grad[3, 1] > 0   # moving the ankle back in lowers the loss


def test_coverage_loss_matches_brute_force_and_its_gradient():
    rng = np.random.default_rng(3)
    kp = random_keypoints(rng)
    mask = (rng.uniform(size=(SIZE, SIZE)) > 0.6).astype(np.float32)
    weight = rng.uniform(1, 3, (SIZE, SIZE)).astype(np.float32)
    radius = 0.05

    def reference(k):
        d = np.sqrt(bone_distance_sq_np(k, SIZE))
        w = np.where(mask >= 0.5, weight, 0.0)
        return np.sum(w * np.maximum(d - radius, 0)) / np.sum(w)

    fn = lambda k: losses.coverage_loss(k, jnp.asarray(mask), jnp.asarray(weight), radius)
    np.testing.assert_allclose(float(fn(jnp.asarray(kp, jnp.float32))), reference(kp), rtol=1e-4)
    grad = np.asarray(jax.grad(fn)(jnp.asarray(kp, jnp.float32)))
    eps = 1e-4
    for joint, axis in ((3, 0), (13, 1), (10, 0)):
        step = np.zeros_like(kp)
        step[joint, axis] = eps
        numeric = (reference(kp + step) - reference(kp - step)) / (2 * eps)
        np.testing.assert_allclose(grad[joint, axis], numeric, rtol=2e-2, atol=2e-4)


def test_proportion_loss_is_zero_at_the_template_and_scale_free():
    template = jnp.asarray(skeleton.STANDING_TEMPLATE_MM, jnp.float32)
    assert float(fused.proportion_loss(template)) < 1e-8
    assert float(fused.proportion_loss(1.3 * template + 50.0)) < 1e-8
    stretched = template.at[skeleton.JOINT_INDEX["l_wrist"]].multiply(2.0)
    assert float(fused.proportion_loss(stretched)) > 1e-3


def rig(rng, num_views):
    """Cameras ~4 m around a person near (0, 0, 1000 mm), crops of SIZE around it."""
    target = np.array([0.0, 0.0, 1000.0])
    crops, ks, exts = [], [], []
    for azimuth in rng.uniform(0, 2 * np.pi) + np.arange(num_views) * 2 * np.pi / num_views:
        centre = np.array([4000 * np.cos(azimuth), 4000 * np.sin(azimuth), 1500.0])
        ext = np.asarray(geometry.look_at_extrinsics(centre, target), np.float64)
        k = np.array([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]])
        uv = np.asarray(geometry.project(target[None], k, ext))[0]
        crops.append(np.asarray(geometry.crop_affine(uv, 2300.0 * 1000 / 4000, SIZE)))
        ks.append(k)
        exts.append(ext)
    joints = np.asarray(skeleton.STANDING_TEMPLATE_MM) + target + rng.normal(0, 40, (17, 3))
    return (np.asarray(crops, np.float32), np.asarray(ks, np.float32),
            np.asarray(exts, np.float32), joints.astype(np.float32))


def test_fuse_views_recovers_the_pose_and_has_finite_gradients():
    crop, k, ext, joints = rig(np.random.default_rng(4), 3)
    targets = multiview.oracle_targets(joints, crop, k, ext, np.zeros((3, 5), np.float32), SIZE,
                                       DEPTH_RANGE_MM)
    valid = jnp.ones(3)
    fusedpose = fused.fuse_views(targets, crop, k, ext, valid, SIZE)
    np.testing.assert_allclose(np.asarray(fusedpose), joints, atol=0.5)
    # A padded view (valid 0) with garbage changes nothing.
    garbage = targets.at[2].set(jnp.nan)
    again = fused.fuse_views(garbage, crop, k, ext, jnp.array([1.0, 1.0, 0.0]), SIZE)
    two = fused.fuse_views(targets[:2], crop[:2], k[:2], ext[:2], jnp.ones(2), SIZE)
    np.testing.assert_allclose(np.asarray(again), np.asarray(two), atol=1e-3)
    grad = jax.grad(lambda t: jnp.sum(fused.fuse_views(t, crop, k, ext, valid, SIZE)))(targets)
    assert np.isfinite(np.asarray(grad)).all()


def fused_batch(rng, num_examples=2, num_views=3):
    fields = {k: [] for k in ("crop", "intrinsics", "extrinsics", "joints_world")}
    for _ in range(num_examples):
        for key, value in zip(fields, rig(rng, num_views)):
            fields[key].append(value)
    batch = {key: np.asarray(v, np.float32) for key, v in fields.items()}
    batch["distortion"] = np.zeros((num_examples, num_views, 5), np.float32)
    shape = (num_examples, num_views, SIZE, SIZE)
    batch["mask"] = (rng.uniform(size=shape) > 0.5).astype(np.float32)
    batch["weight"] = rng.uniform(1, 3, shape).astype(np.float32)
    batch["outside_distance"] = rng.uniform(0, 0.2, shape).astype(np.float32)
    return batch


def fused_config(**overrides):
    """The loss config of ours without the fits (`no_fit`) with `overrides` set."""
    config = copy.deepcopy(synthetic.get_config("no_fit").loss)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_fused_terms_depth_and_reprojection_vanish_at_the_truth():
    batch = fused_batch(np.random.default_rng(5))
    truth = jax.vmap(lambda j, c, k, e, d: multiview.oracle_targets(
        j, c, k, e, d, SIZE, DEPTH_RANGE_MM))(batch["joints_world"], batch["crop"],
                                              batch["intrinsics"], batch["extrinsics"],
                                              batch["distortion"])
    train_batch = {k: v for k, v in batch.items() if k != "joints_world"}
    terms = fused.fused_terms(truth, train_batch, None, fused_config(), SIZE, DEPTH_RANGE_MM,
                              capsule_width=1.2e-2)
    assert float(terms["depth"]) < 1e-4 and float(terms["reproject"]) < 1e-4
    assert float(terms["view_gap_mm"]) < 1.0
    noisy = truth + 0.05
    terms = fused.fused_terms(noisy, train_batch, None, fused_config(), SIZE, DEPTH_RANGE_MM,
                              capsule_width=1.2e-2)
    assert float(terms["reproject"]) > 1e-3
    for name in fused.FUSED_TERMS:
        assert np.isfinite(float(terms[name])), name


def test_pose_terms_match_the_per_mask_losses():
    rng = np.random.default_rng(6)
    batch = fused_batch(rng, num_examples=1)
    config = fused_config()
    views = jax.tree.map(lambda a: a[0], fused.example_views(batch, config))
    joints = jnp.asarray(batch["joints_world"][0])
    out = fused.pose_mask_terms(joints, views, config, SIZE, capsule_width=1.2e-2)
    kp = np.asarray(out["kp_VxJx2"])
    inside = np.mean([float(losses.inside_loss(kp[v], views["outside_distance"][v]))
                      for v in range(3)])
    np.testing.assert_allclose(float(out["inside"]), inside, rtol=1e-5)
    # The projected keypoints are the cameras' projection of the pose.
    for v in range(3):
        uv = geometry.project(joints, views["intrinsics"][v], views["extrinsics"][v])
        want = multiview.normalized_from_full_px(uv, views["crop"][v], SIZE)
        np.testing.assert_allclose(kp[v], np.asarray(want), atol=1e-4)


@pytest.mark.parametrize("kind", ["capsules", "body"])
def test_fused_terms_are_jittable_with_every_fixed_body(kind):
    batch = fused_batch(np.random.default_rng(7))
    keypoints = jnp.asarray(np.random.default_rng(8).normal(0, 0.3, (2, 3, 17, 3)), jnp.float32)
    radii = skeleton.BODY_RADII_MM if kind == "body" else None
    width = 1.2e-2 if kind == "capsules" else None
    fn = jax.jit(lambda kp: fused.fused_terms(kp, batch, None, fused_config(), SIZE,
                                              DEPTH_RANGE_MM, width, radii))
    value, grad = jax.value_and_grad(lambda kp: sum(fn(kp)[t] for t in fused.FUSED_TERMS))(
        keypoints)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()


def random_rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_bend_loss_charges_only_knees_bent_forward_in_any_frame():
    rng = np.random.default_rng(9)
    template = np.asarray(skeleton.STANDING_TEMPLATE_MM, np.float64)
    j = skeleton.JOINT_INDEX
    back, forward = template.copy(), template.copy()
    back[j["r_ankle"]] += (-250.0, 0.0, 100.0)     # the shin swings back: a real knee
    forward[j["r_ankle"]] += (250.0, 0.0, 100.0)   # the shin swings forward: impossible
    rot = random_rotation(rng)
    for pose, bad in ((template, False), (back, False), (forward, True)):
        for frame in (np.eye(3), rot):
            value = float(fused.bend_loss(jnp.asarray(pose @ frame.T + 500.0, jnp.float32)))
            assert (value > 0.01) if bad else (value < 1e-6)


def test_stance_loss_is_zero_for_the_template_in_any_pose_of_the_body():
    rng = np.random.default_rng(10)
    template = np.asarray(skeleton.STANDING_TEMPLATE_MM, np.float64)
    moved = 1.1 * template @ random_rotation(rng).T + rng.normal(0, 1000, 3)
    assert float(fused.stance_loss(jnp.asarray(moved, jnp.float32))) < 1e-8
    raised = template.copy()
    raised[skeleton.JOINT_INDEX["l_wrist"]] = (0.0, 190.0, 900.0)  # an arm up
    value = float(fused.stance_loss(jnp.asarray(raised, jnp.float32)))
    # Against a NumPy least-squares similarity fit of the template.
    rel = raised - raised[skeleton.PELVIS]
    mu_t, mu_r = template.mean(0), rel.mean(0)
    u, sig, vt = np.linalg.svd((rel - mu_r).T @ (template - mu_t))
    d = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = np.trace(np.diag(sig) @ d) / np.sum((template - mu_t) ** 2)
    aligned = scale * (template - mu_t) @ rot.T + mu_r
    np.testing.assert_allclose(value, np.mean(np.sum((rel - aligned) ** 2, -1)) * 1e-6,
                               rtol=1e-4)


def test_body_scale_widens_the_drawn_body():
    batch = fused_batch(np.random.default_rng(11), num_examples=1)
    config = fused_config()
    views = jax.tree.map(lambda a: a[0], fused.example_views(batch, config))
    joints = jnp.asarray(batch["joints_world"][0])
    thin = fused._body_masks(joints, views, SIZE, skeleton.BODY_RADII_MM)
    wide = fused._body_masks(joints, views, SIZE, skeleton.BODY_RADII_MM, 1.5)
    assert float(jnp.mean(wide > 0.5)) > 1.3 * float(jnp.mean(thin > 0.5))


def test_single_view_examples_use_their_own_lifted_pose():
    rng = np.random.default_rng(12)
    batch = fused_batch(rng, num_examples=2, num_views=3)
    batch["view_valid"] = np.array([[1, 1, 1], [0, 1, 0]], np.float32)
    keypoints = jnp.asarray(rng.normal(0, 0.3, (2, 3, 17, 3)), jnp.float32)
    keypoints = keypoints.at[:, :, skeleton.PELVIS, 2].set(0.0)  # z is relative to the pelvis
    keypoints = keypoints.at[1, 0].set(jnp.nan).at[1, 2].set(jnp.nan)  # padding: never read
    train_batch = {k: v for k, v in batch.items() if k != "joints_world"}

    def total(kp):
        terms = fused.fused_terms(kp, train_batch, None, fused_config(), SIZE, DEPTH_RANGE_MM,
                                  body_radii_mm=skeleton.BODY_RADII_MM)
        return sum(terms[t] for t in fused.FUSED_TERMS), terms

    (value, terms), grad = jax.value_and_grad(total, has_aux=True)(
        jnp.nan_to_num(keypoints))
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
    assert not np.asarray(grad)[1, [0, 2]].any()  # padded views get no gradient
    single = {k: v[1:] for k, v in train_batch.items()}
    one = fused.fused_terms(jnp.nan_to_num(keypoints)[1:], single, None, fused_config(), SIZE,
                            DEPTH_RANGE_MM, body_radii_mm=skeleton.BODY_RADII_MM)
    # Its own lifted pose reprojects onto its own 2D and carries its own depths.
    assert float(one["reproject"]) < 1e-4 and float(one["depth"]) < 1e-4


def test_refine_pose_is_adam_on_the_weighted_terms_and_lowers_them():
    rng = np.random.default_rng(12)
    batch = fused_batch(rng, num_examples=1)
    config = fused_config()
    views = jax.tree.map(lambda a: a[0], fused.example_views(batch, config))
    weights = dict(phys=1.0, inside=1.0, sym=10.0, stance=1.0, depth=5.0)  # depth: not a pose term
    start = jnp.asarray(batch["joints_world"][0]) + jnp.asarray(rng.normal(0, 60, (17, 3)),
                                                                jnp.float32)

    def total(joints):
        terms = fused.pose_mask_terms(joints, views, config, SIZE, capsule_width=1.2e-2)
        return sum(w * terms[t] for t, w in weights.items() if t in fused.POSE_TERMS)

    # Independent Adam (Kingma & Ba, bias-corrected, eps 1e-8) in NumPy float64.
    lr, steps = 10.0, 5
    x, m, v = np.asarray(start, np.float64), 0.0, 0.0
    for t in range(1, steps + 1):
        g = np.asarray(jax.grad(total)(jnp.asarray(x, jnp.float32)), np.float64)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        x = x - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    got = fused.refine_pose(start, views, config, SIZE, weights, steps, lr, capsule_width=1.2e-2)
    np.testing.assert_allclose(np.asarray(got), x, atol=1e-2)
    longer = fused.refine_pose(start, views, config, SIZE, weights, 60, lr, capsule_width=1.2e-2)
    assert float(total(longer)) < float(total(start))


def test_refined_targets_replace_the_fused_pose_and_need_a_fixed_body():
    batch = fused_batch(np.random.default_rng(13))
    keypoints = jnp.asarray(np.random.default_rng(14).normal(0, 0.3, (2, 3, 17, 3)), jnp.float32)
    weights = dict(phys=1.0, inside=1.0, sym=10.0)
    plain = fused.fused_terms(keypoints, batch, None, fused_config(), SIZE, DEPTH_RANGE_MM,
                              capsule_width=1.2e-2, refine_weights=weights)
    refined = fused.fused_terms(keypoints, batch, None, fused_config(refine_steps=3), SIZE,
                                DEPTH_RANGE_MM, capsule_width=1.2e-2, refine_weights=weights)
    assert float(plain["refine_mm"]) == 0.0 and float(refined["refine_mm"]) > 1.0
    assert float(refined["reproject"]) != pytest.approx(float(plain["reproject"]))
    for name in ("phys", "inside", "sym"):  # the mask terms still score the fused pose
        assert float(refined[name]) == pytest.approx(float(plain[name]), rel=1e-5)
    with pytest.raises(ValueError, match="refine_steps > 0 needs a fixed body"):
        fused.fused_terms(keypoints, batch, lambda m: m, fused_config(refine_steps=3), SIZE,
                          DEPTH_RANGE_MM, refine_weights=weights)


def test_fit_cache_starts_from_the_better_pose_and_never_gets_worse():
    """Per example the fit starts from the cached pose or the fused pose, whichever scores lower,
    and the new entry scores no higher than that start; an empty entry is never read."""
    batch = fused_batch(np.random.default_rng(15))
    keypoints = jnp.asarray(np.random.default_rng(16).normal(0, 0.3, (2, 3, 17, 3)), jnp.float32)
    weights = dict(phys=1.0, inside=1.0, sym=10.0)
    config = fused_config(refine_steps=3)
    views = fused.example_views(batch, config)
    truth = jnp.asarray(batch["joints_world"])

    def objective(joints_BxJx3):
        return np.asarray(jax.vmap(lambda j, e: fused.pose_objective(
            j, e, config, SIZE, weights, capsule_width=1.2e-2))(joints_BxJx3, views))

    def run(cache):
        return fused.fused_terms(keypoints, batch, None, config, SIZE, DEPTH_RANGE_MM,
                                 capsule_width=1.2e-2, refine_weights=weights, cache=cache)

    plain = fused.fused_terms(keypoints, batch, None, config, SIZE, DEPTH_RANGE_MM,
                              capsule_width=1.2e-2, refine_weights=weights)
    # An empty cache (garbage joints, filled 0): the fit of the fused pose, as without a cache.
    empty = run({"joints": jnp.full_like(truth, 1e6), "filled": jnp.zeros(2)})
    assert float(empty["cache_used"]) == 0.0
    assert float(empty["refine_mm"]) == pytest.approx(float(plain["refine_mm"]), rel=1e-4)
    # Example 0 holds a pose that scores below its fused pose, example 1 one that scores above.
    fused_BxJx3 = jax.vmap(lambda k, e: fused.fuse_views(
        k, e["crop"], e["intrinsics"], e["extrinsics"], e["valid"], SIZE))(keypoints, views)
    fused_loss = objective(fused_BxJx3)
    better_0 = fused.refine_pose(fused_BxJx3[0], jax.tree.map(lambda a: a[0], views), config,
                                 SIZE, weights, 20, 10.0, capsule_width=1.2e-2)
    worse_1 = fused_BxJx3[1] + 300.0
    cached = jnp.stack([better_0, worse_1])
    assert objective(cached)[0] < fused_loss[0] and objective(cached)[1] > fused_loss[1]
    held = run({"joints": cached, "filled": jnp.ones(2)})
    assert float(held["cache_used"]) == 0.5
    new_BxJx3 = held["cache_joints_BxJx3"]
    assert new_BxJx3.shape == (2, 17, 3)
    start_loss = np.minimum(objective(cached), fused_loss)
    assert (objective(new_BxJx3) <= start_loss + 1e-6).all()
    # Example 1's fit started from its fused pose: as without a cache.
    np.testing.assert_allclose(np.asarray(new_BxJx3[1]), np.asarray(empty["cache_joints_BxJx3"][1]),
                               atol=1e-3)
    with pytest.raises(ValueError, match="refine_steps > 0"):
        fused.fused_terms(keypoints, batch, None, fused_config(), SIZE, DEPTH_RANGE_MM,
                          capsule_width=1.2e-2, refine_weights=weights,
                          cache={"joints": truth, "filled": jnp.ones(2)})


def test_consistent_labels_undo_the_minoritys_left_right_exchange():
    crop, k, ext, joints = rig(np.random.default_rng(17), 4)
    distortion = np.zeros((4, 5), np.float32)
    truth = np.asarray(multiview.oracle_targets(joints, crop, k, ext, distortion, SIZE,
                                                DEPTH_RANGE_MM))
    flip = np.asarray(skeleton.FLIP_PERMUTATION)

    def exchanged(views):
        out = truth.copy()
        out[list(views)] = out[list(views)][:, flip]
        return out

    def relabel(keypoints, valid=np.ones(4, np.float32)):
        return np.asarray(fused.consistent_labels(jnp.asarray(keypoints), crop, k, ext,
                                                  jnp.asarray(valid), SIZE))

    np.testing.assert_allclose(relabel(truth), truth)
    np.testing.assert_allclose(relabel(exchanged([2])), truth)
    np.testing.assert_allclose(relabel(exchanged([1, 3])), truth)  # a tie keeps the first view's
    # Three of four exchanged: the majority's labels win, so the first view is exchanged.
    np.testing.assert_allclose(relabel(exchanged([1, 2, 3])), exchanged([0, 1, 2, 3]))
    # An invalid view's labels do not count (its garbage is never read).
    garbage = exchanged([0]).copy()
    garbage[0] = np.nan
    got = relabel(garbage, np.array([0, 1, 1, 1], np.float32))
    np.testing.assert_allclose(got[1:], truth[1:])
    # Through the fusion, the triangulated pose of a relabelled set is the truth again.
    terms = fused.fused_terms(jnp.asarray(exchanged([2]))[None], {
        "crop": crop[None], "intrinsics": k[None], "extrinsics": ext[None],
        "distortion": distortion[None], "mask": np.zeros((1, 4, SIZE, SIZE), np.float32),
        "weight": np.ones((1, 4, SIZE, SIZE), np.float32),
        "outside_distance": np.zeros((1, 4, SIZE, SIZE), np.float32)}, None,
        fused_config(consistent_labels=True), SIZE, DEPTH_RANGE_MM, capsule_width=1.2e-2)
    # The target is the truth, so view 2 alone is taught to exchange its labels back.
    want = np.mean(np.abs(truth[2, flip, :2] - truth[2, :, :2])) / 4
    assert float(terms["reproject"]) == pytest.approx(want, rel=1e-3)


def test_refine_swap_starts_from_the_relabelling_of_lower_objective():
    batch = fused_batch(np.random.default_rng(18))
    keypoints = jnp.asarray(np.random.default_rng(19).normal(0, 0.3, (2, 3, 17, 3)), jnp.float32)
    weights = dict(phys=1.0, inside=1.0, sym=10.0, bend=1.0)
    config = fused_config(refine_steps=2, refine_swap=True)
    views = fused.example_views(batch, config)
    flip = np.asarray(skeleton.FLIP_PERMUTATION)
    got = fused.fused_terms(keypoints, batch, None, config, SIZE, DEPTH_RANGE_MM,
                            capsule_width=1.2e-2, refine_weights=weights)
    swapped, moved = [], []
    for b in range(2):
        example = jax.tree.map(lambda a: a[b], views)
        pose = fused.fuse_views(keypoints[b], example["crop"], example["intrinsics"],
                                example["extrinsics"], example["valid"], SIZE)
        loss = [float(fused.pose_objective(p, example, config, SIZE, weights,
                                           capsule_width=1.2e-2)) for p in (pose, pose[flip])]
        start = pose[flip] if loss[1] < loss[0] else pose
        swapped.append(float(loss[1] < loss[0]))
        refined = fused.refine_pose(start, example, config, SIZE, weights, 2, 10.0,
                                    capsule_width=1.2e-2)
        moved.append(float(jnp.mean(jnp.linalg.norm(refined - pose, axis=-1))))
    assert float(got["refine_swapped"]) == pytest.approx(np.mean(swapped))
    assert float(got["refine_mm"]) == pytest.approx(np.mean(moved), rel=1e-3)
