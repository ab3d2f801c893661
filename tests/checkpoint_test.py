"""Tests for maskpose_jax.checkpoint: round trips of a TrainState-like node, retention, placement."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from maskpose_jax import checkpoint
from maskpose_jax import sharding
from maskpose_jax.checkpoint import Checkpointer


class _TrainState(struct.PyTreeNode):
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    batch_stats: dict
    rng: jax.Array


def _make_state(seed: int) -> _TrainState:
    """A state after one Adam update, so the moments and count are not their initial values."""
    rng = np.random.default_rng(seed)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=3), jnp.float32)},
              "scale": jnp.asarray(rng.normal(), jnp.float32)}
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return _TrainState(step=jnp.int32(seed), params=optax.apply_updates(params, updates),
                       opt_state=opt_state, batch_stats={}, rng=jax.random.key(seed))


def _abstract(state):
    return jax.eval_shape(lambda: state)


def _assert_states_equal(restored, expected):
    assert type(restored) is type(expected)
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    assert type(restored.opt_state[0]) is optax.ScaleByAdamState
    assert type(restored.opt_state[1]) is optax.EmptyState
    assert restored.batch_stats == {}
    assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored.rng),
                                  jax.random.key_data(expected.rng))
    for got, want in zip(jax.tree.leaves(restored.replace(rng=None)),
                         jax.tree.leaves(expected.replace(rng=None))):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_round_trip_keeps_values_types_and_json(tmp_path):
    state = _make_state(seed=5)
    data_state = {"iterator": {"next_index": 40, "worker": [0, 1]}, "epoch": 2}
    meta = {"config": {"lr": 1e-3, "name": "synthetic", "stages": ["A", "B"]},
            "loss": 0.25, "finite": True, "note": None}
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.save(5, state, data_state, meta)
        ckpt.wait()
        restored, data_back, meta_back = ckpt.restore(_abstract(state))
    _assert_states_equal(restored, state)
    assert int(restored.opt_state[0].count) == 1
    assert data_back == data_state
    assert meta_back == meta


def test_async_save_keeps_values_when_the_state_is_donated_next(tmp_path):
    state = _make_state(seed=8)
    expected = _make_state(seed=8)
    bump = jax.jit(lambda s: s.replace(params=jax.tree.map(lambda p: p + 1.0, s.params)),
                   donate_argnums=0)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(8, state, {}, {})
        bumped = bump(state)
        ckpt.wait()
        restored, _, _ = ckpt.restore(_abstract(bumped))
    _assert_states_equal(restored, expected)
    np.testing.assert_allclose(bumped.params["scale"], expected.params["scale"] + 1.0)


def test_resume_from_a_fresh_checkpointer(tmp_path):
    state = _make_state(seed=3)
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(3, state, {"i": 3}, {})
    ckpt.close()
    reopened = Checkpointer(tmp_path, keep=3)
    assert reopened.latest_step() == 3
    restored, data_state, _ = reopened.restore(_abstract(_make_state(seed=0)))
    _assert_states_equal(restored, state)
    assert data_state == {"i": 3}
    reopened.close()


def test_keep_last_n_deletes_old_steps(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30, 40):
        assert ckpt.save(step, _make_state(seed=step), {"step": step}, {"step": step})
    ckpt.wait()
    assert ckpt.all_steps() == [30, 40]
    assert ckpt.latest_step() == 40
    assert sorted(os.listdir(tmp_path)) == ["30", "40"]
    restored, data_state, meta = ckpt.restore(_abstract(_make_state(seed=0)), step=30)
    _assert_states_equal(restored, _make_state(seed=30))
    assert data_state == {"step": 30} and meta == {"step": 30}
    with pytest.raises(FileNotFoundError, match=r"step 10 .*\[30, 40\]"):
        ckpt.restore(_abstract(_make_state(seed=0)), step=10)
    ckpt.close()


def test_existing_or_older_step_is_not_overwritten(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=3)
    assert ckpt.save(2, _make_state(seed=2), {}, {"v": 1})
    assert not ckpt.save(2, _make_state(seed=9), {}, {"v": 2})
    assert not ckpt.save(2, _make_state(seed=9), {}, {"v": 2}, force=True)
    assert not ckpt.save(1, _make_state(seed=1), {}, {"v": 3})
    ckpt.wait()
    restored, _, meta = ckpt.restore(_abstract(_make_state(seed=0)))
    _assert_states_equal(restored, _make_state(seed=2))
    assert meta == {"v": 1}
    assert ckpt.all_steps() == [2]
    ckpt.close()


def test_unfinished_step_directory_is_ignored(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(4, _make_state(seed=4), {}, {})
    ckpt.close()
    # What a process killed mid-write leaves: orbax's temporary directory, never renamed.
    (tmp_path / "8.orbax-checkpoint-tmp-1700000000" / "state").mkdir(parents=True)
    reopened = Checkpointer(tmp_path, keep=3)
    assert reopened.latest_step() == 4
    restored, _, _ = reopened.restore(_abstract(_make_state(seed=0)))
    _assert_states_equal(restored, _make_state(seed=4))
    reopened.close()


def test_missing_directory_has_no_step_and_restore_fails_clearly(tmp_path):
    directory = tmp_path / "never_written"
    ckpt = Checkpointer(directory)
    assert ckpt.latest_step() is None
    assert ckpt.all_steps() == []
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*never_written"):
        ckpt.restore(_abstract(_make_state(seed=0)))
    ckpt.close()


def test_restore_onto_mesh_gives_requested_shardings(tmp_path):
    mesh = sharding.make_mesh()
    state = _make_state(seed=6)
    features = jnp.arange(8 * 3, dtype=jnp.float32).reshape(8, 3)
    tree = {"state": state, "features": features}
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(6, tree, {}, {})
    ckpt.wait()

    abstract = _abstract(tree)
    abstract["features"] = jax.ShapeDtypeStruct((8, 3), jnp.float32,
                                                sharding=sharding.batch_sharding(mesh))
    restored, _, _ = ckpt.restore(abstract, sharding=sharding.replicated(mesh))
    _assert_states_equal(restored["state"], state)
    for leaf in jax.tree.leaves(restored["state"]):
        assert leaf.sharding == sharding.replicated(mesh)
    assert restored["features"].sharding == sharding.batch_sharding(mesh)
    shards = sorted(restored["features"].addressable_shards, key=lambda s: s.device.id)
    for i, shard in enumerate(shards):
        np.testing.assert_array_equal(np.asarray(shard.data), np.asarray(features[2 * i:2 * i + 2]))

    # Concrete arrays as the target: their shardings are used.
    on_mesh = sharding.replicate(state, mesh)
    with Checkpointer(tmp_path) as reader:
        restored_state, _, _ = reader.restore({"state": on_mesh, "features": restored["features"]})
    assert all(leaf.sharding == sharding.replicated(mesh)
               for leaf in jax.tree.leaves(restored_state["state"]))
    ckpt.close()


def test_save_rejects_non_json_metadata(tmp_path):
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(TypeError, match="meta must be JSON-serializable"):
        ckpt.save(1, _make_state(seed=1), {}, {"loss": np.float32(0.5)})
    with pytest.raises(TypeError, match="data_state must be JSON-serializable"):
        ckpt.save(1, _make_state(seed=1), {"state": b"bytes"}, {})
    assert ckpt.all_steps() == []
    ckpt.close()


def test_damaged_step_is_an_error_naming_it_and_the_step_before(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=3, async_save=False)
    for step in (1, 2):
        ckpt.save(step, _make_state(seed=step), {"position": step}, {})
    ckpt.close()
    for folder, _, names in os.walk(tmp_path / "2"):  # truncate every file of step 2
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    reopened = Checkpointer(tmp_path, keep=3)
    with pytest.raises(checkpoint.UnreadableCheckpointError,
                       match=r"checkpoint step 2 in .* cannot be read .*remove .*2 to go on "
                             r"from step 1"):
        reopened.restore(_abstract(_make_state(seed=0)))
    restored, data, _ = reopened.restore(_abstract(_make_state(seed=0)), step=1)
    _assert_states_equal(restored, _make_state(seed=1))
    assert data == {"position": 1}
    reopened.close()
