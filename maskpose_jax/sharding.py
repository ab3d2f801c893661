"""Data parallelism over every device of every process (DESIGN §10).

One 1-D `Mesh` with a single axis named "data": the global batch is sharded on its leading axis,
parameters and optimizer state are replicated, and `jax.jit` with these shardings averages the
gradients across devices by itself (the loss is a mean over the global batch).

Multi-process runs (GPU clusters, TPU pods) call `initialize_distributed()` first, before anything
touches a device; each process then feeds its own slice of the batch to `shard_batch`. The mesh
orders devices by process, so the global batch is the concatenation of the local batches in
process order (what `input_pipeline` assumes).
"""

import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Array kinds that go to devices: bool, signed/unsigned int, float, complex. Strings (U, S) and
# objects stay on the host.
_NUMERIC_KINDS = "biufc"


def _launcher_process_count() -> int:
    """Processes announced by a launcher that `jax.distributed.initialize` detects by itself."""
    env = os.environ
    slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                  "SLURM_LOCALID")
    if all(name in env for name in slurm_vars):
        return int(env["SLURM_NTASKS"])
    if "OMPI_MCA_orte_hnp_uri" in env:
        return int(env.get("OMPI_COMM_WORLD_SIZE", "1"))
    tpu_hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
    if tpu_hosts:
        return len(tpu_hosts.split(","))
    return 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def initialize_distributed(
        coordinator_address: str | None = None,
        num_processes: int | None = None,
        process_id: int | None = None,
        local_device_ids: int | Sequence[int] | None = None,
) -> bool:
    """Connects the processes of a multi-process run; a no-op for a single process.

    Each argument left as None falls back to an environment variable: `JAX_COORDINATOR_ADDRESS`
    ("host:port" of process 0), `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (read here; JAX itself reads
    only the first) and `JAX_LOCAL_DEVICE_IDS` (read by JAX). `jax.distributed.initialize` is
    called when the run has several processes: `num_processes` > 1; or, with the count unknown, a
    coordinator address given, or a launcher that JAX detects and fills in the rest from (a Slurm
    step with `SLURM_NTASKS` > 1, Open MPI `mpirun` with more than one rank, a GKE TPU slice
    listing several hosts in `TPU_WORKER_HOSTNAMES` / `TPU_PROCESS_ADDRESSES`). Launchers that JAX
    finds only through a metadata server (Cloud TPU VM pods) need the variables above or the
    arguments. Must run before any other JAX call touches a device.

    Args:
        coordinator_address: "host:port" of process 0's coordinator service.
        num_processes: total number of processes.
        process_id: this process's index in [0, num_processes).
        local_device_ids: devices this process drives (default: all it sees).

    Returns:
        True when the run is multi-process (initialized now or before), False for a single process.
    """
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if num_processes is not None:
        several = num_processes > 1
    else:
        several = coordinator_address is not None or _launcher_process_count() > 1
    if not several:
        return False
    jax.distributed.initialize(
            coordinator_address=coordinator_address, num_processes=num_processes,
            process_id=process_id, local_device_ids=local_device_ids)
    return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all devices of all processes, axis "data", devices in process order.

    The axis type is `Auto`, so `jit` propagates shardings itself and gradients of replicated
    parameters need no explicit sharding annotations.

    Args:
        devices: the devices to use (default: every device of every process).

    Returns:
        Mesh of shape (len(devices),) with axis name "data".
    """
    devices = sorted(devices or jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of parameters and optimizer state: a full copy on every device."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of batch arrays: leading (example) axis split over "data", the rest whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(local_batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this process's slice of the batch into global arrays sharded on "data".

    Args:
        local_batch: name -> array with leading axis B_local = global batch / process count (the
            examples this process loaded). Non-numeric leaves (strings, objects) are dropped.
        mesh: the mesh from `make_mesh`.

    Returns:
        name -> jax.Array of leading axis B_local × process count, sharded with `batch_sharding`:
        each of this process's devices holds B_local / local device count consecutive examples.

    Raises:
        ValueError: if B_local is not divisible by the number of this process's devices in the
            mesh, or if the leaves disagree on B_local.
    """
    sharding = batch_sharding(mesh)
    local_devices = len(mesh.local_devices)
    processes = mesh.size // local_devices
    arrays = {name: np.asarray(value) for name, value in local_batch.items()}
    arrays = {name: a for name, a in arrays.items() if a.dtype.kind in _NUMERIC_KINDS}
    sizes = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1 or None in sizes.values():
        raise ValueError(f"batch leaves need one common leading (example) axis; got {sizes}")
    out = {}
    for name, a in arrays.items():
        if a.shape[0] % local_devices:
            raise ValueError(
                    f"local batch size {a.shape[0]} is not divisible by the local device count "
                    f"{local_devices} (field {name!r})")
        global_shape = (a.shape[0] * processes,) + a.shape[1:]
        out[name] = jax.make_array_from_process_local_data(sharding, a, global_shape)
    return out


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts a pytree created on the host (parameters, optimizer state, keys) on every device.

    Works in multi-process runs, where `jax.device_put` refuses committed arrays: each leaf is
    read on the host and every process fills its own devices. All processes must pass the same
    values (e.g. built from the same seed); this is not checked.

    Args:
        tree: pytree of NumPy arrays, Python scalars or process-local jax.Arrays (typed PRNG keys
            included).
        mesh: the mesh from `make_mesh`.

    Returns:
        The same pytree of jax.Arrays with sharding `replicated(mesh)`; dtypes as JAX would give
        them (float64 becomes float32 unless x64 is enabled).
    """
    sharding = replicated(mesh)

    def put(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)
