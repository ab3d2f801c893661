"""Every key of every shipped config is read: a key nothing reads is a setting a user changes in
vain (`train.optimizer` once was). The reads of two tiny runs (ours and the paper's path) are
recorded; the few keys read only on other paths are listed with the path that reads them."""

import contextlib
import importlib
import os
import re

import pytest
from ml_collections.config_dict import config_dict

from data_builders import configured
from experiments.configs import synthetic
from experiments.configs import tiny
from maskpose_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ("synthetic", "tiny", "tiny_real", "h36m", "mpi_inf_3dhp", "h36m_in_the_wild")
# Keys the two runs do not read, and what reads them (each name must occur in the code).
READ_ELSEWHERE = {
    "data.build_if_missing": "data_builders.configured.get_builder, when the dataset is not built",
    "data.weight": "datasets.make_train_dataset, with a data.mix",
    "eval.max_examples": "experiments.evaluate",
    "loss.cover_radius": "fused, with loss.use_cover",
    "physique.capsule_width": "factory.physique_capsule_width, with physique.kind = capsules",
    "physique.pretrain_batch": "physique_prior.pretrain, with physique.pretrain_steps > 0",
    "physique.pretrain_examples": "physique_prior.pretrain, with physique.pretrain_steps > 0",
    "physique.pretrain_lr": "physique_prior.pretrain, with physique.pretrain_steps > 0",
    "variant": "experiments.evaluate's title",
}


def _nodes(config, prefix=""):
    """(path prefix, ConfigDict) of `config` and of every ConfigDict inside it, lists included."""
    yield prefix, config
    for key, value in config.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, config_dict.ConfigDict):
                yield from _nodes(v, prefix + key + ("[]." if v is not value else "."))


def _leaves(config):
    """Every leaf key: "loss.use_sym", "stages[].learning_rate", ...; builder options
    (data.options.*) and mix entries are the builders' (an unknown option is an error there)."""
    return {prefix + key for prefix, node in _nodes(config)
            if not prefix.startswith(("data.options.", "data.mix[]."))
            for key, value in node.items()
            if prefix + key not in ("data.options", "data.mix")
            and not any(isinstance(v, config_dict.ConfigDict)
                       for v in (value if isinstance(value, (list, tuple)) else [value]))}


@contextlib.contextmanager
def _recording(config, reads, monkeypatch):
    """Adds to `reads` the key path of every item read from `config` (attribute, item, get, or
    items()), except by the config's own serialization (config.json)."""
    paths = {id(node): prefix for prefix, node in _nodes(config)}
    getitem, items = config_dict.ConfigDict.__getitem__, config_dict.ConfigDict.items
    quiet = []

    def recorded_getitem(self, key):
        if not quiet and id(self) in paths and isinstance(key, str) and "." not in key:
            reads.add(paths[id(self)] + key)
        return getitem(self, key)

    def recorded_items(self, *args, **kwargs):
        if not quiet and id(self) in paths:
            reads.update(paths[id(self)] + key for key in self.keys())
        return items(self, *args, **kwargs)

    def silent(method):
        def wrapped(self, *args, **kwargs):
            quiet.append(1)
            try:
                return method(self, *args, **kwargs)
            finally:
                quiet.pop()
        return wrapped

    monkeypatch.setattr(config_dict.ConfigDict, "__getitem__", recorded_getitem)
    monkeypatch.setattr(config_dict.ConfigDict, "items", recorded_items)
    for name in ("to_json_best_effort", "to_dict", "__repr__", "__str__"):
        monkeypatch.setattr(config_dict.ConfigDict, name,
                            silent(getattr(config_dict.ConfigDict, name)))
    yield
    monkeypatch.undo()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    config = tiny.get_config()
    config.data.data_dir = path
    configured.get_builder(config)
    return path


def test_every_key_is_read(data_dir, tmp_path, monkeypatch):
    keys, reads = set(), set()
    for variant in ("default", "paper"):
        config = tiny.get_config(variant)
        config.data.data_dir = data_dir
        config.train.eval_every = 4   # the in-training evaluation reads its keys too
        keys |= _leaves(config)
        with _recording(config, reads, monkeypatch):
            train.train_and_evaluate(config, str(tmp_path / variant),
                                     configured.open_training(config))
    unread = keys - reads
    never = sorted(unread - set(READ_ELSEWHERE))
    assert not never, f"keys no path reads: {never}"
    # The list stays exact: an entry the runs now read is taken out of it.
    assert unread == set(READ_ELSEWHERE), sorted(set(READ_ELSEWHERE) - unread)
    code = ""
    for folder in ("maskpose_jax", "experiments", "data_builders"):
        for root, _, names in os.walk(os.path.join(REPO, folder)):
            if "configs" not in root:
                code += "".join(open(os.path.join(root, n)).read() for n in names
                                if n.endswith(".py") and not n.endswith("_test.py"))
    for key in READ_ELSEWHERE:
        assert re.search(rf"\.{key.split('.')[-1]}\b", code), key

    # Every variant of every shipped config has these keys and no others (loss weights aside:
    # the cascade reads every stage's weights, and cascade.validate_stages rejects unknown terms).
    for name in SHIPPED:
        module = importlib.import_module(f"experiments.configs.{name}")
        for variant in getattr(module, "VARIANTS", synthetic.VARIANTS):
            extra = {k for k in _leaves(module.get_config(variant)) - keys
                     if not k.startswith("stages[].loss_weights.")}
            assert not extra, f"{name}.py:{variant}: keys the test does not cover: {extra}"
