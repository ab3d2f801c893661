"""Tests for maskpose_jax.sharding on 4 forced CPU devices, plus a real two-process run.

The two-process test starts this file as a script twice (2 CPU devices each, connected through
`jax.distributed` on localhost), so the multi-host path of `shard_batch` and `replicate` runs.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from maskpose_jax import sharding

_LAUNCHER_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                  "SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                  "SLURM_LOCALID", "OMPI_MCA_orte_hnp_uri", "TPU_WORKER_HOSTNAMES",
                  "TPU_PROCESS_ADDRESSES")


def _linear_mse(params, batch):
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2)


def _linear_mse_reference(params, batch):
    """Loss and gradient of `_linear_mse` in NumPy float64, by hand."""
    w, b = np.float64(params["w"]), np.float64(params["b"])
    x, y = np.float64(batch["x"]), np.float64(batch["y"])
    resid = x @ w + b - y
    d_pred = 2.0 * resid / resid.size
    return np.mean(resid ** 2), {"w": x.T @ d_pred, "b": d_pred.sum(axis=0)}


def _problem(seed, batch_size):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(5, 3)).astype(np.float32),
              "b": rng.normal(size=3).astype(np.float32)}
    batch = {"x": rng.normal(size=(batch_size, 5)).astype(np.float32),
             "y": rng.normal(size=(batch_size, 3)).astype(np.float32)}
    return params, batch


def test_make_mesh_has_all_devices_on_data_axis():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.shape == {"data": 4}
    assert mesh.axis_types == (AxisType.Auto,)
    assert list(mesh.devices) == jax.devices()
    assert sharding.batch_sharding(mesh).spec == jax.sharding.PartitionSpec("data")
    assert sharding.replicated(mesh).is_fully_replicated


def test_shard_batch_puts_consecutive_examples_on_each_device():
    mesh = sharding.make_mesh()
    rng = np.random.default_rng(0)
    local = {
            "image": rng.integers(0, 256, size=(8, 2, 4, 4, 3), dtype=np.uint8),
            "mask": rng.uniform(size=(8, 2, 4, 4)).astype(np.float32),
            "frame": np.arange(8, dtype=np.int32),
            "subject": np.array(["S1"] * 8),
            "action": np.array([b"walk"] * 8, dtype=object),
    }
    batch = sharding.shard_batch(local, mesh)
    assert set(batch) == {"image", "mask", "frame"}
    for name, array in batch.items():
        assert array.shape == local[name].shape and array.dtype == local[name].dtype
        assert array.sharding == sharding.batch_sharding(mesh)
        np.testing.assert_array_equal(np.asarray(array), local[name])
        shards = sorted(array.addressable_shards, key=lambda s: s.device.id)
        assert len(shards) == 4
        for i, (shard, device) in enumerate(zip(shards, mesh.devices)):
            assert shard.device == device
            assert shard.data.shape[0] == 2
            np.testing.assert_array_equal(np.asarray(shard.data), local[name][2 * i:2 * i + 2])


def test_shard_batch_rejects_indivisible_batch():
    mesh = sharding.make_mesh()
    with pytest.raises(ValueError, match=r"local batch size 6 .* local device count 4"):
        sharding.shard_batch({"mask": np.zeros((6, 2, 4, 4), np.float32)}, mesh)


def test_shard_batch_rejects_mismatched_leading_axes():
    mesh = sharding.make_mesh()
    with pytest.raises(ValueError, match="leading"):
        sharding.shard_batch({"a": np.zeros((8, 2)), "b": np.zeros((4, 2))}, mesh)


def test_sharded_value_and_grad_equals_single_device():
    mesh = sharding.make_mesh()
    params, batch = _problem(seed=1, batch_size=8)
    value_and_grad = jax.value_and_grad(_linear_mse)

    device = jax.devices()[0]
    loss_1, grads_1 = jax.jit(value_and_grad)(jax.device_put(params, device),
                                              jax.device_put(batch, device))
    sharded_step = jax.jit(
            value_and_grad,
            in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)),
            out_shardings=sharding.replicated(mesh))
    loss_4, grads_4 = sharded_step(sharding.replicate(params, mesh),
                                   sharding.shard_batch(batch, mesh))

    loss_ref, grads_ref = _linear_mse_reference(params, batch)
    np.testing.assert_allclose(loss_4, loss_1, rtol=1e-6)
    np.testing.assert_allclose(loss_4, loss_ref, rtol=1e-5)
    for name in params:
        assert grads_4[name].sharding.is_fully_replicated
        assert len(grads_4[name].sharding.device_set) == 4
        np.testing.assert_allclose(grads_4[name], grads_1[name], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(grads_4[name], grads_ref[name], rtol=1e-5, atol=1e-6)


def test_replicate_puts_every_leaf_on_every_device():
    mesh = sharding.make_mesh()
    key = jax.random.key(7)
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "lr": 0.5,
            "count": np.int32(3), "rng": key, "x64": np.ones(2, np.float64)}
    out = sharding.replicate(tree, mesh)
    for leaf in jax.tree.leaves(out):
        assert leaf.sharding == sharding.replicated(mesh)
        assert len(leaf.addressable_shards) == 4
    np.testing.assert_array_equal(out["w"], tree["w"])
    assert out["lr"].dtype == jnp.float32 and float(out["lr"]) == 0.5
    assert out["count"].dtype == jnp.int32
    assert out["x64"].dtype == jnp.float32
    assert jax.dtypes.issubdtype(out["rng"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(out["rng"]), jax.random.key_data(key))
    np.testing.assert_array_equal(jax.random.normal(out["rng"], (3,)),
                                  jax.random.normal(key, (3,)))


def test_initialize_distributed_is_noop_for_one_process(monkeypatch):
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    assert sharding.initialize_distributed() is False
    assert sharding.initialize_distributed(num_processes=1) is False
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert sharding.initialize_distributed() is False
    assert not jax.distributed.is_initialized()


# --- Two real processes ----------------------------------------------------------------------

_PROCESSES = 2
_LOCAL_BATCH = 4


def _local_problem(process_id):
    """Each process's slice of a global problem that both processes can rebuild in full."""
    params, _ = _problem(seed=2, batch_size=1)
    _, batch = _problem(seed=10 + process_id, batch_size=_LOCAL_BATCH)
    return params, batch


def _worker(process_id, port):
    """One process of the two-process test: prints what it computed as one JSON line."""
    assert sharding.initialize_distributed(f"localhost:{port}", _PROCESSES, process_id)
    mesh = sharding.make_mesh()
    params, local_batch = _local_problem(process_id)
    local_batch["subject"] = np.array(["S9"] * _LOCAL_BATCH)
    batch = sharding.shard_batch(local_batch, mesh)
    step = jax.jit(
            jax.value_and_grad(_linear_mse),
            in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)),
            out_shardings=sharding.replicated(mesh))
    loss, grads = step(sharding.replicate(params, mesh), batch)
    shards = [{"process": shard.device.process_index, "start": shard.index[0].start,
               "data": np.asarray(shard.data).tolist()}
              for shard in batch["x"].addressable_shards]
    print(json.dumps({
            "process_count": jax.process_count(), "devices": mesh.size,
            "mesh_processes": [d.process_index for d in mesh.devices],
            "fields": sorted(batch), "global_shape": list(batch["x"].shape),
            "shards": shards, "loss": float(loss),
            "grads": {name: np.asarray(g).tolist() for name, g in grads.items()},
    }), flush=True)
    jax.distributed.shutdown()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_shard_and_average_like_one():
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, __file__, str(pid), str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in range(_PROCESSES)]
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    params, _ = _local_problem(0)
    local = [_local_problem(pid)[1] for pid in range(_PROCESSES)]
    global_batch = {k: np.concatenate([b[k] for b in local]) for k in ("x", "y")}
    loss_ref, grads_ref = _linear_mse_reference(params, global_batch)
    per_device = _LOCAL_BATCH // 2
    for pid, out in enumerate(outputs):
        assert out["process_count"] == 2 and out["devices"] == 4
        assert out["mesh_processes"] == [0, 0, 1, 1]
        assert out["fields"] == ["x", "y"]
        assert out["global_shape"] == [_PROCESSES * _LOCAL_BATCH, 5]
        assert len(out["shards"]) == 2
        for shard in out["shards"]:
            assert shard["process"] == pid
            start = shard["start"]
            assert pid * _LOCAL_BATCH <= start < (pid + 1) * _LOCAL_BATCH
            np.testing.assert_array_equal(np.float32(shard["data"]),
                                          global_batch["x"][start:start + per_device])
        np.testing.assert_allclose(out["loss"], loss_ref, rtol=1e-5)
        for name in params:
            np.testing.assert_allclose(out["grads"][name], grads_ref[name], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]))
