"""Builder options shared by the dataset builders: their values, the common checks, config names.

A builder's options are the fields its `Config` adds to `tfds.core.BuilderConfig`. A config is
named after the options that differ from the defaults (folders as a hash of their absolute
path), so that every set of options builds into its own folder and the defaults into "default".
"""

import dataclasses
import hashlib
import os
import re

import tensorflow_datasets as tfds

from data_builders import frames


def option_values(config) -> dict:
    """{option: value} of a builder config (the fields its class adds to BuilderConfig)."""
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in base}


def split_list(text: str) -> list[str]:
    """The items of a comma-separated option value, stripped, empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def check_release(config, what: str) -> None:
    """The checks of every real-data builder's common options (root_dir, image_size, on_bad_input).

    Args:
        config: a builder config with `root_dir`, `image_size` and `on_bad_input`.
        what: what root_dir must hold, for the message (e.g. "the extracted Human3.6M release").

    Raises:
        ValueError / FileNotFoundError naming the option.
    """
    if not config.root_dir:
        raise ValueError(f"option root_dir is required: {what}")
    if not os.path.isdir(config.root_dir):
        raise FileNotFoundError(f"option root_dir: no such folder {config.root_dir!r}")
    if config.image_size < 8:
        raise ValueError(f"option image_size must be >= 8, got {config.image_size}")
    if config.on_bad_input not in frames.ON_BAD_INPUT:
        raise ValueError(f"option on_bad_input must be one of {frames.ON_BAD_INPUT}, "
                         f"got {config.on_bad_input!r}")


def describe(config) -> None:
    """Sets the config's description to its option values (shown by tfds and --help-options)."""
    config.description = f"options: {option_values(config)}"


def named(config, defaults, paths=(), hashed=()):
    """Names `config` after its options that differ from `defaults`.

    Args:
        config: a checked builder config.
        defaults: the builder's default config (named "default", listed in BUILDER_CONFIGS).
        paths: file or folder options: they enter the name as a short hash of the absolute path.
        hashed: other options that enter the name as a short hash of their text (long lists).

    Returns:
        `defaults` itself when nothing differs (tfds needs that very object), else `config`
        with its name and description set.
    """
    changed = {k: v for k, v in option_values(config).items() if v != getattr(defaults, k)}
    if not changed:
        return defaults
    parts = []
    for key, value in sorted(changed.items()):
        if key in paths or key in hashed:
            text = os.path.abspath(value) if key in paths else str(value)
            value = hashlib.sha1(text.encode()).hexdigest()[:8]
        parts.append(f"{key}-{value if value != '' else 'none'}")
    name = "_".join(parts).replace(".", "p").replace(",", "-")
    config.name = re.sub(r"[^A-Za-z0-9_-]", "", name)
    describe(config)
    return config
