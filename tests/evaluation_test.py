"""Tests for maskpose_jax.evaluation against float64 NumPy references on synthetic rigs."""

import numpy as np
import pytest

from maskpose_jax import evaluation, geometry, skeleton

J = skeleton.NUM_JOINTS
SIZE = 64
DEPTH_RANGE = 2000.0
FLIP = np.array(skeleton.FLIP_PERMUTATION)


# --- Independent float64 references ---------------------------------------------------------


def _ref_cam(joints_world, extrinsics):
    return joints_world @ extrinsics[:, :3].T + extrinsics[:, 3]


def _ref_project(joints_world, intrinsics, extrinsics, distortion):
    cam = _ref_cam(joints_world, extrinsics)
    x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    k1, k2, k3, p1, p2 = distortion
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = 2 * (p2 * x + p1 * y)
    xd, yd = x * (radial + tan) + r2 * p2, y * (radial + tan) + r2 * p1
    return np.stack([intrinsics[0, 0] * xd + intrinsics[0, 2],
                     intrinsics[1, 1] * yd + intrinsics[1, 2]], axis=-1)


def _ref_rel(x):
    return x - x[:, :1]


def _ref_errors(pred, gt):
    return np.linalg.norm(_ref_rel(pred) - _ref_rel(gt), axis=-1)


def _ref_procrustes(p, g):
    x, y = p - p.mean(0), g - g.mean(0)
    u, sig, vt = np.linalg.svd(x.T @ y)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    scale = np.sum(sig * np.diag(d)) / np.sum(x * x)
    return np.mean(np.linalg.norm(scale * x @ (u @ d @ vt) + g.mean(0) - g, axis=1))


def _ref_metrics(pred, gt, pred_2d, gt_2d, threshold_px):
    """Per-sample values of every metric, float64."""
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    err = _ref_errors(pred, gt)
    pr, gr = _ref_rel(pred), _ref_rel(gt)
    scale = np.sum(pr * gr, axis=(1, 2)) / np.sum(pr * pr, axis=(1, 2))
    return {
        "mpjpe": err.mean(1),
        "n_mpjpe": np.linalg.norm(scale[:, None, None] * pr - gr, axis=-1).mean(1),
        "p_mpjpe": np.array([_ref_procrustes(p, g) for p, g in zip(pr, gr)]),
        "pck3d": (err <= 150).mean(1),
        "auc3d": np.mean([(err <= t).mean(1) for t in np.linspace(0, 150, 31)], axis=0),
        "pck2d": (np.linalg.norm(pred_2d - gt_2d, axis=-1) <= threshold_px).mean(1),
    }


# --- Synthetic rigs ---------------------------------------------------------------------------


def _example(rng, num_views):
    """One frame: a random pose and `num_views` cameras around it, float64."""
    root = np.array([rng.uniform(-800, 800), rng.uniform(-800, 800), 900.0])
    joints_world = root + rng.normal(0.0, 250.0, (J, 3))
    joints_world[0] = root
    angles = rng.uniform(0, 2 * np.pi) + np.arange(num_views) * 2 * np.pi / num_views
    angles += rng.uniform(-0.3, 0.3, num_views)
    out = {k: [] for k in ("intrinsics", "extrinsics", "crop", "distortion")}
    for angle in angles:
        distance = rng.uniform(3500, 5500)
        center = root + [distance * np.cos(angle), distance * np.sin(angle), rng.uniform(-300, 600)]
        target = root + rng.normal(0.0, 100.0, 3)
        extrinsics = np.asarray(geometry.look_at_extrinsics(center, target), np.float64)
        f = rng.uniform(1000, 1200)
        intrinsics = np.array([[f, 0, rng.uniform(480, 520)], [0, f * rng.uniform(0.99, 1.01),
                                                                 rng.uniform(480, 520)], [0, 0, 1]])
        uv = _ref_project(joints_world, intrinsics, extrinsics, np.zeros(5))
        side = 1.3 * (uv.max(0) - uv.min(0)).max()
        crop = np.asarray(geometry.crop_affine((uv.max(0) + uv.min(0)) / 2, side, SIZE))
        for k, v in (("intrinsics", intrinsics), ("extrinsics", extrinsics), ("crop", crop),
                     ("distortion", np.zeros(5))):
            out[k].append(v)
    out = {k: np.stack(v) for k, v in out.items()}
    out["joints_world"] = joints_world
    return out


def _batch(seed, batch_size=3, num_views=3, actions=("walk", "sit")):
    rng = np.random.default_rng(seed)
    examples = [_example(rng, num_views) for _ in range(batch_size)]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch = {k: v.astype(np.float32) for k, v in batch.items()}
    batch["action"] = np.array([actions[i % len(actions)] for i in range(batch_size)])
    batch["subject"] = np.array(["S9"] * batch_size)
    batch["frame"] = np.arange(batch_size, dtype=np.int32)
    return batch, examples


def _exact_keypoints(examples):
    """2.5D keypoints from the truth: pinhole projection to normalized crop coords, z from depth."""
    keypoints = []
    for e in examples:
        per_view = []
        for k, ext, crop in zip(e["intrinsics"], e["extrinsics"], e["crop"]):
            uv = _ref_project(e["joints_world"], k, ext, np.zeros(5))
            crop_uv = uv @ crop[:, :2].T + crop[:, 2]
            depth = _ref_cam(e["joints_world"], ext)[:, 2]
            per_view.append(np.concatenate(
                [-1 + 2 * crop_uv / (SIZE - 1), ((depth - depth[0]) / (DEPTH_RANGE / 2))[:, None]],
                axis=1))
        keypoints.append(per_view)
    return np.asarray(keypoints, np.float32)


def _collect(batches):
    acc = evaluation.Accumulator(SIZE, DEPTH_RANGE)
    for keypoints, batch in batches:
        acc.add(keypoints, batch)
    return acc


# --- Tests ------------------------------------------------------------------------------------


def test_exact_predictions_lift_to_truth():
    batch, examples = _batch(0)
    keypoints = _exact_keypoints(examples)
    assert np.abs(keypoints).max() <= 1.0
    gt_cam = np.asarray(evaluation.truth_in_camera(batch["joints_world"], batch["extrinsics"]))
    ref_cam = np.array([[_ref_cam(e["joints_world"], ext) for ext in e["extrinsics"]]
                        for e in examples])
    np.testing.assert_allclose(gt_cam, ref_cam, atol=2e-3)
    pred_cam = evaluation.predictions_in_camera(keypoints, batch, SIZE, DEPTH_RANGE)
    assert pred_cam.shape == (3, 3, J, 3)
    np.testing.assert_allclose(pred_cam, gt_cam, atol=1e-2)


def test_exact_predictions_score_perfectly():
    batch_a, ex_a = _batch(1, batch_size=3, num_views=3)
    batch_b, ex_b = _batch(2, batch_size=2, num_views=2, actions=("eat",))
    acc = _collect([(_exact_keypoints(ex_a), batch_a), (_exact_keypoints(ex_b), batch_b)])
    res = acc.results(pck2d_threshold=0.05)
    assert res["num_examples"] == 3 * 3 + 2 * 2 and res["num_frames"] == 5
    for k in ("mpjpe", "n_mpjpe", "p_mpjpe"):
        for suffix in ("", "_global_flip", "_oracle"):
            assert 0.0 <= res[k + suffix] < 0.05, (k + suffix, res[k + suffix])
    assert res["pck3d"] == 1.0 and res["pck2d"] == 1.0
    # Float rounding keeps the errors above 0 mm, the curve's first threshold.
    assert res["auc3d"] >= 30 / 31 - 1e-6
    assert res["global_flip_applied"] is False
    assert sorted(res["per_action"]) == ["eat", "sit", "walk"]
    assert res["per_action"]["walk"]["num_examples"] == 2 * 3


def _distorted_keypoints(examples, distortion_BxVx5):
    """`_exact_keypoints` through each view's lens distortion (float64 reference)."""
    keypoints = _exact_keypoints(examples)
    for b, e in enumerate(examples):
        for v, (k, ext, crop) in enumerate(zip(e["intrinsics"], e["extrinsics"], e["crop"])):
            uv = _ref_project(e["joints_world"], k, ext, distortion_BxVx5[b, v].astype(np.float64))
            keypoints[b, v, :, :2] = -1 + 2 * (uv @ crop[:, :2].T + crop[:, 2]) / (SIZE - 1)
    return keypoints


def test_lift_undoes_lens_distortion():
    batch, examples = _batch(11, batch_size=2, num_views=3)
    rng = np.random.default_rng(11)
    batch["distortion"] = rng.normal(0.0, [0.3, 0.1, 0.02, 0.01, 0.01], (2, 3, 5)).astype(
        np.float32)
    keypoints = _distorted_keypoints(examples, batch["distortion"])
    gt_cam = np.asarray(evaluation.truth_in_camera(batch["joints_world"], batch["extrinsics"]))
    pred_cam = np.asarray(evaluation.predictions_in_camera(keypoints, batch, SIZE, DEPTH_RANGE))
    assert np.linalg.norm(pred_cam - gt_cam, axis=-1).max() < 0.5


def test_truth_2d_goes_through_distortion_and_crop():
    batch, examples = _batch(3, batch_size=2, num_views=3)
    rng = np.random.default_rng(4)
    batch["distortion"] = rng.normal(0.0, [0.05, 0.02, 0.005, 0.002, 0.002], (2, 3, 5)).astype(
        np.float32)
    keypoints = _exact_keypoints(examples)
    arrays = _collect([(keypoints, batch)]).arrays()
    ref = []
    for b, e in enumerate(examples):
        for v in range(3):
            uv = _ref_project(e["joints_world"], e["intrinsics"][v], e["extrinsics"][v],
                              batch["distortion"][b, v].astype(np.float64))
            ref.append(uv @ e["crop"][v][:, :2].T + e["crop"][v][:, 2])
    np.testing.assert_allclose(arrays["gt_2d"], np.array(ref), atol=2e-3)
    np.testing.assert_allclose(arrays["pred_2d"],
                               (keypoints[..., :2].reshape(-1, J, 2) + 1) * (SIZE - 1) / 2,
                               atol=1e-4)
    assert list(arrays["actions"]) == ["walk"] * 3 + ["sit"] * 3


def test_flipped_predictions():
    batch, examples = _batch(5, batch_size=4, num_views=3)
    keypoints = _exact_keypoints(examples)[:, :, FLIP]
    res = _collect([(keypoints, batch)]).results(pck2d_threshold=0.05)
    assert res["mpjpe"] > 100.0 and res["pck2d"] < 0.9
    assert res["global_flip_applied"] is True
    assert res["mpjpe_global_flip"] < 0.05 and res["pck2d_global_flip"] == 1.0
    assert res["mpjpe_oracle"] < 0.05 and res["pck2d_oracle"] == 1.0
    assert res["pck3d_oracle"] == 1.0


@pytest.mark.parametrize("flipped_fraction", [0.7, 0.3])
def test_global_flip_and_oracle_against_numpy(flipped_fraction):
    rng = np.random.default_rng(6)
    n = 40
    gt = rng.normal(0, 300, (n, J, 3)) + [0, 0, 4000]
    gt_2d = rng.uniform(0, SIZE - 1, (n, J, 2))
    pred = gt + rng.normal(0, 40, (n, J, 3))
    pred_2d = gt_2d + rng.normal(0, 2, (n, J, 2))
    flipped = np.arange(n) < flipped_fraction * n
    pred[flipped] = pred[flipped][:, FLIP]
    pred_2d[flipped] = pred_2d[flipped][:, FLIP]
    actions = np.array(["a"] * n)
    res = evaluation.compute_results(pred, gt, pred_2d, gt_2d, actions, SIZE, 0.05)

    as_is = _ref_metrics(pred, gt, pred_2d, gt_2d, 0.05 * SIZE)
    relabelled = _ref_metrics(pred[:, FLIP], gt, pred_2d[:, FLIP], gt_2d, 0.05 * SIZE)
    flip = relabelled["mpjpe"].mean() < as_is["mpjpe"].mean()
    assert res["global_flip_applied"] is bool(flip) is bool(flipped_fraction > 0.5)
    # Oracle by brute force: each pair of each sample keeps the labelling closer to the truth.
    pred_o, pred_2d_o = pred.copy(), pred_2d.copy()
    rel_p, rel_g = _ref_rel(pred), _ref_rel(gt)
    for i in range(n):
        for a, b in skeleton.LR_PAIRS:
            dist = lambda x, y: np.linalg.norm(rel_p[i, x] - rel_g[i, y])
            keep, swap = dist(a, a) + dist(b, b), dist(b, a) + dist(a, b)
            if swap < keep:
                pred_o[i, [a, b]] = pred[i, [b, a]]
                pred_2d_o[i, [a, b]] = pred_2d[i, [b, a]]
    oracle = _ref_metrics(pred_o, gt, pred_2d_o, gt_2d, 0.05 * SIZE)
    for k in evaluation.METRIC_KEYS:
        tol = 1e-3 if k in ("mpjpe", "n_mpjpe", "p_mpjpe") else 1e-9
        np.testing.assert_allclose(res[k], as_is[k].mean(), atol=tol, err_msg=k)
        np.testing.assert_allclose(res[k + "_global_flip"],
                                   (relabelled if flip else as_is)[k].mean(), atol=tol, err_msg=k)
        np.testing.assert_allclose(res[k + "_oracle"], oracle[k].mean(), atol=tol, err_msg=k)
    assert res["mpjpe_oracle"] < 100.0 < 200.0 < res["mpjpe"]
    assert res["mpjpe_oracle"] <= res["mpjpe_global_flip"] <= res["mpjpe"]


def test_per_action_against_numpy(monkeypatch):
    monkeypatch.setattr(evaluation, "_CHUNK", 7)   # several metric chunks, the last one partial
    rng = np.random.default_rng(7)
    n = 30
    gt = rng.normal(0, 300, (n, J, 3))
    pred = gt + rng.normal(0, 60, (n, J, 3)) * rng.uniform(0.5, 3, (n, 1, 1))
    gt_2d = rng.uniform(0, SIZE - 1, (n, J, 2))
    pred_2d = gt_2d + rng.normal(0, 4, (n, J, 2))
    actions = rng.choice(["Walking", "Sitting", "Eating"], n)
    res = evaluation.compute_results(pred, gt, pred_2d, gt_2d, list(actions), SIZE, 0.1)
    ref = _ref_metrics(pred, gt, pred_2d, gt_2d, 0.1 * SIZE)
    assert res["num_examples"] == n and res["pck2d_threshold_px"] == pytest.approx(6.4)
    assert sorted(res["per_action"]) == sorted(set(actions))
    for action, row in res["per_action"].items():
        select = actions == action
        assert row["num_examples"] == select.sum()
        for k in evaluation.METRIC_KEYS:
            np.testing.assert_allclose(row[k], ref[k][select].mean(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{action} {k}")
    for k in evaluation.METRIC_KEYS:
        assert isinstance(res[k], float)
        np.testing.assert_allclose(res[k], ref[k].mean(), rtol=1e-4, atol=1e-6, err_msg=k)


def test_template_baseline_scores_like_a_prediction():
    batch, examples = _batch(12, batch_size=3, num_views=3)
    template = evaluation.template_keypoints()
    assert template.shape == (J, 3) and np.all(template[:, 2] == 0)
    np.testing.assert_array_equal(template[:, :2],
                                  np.asarray(skeleton.STANDING_TEMPLATE, np.float32))
    res = _collect([(np.broadcast_to(template, (3, 3, J, 3)), batch)]).results(0.1)
    exact = _collect([(_exact_keypoints(examples), batch)]).results(0.1)
    # A fixed pose is far from random true poses; the true pose is not.
    assert res["mpjpe"] > 100 and exact["mpjpe"] < 0.05


def test_invalid_views_are_skipped():
    batch, examples = _batch(9, batch_size=3, num_views=3)
    keypoints = _exact_keypoints(examples)
    valid = np.ones((3, 3), np.float32)
    valid[1, 2] = 0.0   # a missing camera: garbage prediction, zeroed calibration
    valid[2] = 0.0      # a padding example
    rng = np.random.default_rng(10)
    keypoints[1, 2] = rng.uniform(-1, 1, (J, 3))
    keypoints[2] = rng.uniform(-1, 1, (3, J, 3))
    for k in ("intrinsics", "extrinsics", "crop", "distortion"):
        batch[k][1, 2] = 0.0
        batch[k][2] = 0.0
    batch["joints_world"][2] = 0.0
    batch["view_valid"] = valid
    acc = _collect([(keypoints, batch)])
    res = acc.results(0.05)
    assert res["num_examples"] == 5 and res["num_frames"] == 2
    assert res["mpjpe"] < 0.05 and res["pck2d"] == 1.0
    assert list(acc.arrays()["actions"]) == ["walk"] * 3 + ["sit"] * 2

    pred_cam = evaluation.predictions_in_camera(keypoints, batch, SIZE, DEPTH_RANGE)
    assert np.isnan(pred_cam[2]).all() and np.isfinite(pred_cam[:2][valid[:2] > 0]).all()

    assert res["num_single_view"] == 0
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluation.Accumulator(SIZE, DEPTH_RANGE).results(0.05)


def test_single_view_root_depth_from_crop_scale():
    """One valid view: the root depth is the crop-scale rule, computed here in float64 NumPy."""
    batch, examples = _batch(11, batch_size=3, num_views=2)
    keypoints = np.random.default_rng(12).uniform(-0.8, 0.8, (3, 2, J, 3)).astype(np.float32)
    batch["view_valid"] = np.array([[1, 1], [0, 1], [1, 0]], np.float32)
    pred_cam = evaluation.predictions_in_camera(keypoints, batch, SIZE, DEPTH_RANGE)
    for b, v in ((1, 1), (2, 0)):
        crop = batch["crop"][b, v].astype(np.float64)
        k = batch["intrinsics"][b, v].astype(np.float64)
        root_depth = (np.sqrt(k[0, 0] * k[1, 1]) * DEPTH_RANGE
                      * np.sqrt(abs(np.linalg.det(crop[:, :2]))) / SIZE)
        uv_crop = (keypoints[b, v, :, :2].astype(np.float64) + 1) * (SIZE - 1) / 2
        uv = np.linalg.solve(crop[:, :2], (uv_crop - crop[:, 2]).T).T
        depth = root_depth + keypoints[b, v, :, 2] * DEPTH_RANGE / 2
        xy = np.linalg.solve(k, np.concatenate([uv, np.ones((J, 1))], 1).T).T[:, :2]
        expected = np.concatenate([xy * depth[:, None], depth[:, None]], 1)
        np.testing.assert_allclose(pred_cam[b, v], expected, rtol=1e-4, atol=1e-2)
    acc = _collect([(keypoints, batch)])
    res = acc.results(0.05)
    assert res["num_examples"] == 4 and res["num_single_view"] == 2


def test_per_joint_errors_and_left_right_consistency_against_loops():
    rng = np.random.default_rng(21)
    num_frames, views = 6, 3
    gt = rng.normal(0, 300, (num_frames * views, skeleton.NUM_JOINTS, 3))
    pred = gt + rng.normal(0, 20, gt.shape)
    frames = np.repeat(np.arange(num_frames), views)
    pairs = skeleton.LR_PAIRS
    # Frame 0: one view swaps the left/right knees (pair 1): inconsistent. Frame 1: every view
    # swaps the ankles (pair 2): consistent, whatever the truth says.
    (a, b) = pairs[1]
    pred[0, [a, b]] = pred[0, [b, a]]
    (a, b) = pairs[2]
    pred[3:6][:, [a, b]] = pred[3:6][:, [b, a]]
    zeros = np.zeros(gt.shape[:2] + (2,))
    results = evaluation.compute_results(pred, gt, zeros, zeros, ["a"] * len(gt), 64, 0.1,
                                         frames)
    rel = lambda x: x - x[:, :1]
    want = np.linalg.norm(rel(pred) - rel(gt), axis=-1).mean(axis=0)
    got = np.array(list(results["per_joint_mpjpe"].values()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    assert list(results["per_joint_mpjpe"]) == list(skeleton.JOINT_NAMES)
    assert results["lr_consistency"] == pytest.approx(1.0 - 1.0 / (num_frames * len(pairs)))
    no_frames = evaluation.compute_results(pred, gt, zeros, zeros, ["a"] * len(gt), 64, 0.1)
    assert np.isnan(no_frames["lr_consistency"])
