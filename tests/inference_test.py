"""Tests of maskpose_jax.inference: the evaluation of a split over padded batches."""

import numpy as np
import pytest

import data_builders
from experiments.configs import tiny
from maskpose_jax import datasets
from maskpose_jax import evaluation
from maskpose_jax import inference


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    config = tiny.get_config()
    config.data.data_dir = str(tmp_path_factory.mktemp("tfds"))
    return data_builders.data_source(datasets.get_builder(config), "test")


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
