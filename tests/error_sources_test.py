"""Tests for maskpose_jax.error_sources: each alternative exchanges exactly the part it names."""

import numpy as np

from maskpose_jax import error_sources
from maskpose_jax import multiview
from tests import fused_test


def _truth_keypoints(batch):
    return np.stack([np.asarray(multiview.oracle_targets(
        batch["joints_world"][b], batch["crop"][b], batch["intrinsics"][b],
        batch["extrinsics"][b], batch["distortion"][b], fused_test.SIZE,
        fused_test.DEPTH_RANGE_MM)) for b in range(len(batch["crop"]))])


def test_true_keypoints_give_the_truth_in_every_row():
    batch = fused_test.fused_batch(np.random.default_rng(0), num_examples=3, num_views=3)
    truth = _truth_keypoints(batch)
    rows = error_sources.alternatives(truth, batch, fused_test.SIZE, fused_test.DEPTH_RANGE_MM,
                                      fit=lambda world_BxJx3, _: world_BxJx3)
    assert set(rows) == set(error_sources.ROWS) - {"constant", "template + fit"}
    for name, keypoints in rows.items():
        np.testing.assert_allclose(keypoints, truth, atol=2e-3, err_msg=name)


def test_rows_exchange_only_the_part_they_name():
    rng = np.random.default_rng(1)
    batch = fused_test.fused_batch(rng, num_examples=2, num_views=4)
    truth = _truth_keypoints(batch)
    pred = (truth + rng.normal(0, 0.05, truth.shape)).astype(np.float32)
    rows = error_sources.alternatives(pred, batch, fused_test.SIZE, fused_test.DEPTH_RANGE_MM)
    np.testing.assert_array_equal(rows["prediction"], pred)
    np.testing.assert_allclose(rows["pred xy + true z"][..., :2], pred[..., :2])
    np.testing.assert_allclose(rows["pred xy + true z"][..., 2], truth[..., 2], atol=1e-5)
    np.testing.assert_allclose(rows["true xy + pred z"][..., :2], truth[..., :2], atol=1e-5)
    np.testing.assert_allclose(rows["true xy + pred z"][..., 2], pred[..., 2])
    np.testing.assert_allclose(rows["pred xy + fused z"][..., :2], pred[..., :2])
    np.testing.assert_allclose(rows["pred xy + fused z"][..., 2], rows["fused"][..., 2])
    # The fused pose is one world pose: its depths in a view follow from an independent NumPy
    # float64 triangulation of the predicted 2D (geometry.triangulate's estimator: each view's
    # two planes scaled to unit normals, least squares over the point), moved into that camera.
    for b in range(2):
        points = []
        for j in range(17):
            rows_a = []
            for v in range(4):
                crop = np.vstack([batch["crop"][b, v], [0, 0, 1]]).astype(np.float64)
                uv_crop = (pred[b, v, j, :2].astype(np.float64) + 1) * (fused_test.SIZE - 1) / 2
                u, w = (np.linalg.inv(crop) @ np.append(uv_crop, 1.0))[:2]
                proj = (batch["intrinsics"][b, v].astype(np.float64)
                        @ batch["extrinsics"][b, v].astype(np.float64))
                for plane in (u * proj[2] - proj[0], w * proj[2] - proj[1]):
                    rows_a.append(plane / np.linalg.norm(plane[:3]))
            planes = np.asarray(rows_a)
            points.append(np.linalg.lstsq(planes[:, :3], -planes[:, 3], rcond=None)[0])
        world = np.asarray(points)
        for v in range(4):
            ext = batch["extrinsics"][b, v].astype(np.float64)
            depth = (world @ ext[:, :3].T + ext[:, 3])[:, 2]
            want = (depth - depth[0]) / (fused_test.DEPTH_RANGE_MM / 2)
            np.testing.assert_allclose(rows["fused"][b, v, :, 2], want, atol=2e-3)
