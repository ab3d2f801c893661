"""Command-line flags shared by the entry points: `--config` and `--workdir`.

`--config=NAME.py[:variant]` resolves a bare file name against `experiments/configs/` (a path
that exists is taken as it is); overrides such as `--config.train.batch_size=8` keep working,
and an unknown key or a value of the wrong type is an error at start-up that names the key (a
message and exit status 1, no traceback).
"""

import os
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of checkpoints, metrics and results.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file: a name in experiments/configs/ or a path, optionally with "
    "':variant', e.g. synthetic.py:no_physique.", lock_config=True)


def resolve_config_path(value: str) -> str:
    """Maps `name.py[:arg]` to `experiments/configs/name.py[:arg]` unless it is an existing path."""
    path, sep, arg = value.partition(":")
    if not os.path.exists(path):
        candidate = os.path.join(CONFIG_DIR, path)
        if os.path.exists(candidate):
            path = candidate
    return path + sep + arg


def parse_flags(argv: list[str]) -> list[str]:
    """absl `flags_parser` that resolves `--config` first; the config is loaded (and checked) here."""
    resolved, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config="):
            arg = "--config=" + resolve_config_path(arg[len("--config="):])
        elif arg == "--config" and i + 1 < len(argv):
            resolved.append(arg)
            i += 1
            arg = resolve_config_path(argv[i])
        resolved.append(arg)
        i += 1
    try:
        remaining = flags.FLAGS(resolved)
    except flags.Error as error:
        sys.exit(f"error: {error}")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # ml_collections raises these for `--config.a.b=...` with an unknown key or a bad value.
        overrides = [a for a in resolved if a.startswith("--config.")]
        name = str(error).strip("'\"")
        culprits = [a for a in overrides if name and name in a.partition("=")[0]] or overrides
        sys.exit(f"error: config override {' '.join(culprits)}: {error}")
    if _CONFIG.value is None:
        sys.exit("error: --config is required (e.g. --config=synthetic.py)")
    if not flags.FLAGS["verbosity"].present:  # orbax and tfds log every step at INFO
        logging.set_verbosity(logging.WARNING)
    return remaining


def config():
    return _CONFIG.value


def workdir(default: str) -> str:
    return _WORKDIR.value or default
