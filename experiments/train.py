"""Trains (and evaluates on held-out data during training).

    python -m experiments.train --config=synthetic.py [--workdir=runs/synthetic] \\
        [--config.train.batch_size=16] [--coordinator_address=HOST:PORT --num_processes=N \\
        --process_id=I]

Several processes (GPU clusters, TPU pods): start the same command on every host; with
`--coordinator_address` (or a cluster environment JAX detects) `jax.distributed.initialize()`
connects them, and each process feeds its own slice of every global batch.
"""

import sys

from absl import app
from absl import flags

from experiments import flags as experiment_flags

_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
    del argv
    # Imported here so that `--help` and flag errors do not wait for JAX.
    from data_builders import configured  # pylint: disable=import-outside-toplevel
    from maskpose_jax import checkpoint  # pylint: disable=import-outside-toplevel
    from maskpose_jax import sharding  # pylint: disable=import-outside-toplevel
    from maskpose_jax import train  # pylint: disable=import-outside-toplevel

    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    config = experiment_flags.config()
    workdir = experiment_flags.workdir(f"runs/{config.data.name}")
    print(f"training {config.data.name} (variant {config.variant}) in {workdir}", flush=True)
    try:
        # Every setting, then every split the run reads (opened or built): a bad setting, a bad
        # config.data.mix entry, a split the dataset lacks or a dataset that is not built (the
        # message gives the command) is its message, no traceback.
        sources = configured.open_training(config)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    try:
        train.train_and_evaluate(config, workdir, sources)
    except checkpoint.UnreadableCheckpointError as error:  # names the step to go back to
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
