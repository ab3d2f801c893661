"""One process of the multi-process training test (`distributed_test.py`); a script, not a test.

    python tests/distributed_worker.py --process_id=I --num_processes=N \\
        [--coordinator=127.0.0.1:PORT] --local_devices=D --batches=batches.npz --out=out.npz

Trains the tiny config on a 1-D mesh over every device of every process, exactly as
`train.train_and_evaluate` does (`sharding.make_mesh`, `factory.init_state`,
`train_step.make_train_step`, `sharding.shard_batch`), one step per global batch of `--batches`
(K × B × ... arrays of the training fields). Process I feeds rows [I·B/N, (I+1)·B/N) of every global batch (a global batch is
the concatenation of the processes' batches in process order, as in `input_pipeline`). With N > 1 the processes are connected through
`sharding.initialize_distributed` (CPU collectives: gloo, JAX's default). The caller sets
XLA_FLAGS=--xla_force_host_platform_device_count=D in this process's environment; the script
checks that it sees D local devices.

Writes `--out` (np.savez): this process's copy of the parameters before and after training
("initial/<path>", "final/<path>", flattened with "/"), the per-step metrics ("metrics/<name>",
K values), and facts about the run ("process_count", "device_count", "mesh_processes",
"shard_starts" of this process's batch shards, "collectives").
"""

import argparse

import flax
import jax
import numpy as np

from experiments.configs import tiny
from maskpose_jax import cascade
from maskpose_jax import factory
from maskpose_jax import inference
from maskpose_jax import input_pipeline
from maskpose_jax import sharding
from maskpose_jax import train_step as train_step_lib


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process_id", type=int, required=True)
    parser.add_argument("--num_processes", type=int, required=True)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0 (N > 1)")
    parser.add_argument("--local_devices", type=int, required=True)
    parser.add_argument("--batches", required=True, help="npz of K x B x ... training fields")
    parser.add_argument("--out", required=True, help="npz written by this process")
    return parser.parse_args()


def _flat(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in flax.traverse_util.flatten_dict(params, sep="/").items()}


def main():
    args = _parse_args()
    if args.num_processes > 1 and not sharding.initialize_distributed(
            args.coordinator, args.num_processes, args.process_id):
        raise SystemExit("initialize_distributed did not connect the processes")
    if jax.process_count() != args.num_processes or jax.process_index() != args.process_id:
        raise SystemExit(f"process {jax.process_index()} of {jax.process_count()}, expected "
                         f"{args.process_id} of {args.num_processes}")
    if jax.local_device_count() != args.local_devices:
        raise SystemExit(f"{jax.local_device_count()} local devices, expected "
                         f"{args.local_devices}: set XLA_FLAGS before starting this script")

    with np.load(args.batches) as stored:
        batches = {name: stored[name] for name in input_pipeline.TRAIN_FIELDS}
    num_steps, global_batch = batches["mask"].shape[:2]
    image_size = batches["mask"].shape[-1]
    local_batch = global_batch // args.num_processes
    rows = slice(args.process_id * local_batch, (args.process_id + 1) * local_batch)

    config = tiny.get_config("paper")
    config.train.batch_size = global_batch
    mesh = sharding.make_mesh()
    detector, physique = factory.create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    state = factory.init_state(config, detector, physique, optimizer, image_size, mesh)
    train_step = train_step_lib.make_train_step(config, detector, physique, optimizer, image_size,
                                                mesh)
    initial = _flat(jax.device_get(inference.local_copy(state.params)))

    history, shard_starts = [], None
    for k in range(num_steps):
        batch = sharding.shard_batch({name: a[k, rows] for name, a in batches.items()}, mesh)
        if shard_starts is None:
            shard_starts = sorted(s.index[0].start or 0 for s in batch["mask"].addressable_shards)
        state, metrics = train_step(state, batch)
        history.append(metrics)
    history = jax.device_get(history)
    final = _flat(jax.device_get(inference.local_copy(state.params)))

    out = {f"initial/{k}": v for k, v in initial.items()}
    out.update({f"final/{k}": v for k, v in final.items()})
    out.update({f"metrics/{name}": np.array([float(h[name]) for h in history])
                for name in history[0]})
    out.update(process_count=jax.process_count(), device_count=mesh.size,
               mesh_processes=np.array([d.process_index for d in mesh.devices]),
               shard_starts=np.array(shard_starts),
               collectives=str(jax.config.jax_cpu_collectives_implementation))
    np.savez(args.out, **out)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
