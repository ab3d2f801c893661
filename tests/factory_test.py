"""Tests of maskpose_jax.factory: every bad setting is an error naming its key, raised before a
dataset is opened; the models and the state it makes."""

import pytest

from experiments.configs import tiny
from maskpose_jax import factory
from maskpose_jax import train_step as train_step_lib


def test_model_option_errors_name_the_key():
    config = tiny.get_config()
    config.model.template = "sitting"
    with pytest.raises(ValueError, match=r"config\.model\.template .*'sitting'"):
        factory.create_models(config)
    config = tiny.get_config()
    config.physique.kind = "smpl"
    with pytest.raises(ValueError, match=r"config\.physique\.kind .*'smpl'"):
        factory.physique_capsule_width(config)
    config.physique.kind = "capsules"
    config.physique.capsule_width = 0.0
    with pytest.raises(ValueError, match=r"config\.physique\.capsule_width"):
        factory.physique_capsule_width(config)
    config.physique.capsule_width = 6e-3
    assert factory.physique_capsule_width(config) == 6e-3
    assert factory.physique_capsule_width(tiny.get_config()) is None


def test_refine_steps_need_the_fused_path():
    config = tiny.get_config("paper")
    config.loss.refine_steps = 4
    with pytest.raises(ValueError, match="config.loss.fusion"):
        train_step_lib.make_train_step(config, None, None, None, 32, None)


@pytest.mark.parametrize("key, value, match", [
    ("loss.supervision", "labels", r"config\.loss\.supervision .*'labels'"),
    ("model.dtype", "float16", r"config\.model\.dtype .*float16"),
    ("model.template", "sitting", r"config\.model\.template .*'sitting'"),
    ("physique.kind", "smpl", r"config\.physique\.kind .*'smpl'"),
    ("physique.pretrain_steps", 10, r"config\.physique\.pretrain_steps .*'body'"),
    ("train.optimizer", "lion", r"config\.train\.optimizer .*'lion'"),
    ("data.val_split", "test", r"config\.data\.val_split"),
    ("data.val_split", "test_unseen", r"config\.data\.val_split"),
])
def test_check_config_names_the_bad_key(key, value, match):
    config = tiny.get_config()
    factory.check_config(config)  # the shipped config passes
    section, name = key.split(".")
    setattr(config[section], name, value)
    # A data_dir that does not exist: the check raises before any dataset is opened.
    config.data.data_dir = "/nonexistent/tfds"
    with pytest.raises(ValueError, match=match):
        factory.check_config(config)


def test_body_needs_the_fused_pose():
    config = tiny.get_config()
    config.loss.fusion = False
    config.loss.refine_steps = 0  # (else that key's error comes first)
    with pytest.raises(ValueError, match=r"config\.physique\.kind = 'body' needs "
                                         r"config\.loss\.fusion"):
        factory.check_config(config)
