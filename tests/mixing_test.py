"""Mixed training sources: per-batch counts, view padding, seeds, resume, process slices, and the
trainer on a mixture of a 4-view and a 1-view tiny synthetic dataset."""

import copy
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_builders import configured
from experiments.configs import base
from experiments.configs import h36m_in_the_wild
from experiments.configs import synthetic
from experiments.configs import tiny
from maskpose_jax import cascade
from maskpose_jax import checkpoint
from maskpose_jax import datasets
from maskpose_jax import factory
from maskpose_jax import input_pipeline
from maskpose_jax import sharding
from maskpose_jax import train
from maskpose_jax import train_step as train_step_lib

N, J = 8, 17


def _record(source_id, i, num_views):
    """Example `i` of source `source_id`: both ids stored in every view's principal point."""
    rng = np.random.default_rng(1000 * source_id + i)
    k = np.array([[1, 0, i], [0, 1, source_id], [0, 0, 1]], np.float32)
    return {
        "image": [rng.integers(0, 256, (N, N, 3), dtype=np.uint8) for _ in range(num_views)],
        "mask": [rng.integers(0, 256, (N, N, 1), dtype=np.uint8) for _ in range(num_views)],
        "weight": rng.uniform(1, 20, (num_views, N, N)).astype(np.float16),
        "intrinsics": np.tile(k, (num_views, 1, 1)),
        "extrinsics": rng.normal(size=(num_views, 3, 4)).astype(np.float32),
        "crop": rng.normal(size=(num_views, 2, 3)).astype(np.float32),
        "distortion": rng.normal(size=(num_views, 5)).astype(np.float32),
        "joints_world": rng.normal(size=(J, 3)).astype(np.float32),
        "meta": {"subject": b"S", "action": b"a", "frame": i, "camera": [b"c"] * num_views},
    }


MULTI = [_record(0, i, 4) for i in range(11)]   # 4 views
SINGLE = [_record(1, i, 1) for i in range(7)]   # 1 view


def _ids(batch):
    """(source id, example id) per row."""
    k = batch["intrinsics"][:, 0]
    return list(zip(k[:, 1, 2].astype(int).tolist(), k[:, 0, 2].astype(int).tolist()))


def _mixture(weights=(3.0, 1.0), seed=0, **kwargs):
    sources = [input_pipeline.MixSource(MULTI, weights[0], label="multi"),
               input_pipeline.MixSource(SINGLE, weights[1], label="single")]
    kwargs = {"global_batch_size": 4, "num_threads": 2, "prefetch": 4, **kwargs}
    return input_pipeline.make_mixture(sources, seed=seed, **kwargs)


def _take(dataset, count):
    return list(itertools.islice(iter(dataset), count))


# --- Counts ----------------------------------------------------------------------------------


def _counts_reference(weights, batch_size):
    """Brute force: the composition of batch_size closest (least squares) to the quotas, with >= 1
    example per source of weight > 0 and none for weight 0."""
    w = np.asarray(weights, np.float64)
    quota = w / w.sum() * batch_size
    best = None
    for counts in itertools.product(range(batch_size + 1), repeat=len(w)):
        counts = np.array(counts)
        if counts.sum() != batch_size or np.any((w > 0) & (counts < 1)) or np.any(
                (w == 0) & (counts > 0)):
            continue
        cost = np.sum((counts - quota) ** 2)
        if best is None or cost < best[0]:
            best = (cost, tuple(counts.tolist()))
    return best[1]


def test_mix_counts_match_least_squares_reference():
    rng = np.random.default_rng(0)
    for _ in range(60):
        weights = rng.uniform(0, 1, 3) ** 3
        weights[rng.integers(0, 3)] *= rng.integers(0, 2)  # sometimes a weight of 0
        batch_size = int(rng.integers(3, 11))
        counts = input_pipeline.mix_counts(weights, batch_size)
        assert counts == _counts_reference(weights, batch_size), (weights, batch_size)
        assert sum(counts) == batch_size


def test_mix_counts_cases_and_errors():
    assert input_pipeline.mix_counts([0.75, 0.25], 32) == (24, 8)
    assert input_pipeline.mix_counts([5, 3, 2], 7) == (4, 2, 1)   # largest remainder: .5 > .4 > .1
    assert input_pipeline.mix_counts([0.99, 0.01], 4) == (3, 1)   # every source gets one
    assert input_pipeline.mix_counts([1.0, 0.0], 4) == (4, 0)
    with pytest.raises(ValueError, match=r"config\.train\.batch_size"):
        input_pipeline.mix_counts([1, 1, 1], 2)
    for bad in ([1, -1], [0, 0], [1, np.nan]):
        with pytest.raises(ValueError, match="weight"):
            input_pipeline.mix_counts(bad, 4)


# --- Batches ---------------------------------------------------------------------------------


def test_batches_hold_fixed_counts_and_padded_views():
    batches = _take(_mixture(augment=False), 6)
    for batch in batches:
        assert [s for s, _ in _ids(batch)] == [0, 0, 0, 1]
        assert batch["image"].shape == (4, 4, N, N, 3) and batch["weight"].shape == (4, 4, N, N)
        assert set(batch) == set(input_pipeline.TRAIN_FIELDS) | {"view_valid"}
        assert batch["view_valid"].dtype == np.float32
        np.testing.assert_array_equal(batch["view_valid"], [[1] * 4] * 3 + [[1, 0, 0, 0]])
        for row, (source_id, i) in enumerate(_ids(batch)):
            example = input_pipeline.decode_example((MULTI, SINGLE)[source_id][i])
            real = 4 if source_id == 0 else 1
            for key in input_pipeline.TRAIN_FIELDS:
                np.testing.assert_array_equal(batch[key][row, :real], example[key], err_msg=key)
        pad = {k: batch[k][3, 1:] for k in batch if k != "view_valid"}
        for key in ("image", "mask", "weight", "distortion"):
            assert not pad[key].any(), key
        centre = (N - 1) / 2
        intrinsics = [[N, 0, centre], [0, N, centre], [0, 0, 1]]
        np.testing.assert_array_equal(pad["intrinsics"], np.tile(intrinsics, (3, 1, 1)))
        np.testing.assert_array_equal(pad["extrinsics"][:, :, :3], np.tile(np.eye(3), (3, 1, 1)))
        np.testing.assert_array_equal(pad["extrinsics"][:, :, 3], np.tile([0, 0, 1000], (3, 1)))
        np.testing.assert_array_equal(pad["crop"], np.tile(np.eye(2, 3), (3, 1, 1)))


def test_each_source_reads_as_its_own_seeded_dataset():
    """Source i's rows are make_dataset over that source alone, batch = its count, seed + i."""
    seed = 3
    mixed = _take(_mixture(seed=seed), 14)
    alone = [_take(input_pipeline.make_dataset(source, global_batch_size=count, training=True,
                                               seed=seed + i, num_threads=1), 14)
             for i, (source, count) in enumerate(((MULTI, 3), (SINGLE, 1)))]
    for step, batch in enumerate(mixed):
        for key in input_pipeline.TRAIN_FIELDS:  # augmentation included
            np.testing.assert_array_equal(batch[key][:3], alone[0][step][key], err_msg=key)
            np.testing.assert_array_equal(batch[key][3:, :1], alone[1][step][key], err_msg=key)
    # Each source is reshuffled every epoch: its first len(source) examples are a permutation.
    singles = [i for batch in mixed for s, i in _ids(batch) if s == 1]
    assert sorted(singles[:7]) == sorted(singles[7:]) == list(range(7))
    assert singles[:7] != singles[7:]


def test_deterministic_per_seed():
    first = [_ids(b) for b in _take(_mixture(seed=1), 10)]
    again = [_ids(b) for b in _take(_mixture(seed=1), 10)]
    other = [_ids(b) for b in _take(_mixture(seed=2), 10)]
    assert first == again and first != other


def test_lone_source_is_make_dataset_bit_for_bit():
    reference = _take(input_pipeline.make_dataset(MULTI, global_batch_size=4, training=True,
                                                  seed=7, num_threads=2), 5)
    sources = [input_pipeline.MixSource(MULTI, 1.0)]
    lone = _take(input_pipeline.make_mixture(sources, global_batch_size=4, seed=7), 5)
    with_unused = _take(_mixture(weights=(1.0, 0.0), seed=7), 5)
    for want, got_a, got_b in zip(reference, lone, with_unused):
        assert set(got_a) == set(got_b) == set(want)  # no view_valid
        for key in want:
            np.testing.assert_array_equal(got_a[key], want[key])
            np.testing.assert_array_equal(got_b[key], want[key])


def test_resume_mid_stream_gives_the_same_batches():
    iterator = iter(_mixture(seed=5))
    for _ in range(7):
        next(iterator)
    state = json.loads(json.dumps(iterator.get_state()))  # as the checkpoint stores it
    expected = [next(iterator) for _ in range(4)]
    resumed = iter(_mixture(seed=5))
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_processes_read_disjoint_slices_in_the_same_proportions():
    seen = {0: [], 1: []}
    for index in range(2):
        for batch in _take(_mixture(global_batch_size=8, process_index=index, process_count=2), 6):
            ids = _ids(batch)
            assert [s for s, _ in ids] == [0, 0, 0, 1]   # 4 per process: 3 + 1, as with one
            seen[index].append(ids)
    for source_id, size in ((0, len(MULTI)), (1, len(SINGLE))):
        per_process = [{i for ids in seen[p] for s, i in ids if s == source_id} for p in (0, 1)]
        assert not per_process[0] & per_process[1]
        assert per_process[0] | per_process[1] == set(range(size))
        assert per_process[0] == set(range(0, size, 2))


def test_mixture_errors():
    with pytest.raises(ValueError, match=r"config\.train\.batch_size"):
        _mixture(global_batch_size=1)
    other_size = [dict(r, image=[np.zeros((4, 4, 3), np.uint8)], mask=[np.zeros((4, 4, 1),
                                                                                np.uint8)])
                  for r in SINGLE]
    sources = [input_pipeline.MixSource(MULTI, 1.0, label="multi"),
               input_pipeline.MixSource(other_size, 1.0, label="small")]
    with pytest.raises(ValueError, match="crop size.*small: 4x4"):
        input_pipeline.make_mixture(sources, global_batch_size=4)


# --- Configs and trainer ---------------------------------------------------------------------


def test_configs():
    default = synthetic.get_config()
    assert default.data.weight == 1.0 and list(default.data.mix) == []
    config = h36m_in_the_wild.get_config()
    assert config.data.name == "h36m" and config.data.weight == 0.75
    (entry,) = config.data.mix
    assert entry.name == "in_the_wild" and entry.weight == 0.25 and entry.train_split == "train"
    assert entry.options.image_size == config.data.options.image_size == 256
    assert input_pipeline.mix_counts([config.data.weight, entry.weight],
                                     config.train.batch_size) == (24, 8)


def _mix_config(data_dir):
    config = tiny.get_config()
    config.data.data_dir = data_dir
    config.data.options.num_views = 4
    config.data.weight = 0.75
    options = {**dict(config.data.options), "num_views": 1}
    config.data.mix = [base.mix_source("synthetic", 0.25, options=options)]
    base.without_fits(config)  # the fit cache indexes one split
    base.set_stage_steps(config, (1, 1, 1), 3)
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.image_every = 0
    config.train.eval_examples = 4
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    config = _mix_config(path)
    configured.open_training(config)  # builds both tiny datasets
    return path


def _primary(config):
    return configured.open_split(config, "train")


def test_trainer_builds_every_source_and_mixes_them(data_dir):
    config = _mix_config(data_dir)
    mixed = next(iter(datasets.make_train_dataset(config, configured.open_training(config))))
    assert mixed["image"].shape == (4, 4, 32, 32, 3)
    np.testing.assert_array_equal(mixed["view_valid"], [[1] * 4] * 3 + [[1, 0, 0, 0]])
    # An empty mix is today's pipeline: make_dataset over the primary source, batch for batch.
    config.data.mix = []
    source = _primary(config)
    got = next(iter(datasets.make_train_dataset(config, datasets.Sources(source))))
    want = next(iter(input_pipeline.make_dataset(
        source, global_batch_size=4, training=True, seed=config.seed, num_threads=1)))
    assert set(got) == set(want) == set(input_pipeline.TRAIN_FIELDS)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_bad_mix_entries_are_named(data_dir):
    config = _mix_config(data_dir)
    config.data.mix[0].name = "no_such_set"
    with pytest.raises(ValueError, match=r"config\.data\.mix\[0\]\.name.*no_such_set"):
        configured.open_training(config)
    config = _mix_config(data_dir)
    config.data.mix[0].options.image_size = 16
    with pytest.raises(ValueError, match=r"crop size.*config\.data\.mix\[0\]"):
        datasets.make_train_dataset(config, configured.open_training(config))
    config = _mix_config(data_dir)
    config.data.mix[0].options.nope = 1
    with pytest.raises(ValueError, match=r"config\.data\.mix\[0\]\.options.*nope"):
        configured.get_builder(config, 0)


@pytest.mark.slow
def test_padded_view_content_changes_neither_loss_nor_gradients(data_dir):
    """A train step on a mixed batch is the same whatever its padded views hold."""
    config = _mix_config(data_dir)
    config.data.augment = False
    mesh = sharding.make_mesh()
    detector, physique = factory.create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    state = factory.init_state(config, detector, physique, optimizer, 32, mesh)
    step = train_step_lib.make_train_step(config, detector, physique, optimizer, 32, mesh)
    batch = next(iter(datasets.make_train_dataset(config, configured.open_training(config))))
    padded = batch["view_valid"] == 0
    assert padded.any()
    rng = np.random.default_rng(0)
    garbage = copy.deepcopy(batch)
    for key, value in garbage.items():
        if key == "view_valid":
            continue
        noise = (rng.integers(0, 256, value.shape).astype(value.dtype) if value.dtype == np.uint8
                 else rng.normal(0, 100, value.shape).astype(value.dtype))
        value[padded] = noise[padded]
    new_clean, clean = step(jax.tree.map(jnp.copy, state), sharding.shard_batch(batch, mesh))
    new_dirty, dirty = step(state, sharding.shard_batch(garbage, mesh))
    assert bool(clean["finite"]) and float(clean["loss"]) > 0
    for key in clean:
        np.testing.assert_allclose(dirty[key], clean[key], rtol=1e-6, err_msg=key)
    for a, b in zip(jax.tree.leaves(new_dirty.params), jax.tree.leaves(new_clean.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_mixed_training_end_to_end(data_dir, tmp_path):
    """A few steps on the mixture, evaluation on the primary set, and the saved data order."""
    config = _mix_config(data_dir)
    results = train.train_and_evaluate(config, str(tmp_path), configured.open_training(config))
    assert np.isfinite(results["mpjpe"])
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    assert checkpoint.Checkpointer(str(tmp_path / "checkpoints")).latest_step() == 3
    data_state = json.load(open(tmp_path / "checkpoints" / "3" / "data" / "metadata"))
    # One position per source after three batches of 3 + 1 examples.
    assert data_state == {"parents": [{"next_index": 9}, {"next_index": 3}]}
    # A resumed run's iterator continues where the run stopped: with the fourth batch.
    sources = configured.open_training(config)
    fresh = iter(datasets.make_train_dataset(config, sources))
    want = [next(fresh) for _ in range(4)][-1]
    resumed = iter(datasets.make_train_dataset(config, sources))
    resumed.set_state(data_state)
    got = next(resumed)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
