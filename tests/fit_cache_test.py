"""The fit cache: its size checks, and initial template fits that read no truth and resume."""

import jax
import numpy as np
import pytest

from data_builders import configured
from experiments.configs import tiny
from maskpose_jax import factory
from maskpose_jax import fit_cache
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import sharding
from maskpose_jax import train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    configured.get_builder(_config(path))  # builds the tiny dataset once
    return path


def _config(data_dir, **loss):
    config = tiny.get_config("refine_cache")
    config.data.data_dir = data_dir
    config.loss.fit_init_steps = 3
    config.loss.fit_init_restarts = 2
    for key, value in loss.items():
        setattr(config.loss, key, value)
    return config


def _source(config):
    return configured.open_split(config, "train")


def test_size_needs_a_cache_refinement_and_one_source(data_dir):
    source = _source(_config(data_dir))
    assert fit_cache.size(_config(data_dir), source) == len(source)
    assert fit_cache.size(_config(data_dir, fit_cache=False, fit_init_steps=0), source) == 0
    with pytest.raises(ValueError, match="config.loss.fit_cache = True"):
        fit_cache.size(_config(data_dir, fit_cache=False), source)
    with pytest.raises(ValueError, match="config.loss.refine_steps"):
        fit_cache.size(_config(data_dir, refine_steps=0), source)
    with pytest.raises(ValueError, match="config.loss.supervision"):
        fit_cache.size(_config(data_dir, supervision="oracle"), source)
    config = _config(data_dir)
    config.data.mix = [{"name": "synthetic", "weight": 1.0}]
    with pytest.raises(ValueError, match="config.data.mix"):
        fit_cache.size(config, source)


class _Poisoned:
    """The records of a source with their ground-truth joints replaced by NaN."""

    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        record = dict(self._source[index])
        record["joints_world"] = np.full_like(np.asarray(record["joints_world"]), np.nan)
        return record


def test_initial_fits_are_the_template_fits_and_read_no_truth(data_dir):
    config = _config(data_dir)
    config.eval.batch_size = 16  # the tiny split is 24 examples: one full batch, one padded
    source = _source(config)
    radii = factory.physique_body_radii(config)
    cache = fit_cache.initial_fits(config, source, 32, body_radii_mm=radii)
    assert cache["joints"].shape == (len(source), 17, 3) and cache["filled"].all()
    assert np.isfinite(cache["joints"]).all()
    poisoned = fit_cache.initial_fits(config, _Poisoned(source), 32, body_radii_mm=radii)
    np.testing.assert_array_equal(cache["joints"], poisoned["joints"])
    # Entry i is example i's fit, whichever batch it fell in (the last one is padded).
    records = [input_pipeline.decode_example(source[i]) for i in (0, len(source) - 1)]
    batch = {k: np.stack([r[k] for r in records]) for k in input_pipeline.TRAIN_FIELDS}
    weights = {t: float(w) for t, w in config.stages[0].loss_weights.items()
               if t in fused.POSE_TERMS}
    want = fused.template_fit(fused.example_views(batch, config.loss), config.loss, 32, weights,
                              3, 2, float(config.loss.fit_init_lr_mm), body_radii_mm=radii)
    np.testing.assert_allclose(cache["joints"][[0, len(source) - 1]], np.asarray(want),
                               atol=0.1)  # mm; float32 in another batch shape


def test_training_starts_from_the_fits_and_resumes_without_refitting(data_dir, tmp_path,
                                                                     monkeypatch):
    config = _config(data_dir)
    config.stages[0].steps = 2
    config.train.image_every = 0
    train.train_and_evaluate(config, str(tmp_path), configured.open_training(config))
    calls = []
    original = fit_cache.initial_fits
    monkeypatch.setattr(fit_cache, "initial_fits",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    config.stages[0].steps = 3
    train.train_and_evaluate(config, str(tmp_path), configured.open_training(config))
    assert not calls  # resumed: the cache came from the checkpoint
    # The cache's length comes from the checkpoint's meta: no dataset needed.
    state, meta = factory.restore_latest(config, str(tmp_path), sharding.make_mesh())
    assert meta["fit_cache_size"] == len(_source(config)) and meta["image_size"] == 32
    assert int(jax.device_get(state.step)) == 3
    assert np.asarray(state.fit_cache["filled"]).all()
