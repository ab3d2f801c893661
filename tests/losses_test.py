"""Tests for maskpose_jax.losses against NumPy float64 references, invariants and switches."""

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import synthetic
from maskpose_jax import geometry
from maskpose_jax import losses
from maskpose_jax import multiview
from maskpose_jax import render
from maskpose_jax import skeleton
from references import project_reference
from references import undistort_px_reference

SIZE = 16
DEPTH_RANGE_MM = 2000.0
NUM_JOINTS = skeleton.NUM_JOINTS

_look_at = jax.jit(geometry.look_at_extrinsics)
_crop_affine = jax.jit(geometry.crop_affine, static_argnums=(2,))
_oracle_targets = jax.jit(jax.vmap(multiview.oracle_targets, (0, 0, 0, 0, 0, None, None)),
                          static_argnums=(5,))


def stand_in_physique(skel_MxHxW):
    return jax.nn.sigmoid(4.0 * skel_MxHxW - 2.0)


def stand_in_physique_np(skel):
    return 1.0 / (1.0 + np.exp(-(4.0 * skel - 2.0)))


def loss_config(**overrides):
    config = copy.deepcopy(synthetic.get_config("paper").loss)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@functools.lru_cache(maxsize=None)
def _jitted_terms(overrides, physique, capsule_width):
    config = loss_config(**dict(overrides))
    return jax.jit(lambda kp, batch: losses.mask_terms(kp, batch, physique, config, SIZE,
                                                       DEPTH_RANGE_MM, capsule_width))


def jitted_terms(physique=stand_in_physique, capsule_width=None, **overrides):
    """jit(mask_terms) for `loss_config(**overrides)`, shared between tests (one compile)."""
    return _jitted_terms(tuple(sorted(overrides.items())), physique, capsule_width)


@functools.lru_cache(maxsize=None)
def total_and_grad():
    """jit of (sum of the four terms, all outputs), gradient w.r.t. keypoints; default config."""

    def total(keypoints, batch):
        out = losses.mask_terms(keypoints, batch, stand_in_physique, loss_config(), SIZE,
                                DEPTH_RANGE_MM)
        return sum(out[k] for k in losses.TERMS), out

    return jax.jit(jax.value_and_grad(total, has_aux=True))


def random_batch(rng, num_examples=2, num_views=3, valid=None):
    """Cameras ~4 m around a person at the origin, crops around it, random masks and weights.

    Args:
        valid: BxV view_valid; None = all ones; False = no view_valid key at all.

    Returns:
        (keypoints BxVxJx3: the true 2.5D pose plus noise, batch dict of float32 arrays).
    """
    fields = {k: [] for k in ("crop", "intrinsics", "extrinsics", "distortion", "joints_world")}
    target = np.array([0.0, 0.0, 1000.0])
    for _ in range(num_examples):
        crops, ks, exts = [], [], []
        for azimuth in rng.uniform(0, 2 * np.pi) + np.arange(num_views) * 2 * np.pi / num_views:
            radius = rng.uniform(3500, 4500)
            centre = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth),
                               rng.uniform(800, 1600)])
            ext = np.asarray(_look_at(centre, target), np.float64)
            focal = rng.uniform(900, 1200)
            k = np.array([[focal, 0, 500], [0, focal, 500], [0, 0, 1.0]])
            uv = project_reference(target[None], k, ext, np.zeros(5))[0]
            side = focal * 2300.0 / np.linalg.norm(centre - target)
            crops.append(np.asarray(_crop_affine(uv + rng.normal(0, 5, 2), side, SIZE)))
            ks.append(k)
            exts.append(ext)
        fields["crop"].append(crops)
        fields["intrinsics"].append(ks)
        fields["extrinsics"].append(exts)
        fields["distortion"].append(rng.normal(0, 0.02, (num_views, 5)) * [1, 1, 0, 0.1, 0.1])
        joints = rng.normal(0, 300, (NUM_JOINTS, 3)) + target
        joints[skeleton.PELVIS] = target
        fields["joints_world"].append(joints)
    batch = {k: np.asarray(v, np.float32) for k, v in fields.items()}
    batch["mask"] = rng.uniform(0, 1, (num_examples, num_views, SIZE, SIZE)).astype(np.float32)
    batch["weight"] = rng.uniform(1, 3, (num_examples, num_views, SIZE, SIZE)).astype(np.float32)
    if valid is not False:
        batch["view_valid"] = (np.ones((num_examples, num_views), np.float32) if valid is None
                               else np.asarray(valid, np.float32))
    targets = _oracle_targets(batch["joints_world"], batch["crop"], batch["intrinsics"],
                              batch["extrinsics"], batch["distortion"], SIZE, DEPTH_RANGE_MM)
    keypoints = targets + rng.normal(0, 0.05, targets.shape)
    return jnp.asarray(keypoints, jnp.float32), batch


# --- NumPy float64 references ----------------------------------------------------------------


def full_px_reference(xy, crop):
    crop_uv = (xy + 1.0) * (SIZE - 1) / 2.0
    return (crop_uv - crop[:, 2]) @ np.linalg.inv(crop[:, :2]).T


def root_reference(pelvis_xy_Vx2, crops, intrinsics, extrinsics, distortions):
    """Least squares over unit-normal planes u P_2 - P_0, v P_2 - P_1 of the pinhole pixels (the
    lens undone); one view: the pelvis ray at the depth where the crop spans DEPTH_RANGE_MM."""
    if len(pelvis_xy_Vx2) == 1:
        uv = undistort_px_reference(full_px_reference(pelvis_xy_Vx2[0], crops[0])[None],
                                    intrinsics[0], distortions[0])[0]
        depth = (np.sqrt(intrinsics[0, 0, 0] * intrinsics[0, 1, 1]) * DEPTH_RANGE_MM
                 * np.sqrt(abs(np.linalg.det(crops[0][:, :2]))) / SIZE)
        cam = depth * np.linalg.solve(intrinsics[0], np.array([uv[0], uv[1], 1.0]))
        return extrinsics[0, :, :3].T @ (cam - extrinsics[0, :, 3])
    rows = []
    for xy, crop, k, ext, dist in zip(pelvis_xy_Vx2, crops, intrinsics, extrinsics, distortions):
        uv = undistort_px_reference(full_px_reference(xy, crop)[None], k, dist)[0]
        proj = k @ ext
        for i in range(2):
            row = uv[i] * proj[2] - proj[i]
            rows.append(row / np.linalg.norm(row[:3]))
    rows = np.array(rows)
    return np.linalg.lstsq(rows[:, :3], -rows[:, 3], rcond=None)[0]


def lift_reference(keypoints_Jx3, root_world, crop, intrinsics, extrinsics, distortion):
    """Returns (camera-frame, world-frame) joints, mm, the lens undone."""
    root_depth = (extrinsics[:, :3] @ root_world + extrinsics[:, 3])[2]
    uv = undistort_px_reference(full_px_reference(keypoints_Jx3[:, :2], crop), intrinsics,
                                distortion)
    depth = root_depth + keypoints_Jx3[:, 2] * DEPTH_RANGE_MM / 2
    rays = np.linalg.solve(intrinsics, np.concatenate([uv, np.ones((len(uv), 1))], 1).T).T
    cam = rays * depth[:, None]
    return cam, (cam - extrinsics[:, 3]) @ extrinsics[:, :3]


def render_reference(keypoints_Jx2, size, body_width):
    """Brute force: S = max over bones of exp(-d^2 / (body_width * scale))."""
    coords = -1.0 + 2.0 * np.arange(size) / (size - 1)
    pixels = np.stack(np.meshgrid(coords, coords, indexing="xy"), -1).reshape(-1, 2)
    best = np.zeros(len(pixels))
    for (i, j), scale in zip(skeleton.BONES, skeleton.BONE_WIDTH_SCALES):
        a, b = keypoints_Jx2[i], keypoints_Jx2[j]
        t = np.clip((pixels - a) @ (b - a) / max((b - a) @ (b - a), 1e-12), 0, 1)
        d2 = np.sum((pixels - a - t[:, None] * (b - a)) ** 2, axis=1)
        best = np.maximum(best, np.exp(-d2 / (body_width * scale)))
    return best.reshape(size, size)


def symmetry_reference(joints_mm):
    joints = np.asarray(joints_mm, np.float64) / 1000.0
    length = lambda bone: np.linalg.norm(joints[bone[1]] - joints[bone[0]])
    lengths = [(length(a) - length(b)) ** 2 for a, b in skeleton.SYMMETRIC_LIMBS]
    hips = 0.5 * (joints[1] + joints[4])
    shoulders = 0.5 * (joints[11] + joints[14])
    centres = [np.sum((joints[0] - hips) ** 2), np.sum((joints[8] - shoulders) ** 2)]
    return np.mean(lengths) + np.mean(centres)


def agreement_reference(joints_world_mm, valid):
    rel = [(p - p[0]) / 1000.0 for p, ok in zip(np.asarray(joints_world_mm, np.float64), valid)
           if ok]
    dists = [np.mean(np.linalg.norm(a - b, axis=1)) for i, a in enumerate(rel)
             for j, b in enumerate(rel) if i != j]
    return np.mean(dists) if dists else 0.0


def iou_reference(pred, target):
    pred, target = pred > 0.5, target > 0.5
    return np.sum(pred & target) / max(np.sum(pred | target), 1)


def mask_terms_reference(keypoints, batch, config, capsule_width=None):
    """Loops over examples, keeping only the valid views (no masking); all in float64.

    The Physique Mask is `stand_in_physique_np` of the Skeleton Mask, or with `capsule_width` the
    skeleton drawn at that width.
    """
    keypoints = np.asarray(keypoints, np.float64)
    num_examples, num_views = keypoints.shape[:2]
    valid_all = batch.get("view_valid", np.ones((num_examples, num_views)))
    per = {k: [] for k in ("skel", "phys", "sym", "agree", "mask_iou", "skel_iou",
                           "root_depth_mm")}
    for b in range(num_examples):
        keep = np.flatnonzero(valid_all[b])
        kp = keypoints[b, keep]
        crop, k, ext, dist = (np.asarray(batch[key][b, keep], np.float64)
                              for key in ("crop", "intrinsics", "extrinsics", "distortion"))
        root = root_reference(kp[:, skeleton.PELVIS, :2], crop, k, ext, dist)
        lifted = [lift_reference(kp[v], root, crop[v], k[v], ext[v], dist[v])
                  for v in range(len(keep))]
        mask, weight = batch["mask"][b, keep], batch["weight"][b, keep]
        if not config.use_geodesic:
            weight = np.ones_like(weight)
        else:
            weight = np.where(mask < 0.5, config.background_scale * weight, weight)
        skel, phys, mask_iou, skel_iou = [], [], [], []
        for v in range(len(keep)):
            for w in range(len(keep)):
                if v == w:
                    xy = kp[v, :, :2]
                elif config.cross_view:
                    uv = project_reference(lifted[v][1], k[w], ext[w], dist[w])
                    xy = -1.0 + 2.0 * (uv @ crop[w][:, :2].T + crop[w][:, 2]) / (SIZE - 1)
                else:
                    continue
                s = render_reference(xy, SIZE, config.body_width)
                p = (stand_in_physique_np(s) if capsule_width is None
                     else render_reference(xy, SIZE, capsule_width))
                skel.append(np.mean(weight[w] * (s - mask[w]) ** 2 * (s > config.clip_threshold)))
                if v == w or config.phys_cross_view:
                    phys.append(np.mean(weight[w] * (p - mask[w]) ** 2))
                if v == w:
                    mask_iou.append(iou_reference(p, mask[w]))
                    skel_iou.append(iou_reference(s, mask[w]))
        per["skel"].append(np.mean(skel))
        per["phys"].append(np.mean(phys))
        per["mask_iou"].append(np.mean(mask_iou))
        per["skel_iou"].append(np.mean(skel_iou))
        per["sym"].append(np.mean([symmetry_reference(cam) for cam, _ in lifted]))
        per["agree"].append(agreement_reference([world for _, world in lifted],
                                                np.ones(len(keep))))
        per["root_depth_mm"].append(np.mean([(e[:, :3] @ root + e[:, 3])[2] for e in ext]))
    return {k: np.mean(v) for k, v in per.items()}


# --- Per-example terms -----------------------------------------------------------------------


def test_skeleton_mask_loss_matches_numpy_and_clips():
    rng = np.random.default_rng(0)
    skel, mask, weight = rng.uniform(0, 1, (3, 12, 12))
    weight = weight * 5
    for clip in (0.0, 0.1, 0.5):
        ref = np.mean(weight * (skel - mask) ** 2 * (skel > clip))
        np.testing.assert_allclose(losses.skeleton_mask_loss(skel, mask, weight, clip), ref,
                                   rtol=1e-5)
    below = skel <= 0.5
    changed = np.where(below, rng.uniform(0, 1, mask.shape), mask)
    assert np.any(changed != mask)
    np.testing.assert_allclose(losses.skeleton_mask_loss(skel, changed, weight, 0.5),
                               losses.skeleton_mask_loss(skel, mask, weight, 0.5), rtol=1e-6)
    grad = jax.grad(losses.skeleton_mask_loss)(jnp.asarray(skel), mask, weight, 0.5)
    assert np.all(np.asarray(grad)[below] == 0) and np.all(np.asarray(grad)[~below] != 0)


def test_physique_loss_matches_numpy():
    rng = np.random.default_rng(1)
    phys, mask, weight = rng.uniform(0, 1, (3, 12, 12))
    np.testing.assert_allclose(losses.physique_loss(phys, mask, weight),
                               np.mean(weight * (phys - mask) ** 2), rtol=1e-5)


def _symmetric_pose(rng):
    """Mirror-symmetric about the plane x = 0, pelvis and thorax at their pairs' midpoints."""
    joints = np.zeros((NUM_JOINTS, 3))
    for right, left in skeleton.LR_PAIRS:
        joints[right] = rng.normal(0, 300, 3)
        joints[left] = joints[right] * [-1, 1, 1]
    for centre in (7, 9, 10):
        joints[centre] = [0, *rng.normal(0, 300, 2)]
    joints[0] = 0.5 * (joints[1] + joints[4])
    joints[8] = 0.5 * (joints[11] + joints[14])
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    return joints @ rot.T + rng.normal(0, 1000, 3)


def test_symmetry_loss():
    rng = np.random.default_rng(2)
    pose = rng.normal(0, 300, (NUM_JOINTS, 3))
    np.testing.assert_allclose(losses.symmetry_loss(pose), symmetry_reference(pose), rtol=1e-5)
    symmetric = _symmetric_pose(rng)
    assert float(losses.symmetry_loss(symmetric)) < 1e-9
    longer = symmetric.copy()
    longer[3] += 0.2 * (longer[3] - longer[2])
    off_centre = symmetric.copy()
    off_centre[8] += 30.0
    for broken in (longer, off_centre):
        value = float(losses.symmetry_loss(broken))
        np.testing.assert_allclose(value, symmetry_reference(broken), rtol=1e-4)
        assert value > 1e-5
    grad = jax.jit(jax.grad(losses.symmetry_loss))(jnp.asarray(symmetric, jnp.float32))
    assert np.all(np.isfinite(grad))


def test_agreement_loss_matches_numpy_and_ignores_invalid_views():
    rng = np.random.default_rng(3)
    poses = rng.normal(0, 300, (4, NUM_JOINTS, 3))
    valid = np.array([1.0, 1.0, 0.0, 1.0])
    value = losses.agreement_loss(poses, valid)
    np.testing.assert_allclose(value, agreement_reference(poses, valid), rtol=1e-5)
    moved = poses + rng.normal(0, 500, (4, 1, 3))
    moved[2] = rng.normal(0, 1000, (NUM_JOINTS, 3))
    np.testing.assert_allclose(losses.agreement_loss(moved, valid), value, rtol=1e-5)
    assert float(losses.agreement_loss(np.stack([poses[0]] * 4), np.ones(4))) < 1e-5
    assert float(losses.agreement_loss(poses, np.array([0.0, 1.0, 0.0, 0.0]))) == 0.0


def test_oracle_loss_and_terms():
    rng = np.random.default_rng(4)
    keypoints, batch = random_batch(rng, valid=[[1, 1, 0], [1, 1, 1]])
    terms = jax.jit(losses.oracle_terms, static_argnums=(2,))
    targets = _oracle_targets(batch["joints_world"], batch["crop"], batch["intrinsics"],
                              batch["extrinsics"], batch["distortion"], SIZE, DEPTH_RANGE_MM)
    assert float(terms(targets, batch, SIZE, DEPTH_RANGE_MM)["oracle"]) < 1e-6
    errors = np.abs(np.asarray(keypoints, np.float64) - np.asarray(targets, np.float64))
    ref = np.mean([np.mean(errors[0, :2]), np.mean(errors[1])])
    np.testing.assert_allclose(terms(keypoints, batch, SIZE, DEPTH_RANGE_MM)["oracle"], ref,
                               rtol=1e-4)
    np.testing.assert_allclose(losses.oracle_loss(keypoints[0], targets[0], np.array([1, 1, 0])),
                               np.mean(errors[0, :2]), rtol=1e-4)


# --- mask_terms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cross_view, use_geodesic, phys_cross_view, background_scale, capsule_width",
    [(True, True, False, 1.0, None), (True, False, True, 1.0, None),
     (False, False, False, 1.0, None), (True, True, True, 0.05, 6e-3),
     (False, True, False, 0.3, 1.2e-2)])
def test_mask_terms_matches_numpy_reference(cross_view, use_geodesic, phys_cross_view,
                                            background_scale, capsule_width):
    rng = np.random.default_rng(5)
    keypoints, batch = random_batch(rng, valid=[[1, 1, 1], [1, 0, 1]])
    overrides = dict(cross_view=cross_view, use_geodesic=use_geodesic,
                     phys_cross_view=phys_cross_view, background_scale=background_scale)
    # With capsules the physique network must not be called: passing None proves it.
    physique = stand_in_physique if capsule_width is None else None
    out = jitted_terms(physique, capsule_width, **overrides)(keypoints, batch)
    ref = mask_terms_reference(keypoints, batch, loss_config(**overrides), capsule_width)
    assert set(out) == set(losses.TERMS + losses.DIAGNOSTICS)
    for key, value in ref.items():
        np.testing.assert_allclose(out[key], value, rtol=2e-4, atol=1e-7, err_msg=key)
    assert float(out["triangulated"]) == 1.0
    assert float(out["skel"]) > 0 and float(out["agree"]) > 0


def test_invalid_views_contribute_nothing():
    rng = np.random.default_rng(6)
    valid = np.array([[1, 0, 1], [0, 1, 1]], np.float32)
    keypoints, batch = random_batch(rng, valid=valid)
    changed_kp = jnp.where(valid[..., None, None] > 0, keypoints,
                           rng.uniform(-1, 1, keypoints.shape))
    changed = dict(batch)
    for key in ("mask", "weight", "crop", "intrinsics", "extrinsics", "distortion"):
        noise = rng.uniform(-1, 1, batch[key].shape).astype(np.float32)
        changed[key] = np.where(valid.reshape(valid.shape + (1,) * (batch[key].ndim - 2)) > 0,
                                batch[key], noise)
    changed["crop"][0, 1] = np.nan
    changed["mask"][1, 0] = np.nan
    (_, out), grad = total_and_grad()(keypoints, batch)
    (_, changed_out), changed_grad = total_and_grad()(changed_kp, changed)
    for key in out:
        np.testing.assert_allclose(changed_out[key], out[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(changed_grad, grad, rtol=1e-5, atol=1e-8)
    assert np.all(np.asarray(grad)[valid == 0] == 0)
    assert np.all(np.abs(np.asarray(grad)[valid > 0]).sum(axis=(-1, -2)) > 0)


def test_gradients_finite_nonzero_and_cross_view_gives_depth():
    rng = np.random.default_rng(7)
    keypoints, batch = random_batch(rng)
    (_, out), grad = total_and_grad()(keypoints, batch)
    assert all(np.isfinite(float(out[k])) and float(out[k]) > 0 for k in losses.TERMS)
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad).sum(axis=(-1, -2)) > 0)
    assert np.all(np.abs(grad[..., 2]).sum(axis=-1) > 0)

    # Own-view Skeleton Masks draw only (x, y): the depth z gets L_skel gradient through the
    # cross-view masks alone.
    fn = jitted_terms(use_phys=False, use_sym=False, use_agree=False)
    grad_z = jax.jit(jax.grad(lambda kp: fn(kp, batch)["skel"]))(keypoints)[..., 2]
    assert np.all(np.isfinite(grad_z)) and np.all(np.abs(grad_z).sum(-1) > 0)


def test_jit_matches_eager():
    rng = np.random.default_rng(8)
    keypoints, batch = random_batch(rng, valid=[[1, 1, 0], [1, 1, 1]])
    eager = losses.mask_terms(keypoints, batch, stand_in_physique, loss_config(), SIZE,
                              DEPTH_RANGE_MM)
    jitted = jitted_terms()(keypoints, batch)
    for key in eager:
        np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_single_view():
    rng = np.random.default_rng(9)
    keypoints, batch = random_batch(rng, num_views=1, valid=False)
    out = jitted_terms()(keypoints, batch)
    ref = mask_terms_reference(keypoints, batch, loss_config())
    for key in ("skel", "phys", "sym", "mask_iou", "skel_iou", "root_depth_mm"):
        np.testing.assert_allclose(out[key], ref[key], rtol=2e-4, atol=1e-7, err_msg=key)
    assert float(out["agree"]) == 0.0 and float(out["triangulated"]) == 0.0
    assert float(out["skel"]) > 0

    # One valid view of three: the cross-view pairs and agreement drop out, leaving the own view.
    keypoints, batch = random_batch(rng, valid=[[0, 1, 0], [0, 0, 1]])
    out = jitted_terms()(keypoints, batch)
    ref = mask_terms_reference(keypoints, batch, loss_config())
    for key, value in ref.items():
        np.testing.assert_allclose(out[key], value, rtol=2e-4, atol=1e-7, err_msg=key)
    assert float(out["agree"]) == 0.0 and float(out["triangulated"]) == 0.0


def test_switched_off_terms_are_zero_and_not_computed(monkeypatch):
    rng = np.random.default_rng(10)
    keypoints, batch = random_batch(rng)
    full = jitted_terms()(keypoints, batch)

    def never(*args, **kwargs):
        raise AssertionError("a switched-off term was computed")

    no_phys = jitted_terms(physique=never, use_phys=False)(keypoints, batch)
    assert float(no_phys["phys"]) == 0.0 and float(no_phys["mask_iou"]) == 0.0
    for key in ("skel", "sym", "agree", "skel_iou"):
        np.testing.assert_allclose(no_phys[key], full[key], rtol=1e-6)

    monkeypatch.setattr(render, "skeleton_mask", never)
    monkeypatch.setattr(losses, "symmetry_loss", never)
    monkeypatch.setattr(losses, "agreement_loss", never)
    out = jitted_terms(physique=never, use_skel=False, use_phys=False, use_sym=False,
                       use_agree=False)(keypoints, batch)
    assert set(out) == set(full)
    for key in losses.TERMS:
        assert float(out[key]) == 0.0
    np.testing.assert_allclose(out["root_depth_mm"], full["root_depth_mm"], rtol=1e-6)

