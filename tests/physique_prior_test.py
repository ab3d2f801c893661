"""The Physique network pre-trained on random poses of the procedural body (`physique_prior`)."""

import jax
import numpy as np
import pytest

from data_builders import configured
from experiments.configs import tiny
from maskpose_jax import factory
from maskpose_jax import physique_prior


def _config(steps, **settings):
    config = tiny.get_config("pretrained_physique")
    config.physique.pretrain_steps = steps
    config.physique.pretrain_examples = 12
    config.physique.pretrain_batch = 8
    for key, value in settings.items():
        setattr(config.physique, key, value)
    return config


def _pretrain(config):
    _, physique = factory.create_models(config)
    pairs = configured.physique_pairs(config, 32, echo=lambda _: None)
    return physique_prior.pretrain(config, physique, pairs, echo=lambda _: None)


def test_pretraining_fits_held_out_silhouettes_and_repeats():
    params, report = _pretrain(_config(60))
    _, first = _pretrain(_config(1))
    assert report["held_out_loss"] < 0.7 * first["held_out_loss"], (report, first)
    assert 0.0 < report["skeleton_iou"] < 1.0 and report["examples"] == 12
    again, _ = _pretrain(_config(60))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)       # seeded: the same parameters


@pytest.mark.parametrize("key, value, match", [
    ("pretrain_examples", 5, r"config\.physique\.pretrain_examples must be >= 10"),
    ("pretrain_batch", 0, r"config\.physique\.pretrain_batch >= 1"),
    ("pretrain_steps", -1, r"config\.physique\.pretrain_steps must be >= 0"),
])
def test_bad_settings_name_their_keys(key, value, match):
    config = _config(2, **{key: value})
    with pytest.raises(ValueError, match=match):
        factory.check_config(config)      # before any pair is rendered
    _, physique = factory.create_models(config)
    with pytest.raises(ValueError, match=match):
        physique_prior.pretrain(config, physique, {}, echo=lambda _: None)


def test_too_few_pairs_are_an_error():
    config = _config(2)
    pairs = configured.physique_pairs(config, 32, echo=lambda _: None)
    _, physique = factory.create_models(config)
    with pytest.raises(ValueError, match=">= 10 pairs"):
        physique_prior.pretrain(config, physique, {k: v[:4] for k, v in pairs.items()})
