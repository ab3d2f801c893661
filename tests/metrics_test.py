"""Tests for maskpose_jax.metrics against independent float64 NumPy references."""

import math

import jax
import numpy as np
import pytest

from maskpose_jax import metrics, skeleton

J = skeleton.NUM_JOINTS


def _poses(seed, n=8):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0.0, 300.0, (n, J, 3)) + rng.normal(0.0, 2000.0, (n, 1, 3))
    pred = gt + rng.normal(0.0, 80.0, (n, J, 3)) + rng.normal(0.0, 500.0, (n, 1, 3))
    return pred, gt


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _ref_root_relative(joints):
    return [np.asarray(x, np.float64) - np.asarray(x, np.float64)[0] for x in joints]


def _ref_mpjpe(pred, gt):
    out = []
    for p, g in zip(_ref_root_relative(pred), _ref_root_relative(gt)):
        out.append(np.mean([math.dist(p[j], g[j]) for j in range(J)]))
    return np.array(out)


def _ref_n_mpjpe(pred, gt):
    out = []
    for p, g in zip(_ref_root_relative(pred), _ref_root_relative(gt)):
        s = np.linalg.lstsq(p.reshape(-1, 1), g.reshape(-1), rcond=None)[0][0]
        out.append(np.mean(np.linalg.norm(s * p - g, axis=1)))
    return np.array(out)


def _ref_p_mpjpe(pred, gt):
    """Orthogonal Procrustes with scale (Schoenemann / Kabsch with reflection fix), float64."""
    out = []
    for p, g in zip(_ref_root_relative(pred), _ref_root_relative(gt)):
        mu_p, mu_g = p.mean(0), g.mean(0)
        x, y = p - mu_p, g - mu_g
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        x, y = x / nx, y / ny
        u, sig, vt = np.linalg.svd(x.T @ y)
        d = np.sign(np.linalg.det(u @ vt))
        corr = np.diag([1.0, 1.0, d])
        rot = u @ corr @ vt                      # row vectors: x @ rot ~ y
        scale = np.sum(sig * np.diag(corr)) * ny / nx
        aligned = scale * (p - mu_p) @ rot + mu_g
        out.append(np.mean(np.linalg.norm(aligned - g, axis=1)))
    return np.array(out)


def _ref_errors(pred, gt):
    return np.array([[math.dist(p[j], g[j]) for j in range(J)]
                     for p, g in zip(_ref_root_relative(pred), _ref_root_relative(gt))])


def test_mpjpe_matches_reference_and_ignores_root_position():
    pred, gt = _poses(0)
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), _ref_mpjpe(pred, gt), rtol=1e-4)
    shifted = pred + np.array([1000.0, -700.0, 300.0])
    np.testing.assert_allclose(metrics.mpjpe(shifted, gt), metrics.mpjpe(pred, gt), rtol=1e-4)
    assert metrics.mpjpe(pred, gt).shape == (len(pred),)


def test_n_mpjpe_matches_reference_and_removes_scale():
    pred, gt = _poses(1)
    np.testing.assert_allclose(metrics.n_mpjpe(pred, gt), _ref_n_mpjpe(pred, gt), rtol=1e-4)
    scaled = 0.6 * (gt - gt[:, :1]) + 123.0
    np.testing.assert_allclose(metrics.n_mpjpe(scaled, gt), 0.0, atol=1e-3)
    collapsed = np.zeros_like(gt)
    assert np.all(np.isfinite(np.asarray(metrics.n_mpjpe(collapsed, gt))))


def test_p_mpjpe_matches_independent_procrustes():
    pred, gt = _poses(2)
    rng = np.random.default_rng(2)
    pred = np.stack([1.3 * p @ _random_rotation(rng).T for p in pred])
    np.testing.assert_allclose(metrics.p_mpjpe(pred, gt), _ref_p_mpjpe(pred, gt), rtol=1e-3)


def _ref_orthogonal_p_mpjpe(pred, gt):
    """The same alignment allowed to reflect (no det fix): below P-MPJPE on mirrored inputs."""
    out = []
    for p, g in zip(_ref_root_relative(pred), _ref_root_relative(gt)):
        x, y = p - p.mean(0), g - g.mean(0)
        u, sig, vt = np.linalg.svd(x.T @ y)
        aligned = np.sum(sig) / np.sum(x * x) * x @ (u @ vt) + g.mean(0)
        out.append(np.mean(np.linalg.norm(aligned - g, axis=1)))
    return np.array(out)


def test_p_mpjpe_does_not_reflect_mirrored_predictions():
    # A mirrored pose (x -> -x, then a random rotation) is best matched by a reflection, which
    # P-MPJPE must not use: these inputs take the reference's det < 0 branch.
    pred, gt = _poses(6)
    rng = np.random.default_rng(6)
    mirror = np.diag([-1.0, 1.0, 1.0])
    pred = np.stack([0.9 * p @ mirror @ _random_rotation(rng).T for p in pred])
    got = np.asarray(metrics.p_mpjpe(pred, gt))
    np.testing.assert_allclose(got, _ref_p_mpjpe(pred, gt), rtol=1e-3)
    assert np.all(got > _ref_orthogonal_p_mpjpe(pred, gt) + 20.0)


def test_p_mpjpe_recovers_a_known_similarity():
    _, gt = _poses(3)
    rng = np.random.default_rng(3)
    pred = np.stack([0.7 * g @ _random_rotation(rng).T + rng.normal(0, 1000, 3) for g in gt])
    assert np.all(metrics.mpjpe(pred, gt) > 50.0)
    np.testing.assert_allclose(metrics.p_mpjpe(pred, gt), 0.0, atol=1e-2)


def test_p_mpjpe_of_collapsed_prediction_is_finite():
    _, gt = _poses(4, n=3)
    collapsed = np.broadcast_to(gt[:, :1], gt.shape)
    expected = [np.mean(np.linalg.norm(g - g.mean(0), axis=1)) for g in _ref_root_relative(gt)]
    np.testing.assert_allclose(metrics.p_mpjpe(collapsed, gt), expected, rtol=1e-4)


def test_error_ordering_on_misscaled_rotated_predictions():
    # Each alignment minimizes squared error, not the mean of norms, so the ordering below is not
    # a theorem per example; the predictions carry a clear scale and rotation error to remove.
    _, gt = _poses(5, n=16)
    rng = np.random.default_rng(5)
    pred = []
    for g in gt:
        s = rng.choice([0.6, 1.5])
        rot = _random_rotation(rng) if rng.random() < 0.5 else np.eye(3)
        pred.append(s * (g - g[0]) @ rot.T + g[0] + rng.normal(0.0, 40.0, (J, 3)))
    pred = np.stack(pred)
    e1, e2, e3 = (np.asarray(f(pred, gt)) for f in (metrics.mpjpe, metrics.n_mpjpe,
                                                   metrics.p_mpjpe))
    assert np.all(e2 <= e1) and np.all(e3 <= e2)


def test_pck3d_and_auc3d_match_reference():
    pred, gt = _poses(6)
    errors = _ref_errors(pred, gt)
    for threshold in (50.0, 150.0):
        np.testing.assert_allclose(metrics.pck3d(pred, gt, threshold),
                                   (errors <= threshold).mean(1), atol=1e-6)
    thresholds = [150.0 * k / 30 for k in range(31)]
    auc = np.mean([(errors <= t).mean(1) for t in thresholds], axis=0)
    np.testing.assert_allclose(metrics.auc3d(pred, gt), auc, atol=1e-6)


def test_pck_auc_edge_cases():
    pred, gt = _poses(7, n=4)
    np.testing.assert_allclose(metrics.pck3d(gt, gt), 1.0)
    np.testing.assert_allclose(metrics.auc3d(gt, gt), 1.0)
    far = gt.copy()
    far[:, 1:] += 1000.0
    # Only the root (always at zero root-relative error) is correct.
    np.testing.assert_allclose(metrics.pck3d(far, gt), 1.0 / J)
    np.testing.assert_allclose(metrics.auc3d(far, gt), 1.0 / J, rtol=1e-6)
    np.testing.assert_allclose(metrics.pck2d(gt[..., :2] + 1e4, gt[..., :2], 5.0), 0.0)


def test_pck2d_matches_reference_with_visibility():
    rng = np.random.default_rng(8)
    gt = rng.uniform(0, 256, (6, J, 2))
    pred = gt + rng.normal(0, 8.0, gt.shape)
    visible = rng.random((6, J)) < 0.7
    visible[-1] = False
    expected = []
    for p, g, v in zip(pred, gt, visible):
        hits = [math.dist(p[j], g[j]) <= 10.0 for j in range(J) if v[j]]
        expected.append(np.mean(hits) if hits else np.nan)
    out = np.asarray(metrics.pck2d(pred, gt, 10.0, visible))
    np.testing.assert_allclose(out[:-1], expected[:-1], atol=1e-6)
    assert np.isnan(out[-1])
    all_visible = [np.mean([math.dist(p[j], g[j]) <= 10.0 for j in range(J)])
                   for p, g in zip(pred, gt)]
    np.testing.assert_allclose(metrics.pck2d(pred, gt, 10.0), all_visible, atol=1e-6)


def test_flip_left_right_exchanges_named_sides():
    joints = np.random.default_rng(9).normal(size=(3, J, 3)).astype(np.float32)
    flipped = np.asarray(metrics.flip_left_right(joints))
    for j, name in enumerate(skeleton.JOINT_NAMES):
        other = {"l_": "r_", "r_": "l_"}.get(name[:2], name[:2]) + name[2:]
        np.testing.assert_array_equal(flipped[:, j], joints[:, skeleton.JOINT_INDEX[other]])
    np.testing.assert_array_equal(metrics.flip_left_right(flipped), joints)


def _ref_oracle(pred, gt):
    out = np.array(pred, np.float64)
    for n, (p, g) in enumerate(zip(_ref_root_relative(pred), _ref_root_relative(gt))):
        for a, b in skeleton.LR_PAIRS:
            keep = math.dist(p[a], g[a]) + math.dist(p[b], g[b])
            swap = math.dist(p[b], g[a]) + math.dist(p[a], g[b])
            if swap < keep:
                out[n, [a, b]] = out[n, [b, a]]
    return out


def test_oracle_lr_swap_matches_reference_and_never_hurts():
    pred, gt = _poses(10, n=16)
    rng = np.random.default_rng(10)
    partly_flipped = pred.copy()
    for n in range(len(pred)):
        for a, b in skeleton.LR_PAIRS:
            if rng.random() < 0.5:
                partly_flipped[n, [a, b]] = partly_flipped[n, [b, a]]
    swapped = metrics.oracle_lr_swap(partly_flipped, gt)
    np.testing.assert_allclose(swapped, _ref_oracle(partly_flipped, gt), rtol=1e-5, atol=1e-2)
    before = np.asarray(metrics.mpjpe(partly_flipped, gt))
    after = np.asarray(metrics.mpjpe(swapped, gt))
    assert np.all(after <= before + 1e-3) and np.any(after < before - 1.0)


def test_oracle_lr_swap_fixes_a_flipped_prediction_exactly():
    _, gt = _poses(11, n=4)
    fixed = metrics.oracle_lr_swap(metrics.flip_left_right(gt), gt)
    np.testing.assert_array_equal(fixed, gt.astype(np.float32))
    np.testing.assert_allclose(metrics.mpjpe(fixed, gt), 0.0, atol=1e-3)


def test_jit_matches_eager():
    pred, gt = _poses(12, n=4)
    for fn in (metrics.mpjpe, metrics.n_mpjpe, metrics.p_mpjpe, metrics.pck3d, metrics.auc3d,
               metrics.oracle_lr_swap):
        np.testing.assert_allclose(jax.jit(fn)(pred, gt), fn(pred, gt), rtol=1e-5, atol=1e-3)
    vis = np.ones((4, J), bool)
    np.testing.assert_allclose(jax.jit(metrics.pck2d, static_argnums=2)(pred[..., :2],
                                                                       gt[..., :2], 50.0, vis),
                               metrics.pck2d(pred[..., :2], gt[..., :2], 50.0, vis))


def test_group_mean():
    values = [1.0, 2.0, 3.0, 10.0, float("nan")]
    groups = ["walk", "sit", "walk", "sit", "eat"]
    out = metrics.group_mean(values, groups, skip_nan=True)
    assert list(out) == ["all", "eat", "sit", "walk"]
    assert out["all"] == pytest.approx(4.0) and out["walk"] == pytest.approx(2.0)
    assert out["sit"] == pytest.approx(6.0) and math.isnan(out["eat"])
    assert math.isnan(metrics.group_mean(values, groups)["all"])
    assert metrics.group_mean(np.array([2.0, 4.0]), ["a", "a"]) == {"all": 3.0, "a": 3.0}
    with pytest.raises(ValueError):
        metrics.group_mean([1.0], ["all"])
    with pytest.raises(ValueError):
        metrics.group_mean([1.0, 2.0], ["a"])
