"""Test set-up: 4 forced CPU devices (set before anything imports jax), so the sharded path runs;
tfds's default data directory moved to a temporary folder (set before anything imports tfds),
so that a test that builds into the default never writes into the user's ~/tensorflow_datasets."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

_TFDS_DIR = tempfile.mkdtemp(prefix="maskpose_tests_tfds_")
atexit.register(shutil.rmtree, _TFDS_DIR, ignore_errors=True)
os.environ["TFDS_DATA_DIR"] = _TFDS_DIR
