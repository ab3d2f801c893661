"""Tests of maskpose_jax.inference: the evaluation of a split over padded batches."""

import numpy as np
import pytest

from data_builders import configured
from experiments.configs import tiny
from maskpose_jax import evaluation
from maskpose_jax import inference
from maskpose_jax import input_pipeline
from maskpose_jax import skeleton
from tests import references


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    config = tiny.get_config()
    config.data.data_dir = str(tmp_path_factory.mktemp("tfds"))
    return configured.open_split(config, "test")


def _predict(params, batch_stats, images_BxVxNxNx3):
    """A prediction that depends on each view's image: the template moved by its mean colour."""
    del params, batch_stats
    shift = np.asarray(images_BxVxNxNx3, np.float32).mean(axis=(2, 3, 4)) / 255.0 - 0.5
    keypoints = np.broadcast_to(evaluation.template_keypoints(),
                                shift.shape + evaluation.template_keypoints().shape).copy()
    keypoints[..., 0] += shift[..., None]
    keypoints[..., 2] += 0.3 * shift[..., None]
    return keypoints


def test_padded_last_batch_scores_like_unpadded_batches(source):
    count = len(source)
    assert count % 4 != 0, count   # the batch of 4 ends with a padded partial batch
    results = {}
    for batch_size in (1, 4):
        config = tiny.get_config()
        config.eval.batch_size = batch_size
        results[batch_size] = inference.evaluate(config, _predict, None, None, source, 32)
    one, four = results[1], results[4]
    assert one["num_examples"] == four["num_examples"]
    for key in evaluation.METRIC_KEYS:
        np.testing.assert_allclose(four[key], one[key], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(four[evaluation.BASELINE_KEY][key],
                                   one[evaluation.BASELINE_KEY][key], rtol=1e-5, err_msg=key)


def _ref_template_scores(source, size, threshold):
    """N-MPJPE, P-MPJPE and 2D-PCK of the standing template on every view-sample, float64 NumPy.

    The template has z = 0, so its lift is the rays through its pixels times the root depth:
    N- and P-MPJPE do not depend on that depth, and the rays at depth 1 are used here."""
    template = np.asarray(skeleton.STANDING_TEMPLATE, np.float64)
    crop_px = (template + 1.0) * (size - 1) / 2.0
    n_errors, p_errors, hits = [], [], []
    for i in range(len(source)):
        e = input_pipeline.decode_example(source[i])
        for v in range(len(e["crop"])):
            crop = np.asarray(e["crop"][v], np.float64)
            k, ext = np.asarray(e["intrinsics"][v], np.float64), np.asarray(e["extrinsics"][v],
                                                                            np.float64)
            a_inv = np.linalg.inv(np.vstack([crop, [0.0, 0.0, 1.0]]))
            full = (a_inv @ np.c_[crop_px, np.ones(len(crop_px))].T).T[:, :2]
            rays = (np.linalg.inv(k) @ np.c_[full, np.ones(len(full))].T).T
            truth = np.asarray(e["joints_world"], np.float64) @ ext[:, :3].T + ext[:, 3]
            p = rays - rays[skeleton.PELVIS]
            g = truth - truth[skeleton.PELVIS]
            n_errors.append(np.mean(np.linalg.norm(np.sum(p * g) / np.sum(p * p) * p - g, axis=1)))
            x, y = p - p.mean(0), g - g.mean(0)
            u, sig, vt = np.linalg.svd(x.T @ y)
            d = np.sign(np.linalg.det(u @ vt))
            rot = u @ np.diag([1.0, 1.0, d]) @ vt
            scale = (sig[0] + sig[1] + d * sig[2]) / np.sum(x * x)
            p_errors.append(np.mean(np.linalg.norm(scale * x @ rot - y, axis=1)))
            uv = references.project_reference(np.asarray(e["joints_world"], np.float64), k, ext,
                                              np.asarray(e["distortion"][v], np.float64))
            gt_2d = uv @ crop[:, :2].T + crop[:, 2]
            hits.append(np.mean(np.linalg.norm(crop_px - gt_2d, axis=1) <= threshold * size))
    return {"n_mpjpe": np.mean(n_errors), "p_mpjpe": np.mean(p_errors), "pck2d": np.mean(hits)}


def test_constant_skeleton_baseline_against_numpy(source):
    config = tiny.get_config()
    results = inference.evaluate(config, _predict, None, None, source, 32)
    baseline = results[evaluation.BASELINE_KEY]
    reference = _ref_template_scores(source, 32, float(config.eval.pck2d_threshold))
    for key, value in reference.items():
        np.testing.assert_allclose(baseline[key], value, rtol=2e-3, err_msg=key)


@pytest.mark.parametrize("variant", ["default", "paper"])
def test_training_panel_draws_the_masks_the_loss_scores(source, variant):
    """The default (fused pose, mm body): the panel's Physique Masks are the fixed body of the
    fused pose, whatever the (unused) physique network's parameters; the paper's recipe: the
    network on each view's Skeleton Mask."""
    import jax  # pylint: disable=import-outside-toplevel

    from maskpose_jax import factory  # pylint: disable=import-outside-toplevel
    from maskpose_jax import fused  # pylint: disable=import-outside-toplevel
    from maskpose_jax import render  # pylint: disable=import-outside-toplevel
    config = tiny.get_config(variant)
    detector, physique = factory.create_models(config)
    params = jax.tree.map(np.asarray, detector.init(jax.random.key(0), np.zeros((1, 32, 32, 3)),
                                                    train=False))
    physique_params = physique.init(jax.random.key(1), np.zeros((1, 32, 32)))["params"]
    batch = next(iter(input_pipeline.make_dataset([source[i] for i in range(2)],
                                                  global_batch_size=2, training=False,
                                                  num_threads=1)))
    batch = input_pipeline.without_ground_truth(batch)
    visualize = inference.make_visualize(config, detector, physique, 32)
    all_params = {"detector": params["params"], "physique": physique_params}
    stats = params.get("batch_stats", {})
    keypoints, skel, phys = (np.asarray(x) for x in visualize(all_params, stats, batch, 0))
    want_kp = inference.make_predict(detector)(all_params, stats, batch["image"][:1])[0]
    np.testing.assert_allclose(keypoints, want_kp, atol=1e-6)
    if variant == "default":
        example = jax.tree.map(lambda x: x[0], fused.example_views(batch, config.loss))
        pose, _ = fused.example_pose(keypoints, example, config.loss, 32,
                                     float(config.model.depth_range_mm))
        drawn = fused.draw_pose(pose, example, config.loss, 32, None,
                                factory.physique_body_radii(config))
        np.testing.assert_allclose(skel, drawn["skel_VxNxN"], atol=1e-5)
        np.testing.assert_allclose(phys, drawn["body_VxNxN"], atol=1e-5)
        other = jax.tree.map(lambda x: x + 1.0, physique_params)
        _, _, phys_other = visualize({**all_params, "physique": other}, stats, batch, 0)
        np.testing.assert_array_equal(np.asarray(phys_other), phys)
    else:
        want_skel = np.stack([np.asarray(render.skeleton_mask(k[:, :2], 32,
                                                              config.loss.body_width))
                              for k in keypoints])
        np.testing.assert_allclose(skel, want_skel, atol=1e-5)
        want_phys = physique.apply({"params": physique_params}, want_skel)
        np.testing.assert_allclose(phys, want_phys, atol=1e-4)
