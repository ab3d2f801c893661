"""tensorflow-datasets builders for maskpose_jax (array_record files, read without TensorFlow).

`make_builder(name, data_dir, **options)` is the one way in: it imports the builder, checks the
options against the builder's config fields (an unknown option or a bad value is an error that
names it) and returns the tfds builder, whose `download_and_prepare()` builds the dataset and
whose `as_data_source(split)` reads it.
"""

import dataclasses
import importlib

from data_builders import serialization

# Byte-identical records for the same options, in any process: set before any builder module
# (each imports this package first) writes a record.
serialization.sort_map_entries()

# Dataset name -> module holding `Builder` and `make_config(**options)` (the `tfds new` shape).
BUILDERS = {
    "synthetic": "data_builders.synthetic.synthetic_dataset_builder",
    "h36m": "data_builders.h36m.h36m_dataset_builder",
    "mpi_inf_3dhp": "data_builders.mpi_inf_3dhp.mpi_inf_3dhp_dataset_builder",
    "in_the_wild": "data_builders.in_the_wild.in_the_wild_dataset_builder",
}


def builder_module(name: str):
    """Imports the module of dataset `name`; an unknown name is a ValueError listing the known."""
    if name not in BUILDERS:
        raise ValueError(f"no builder for dataset {name!r} in data_builders/; "
                         f"builders: {', '.join(sorted(BUILDERS))}")
    return importlib.import_module(BUILDERS[name])


def option_types(name: str) -> dict[str, type]:
    """The builder options of dataset `name` and their types (fields of its config dataclass)."""
    config_cls = builder_module(name).Config
    base = {f.name for f in dataclasses.fields(config_cls.__mro__[1])}
    return {f.name: f.type for f in dataclasses.fields(config_cls) if f.name not in base}


def parse_option(name: str, key: str, value: str):
    """Casts the command-line string `value` of option `key` of dataset `name` to its type."""
    types = option_types(name)
    if key not in types:
        raise ValueError(
            f"unknown option {key!r} for dataset {name!r}; options: {', '.join(sorted(types))}")
    kind = types[key]
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return kind(value)
    except ValueError:
        raise ValueError(
            f"option {key!r} of dataset {name!r} expects {kind.__name__}, got {value!r}") from None


def make_builder(name: str, data_dir: str | None = None, **options):
    """Returns the tfds builder of dataset `name` configured with `options` (array_record files).

    Args:
        name: a key of `BUILDERS`.
        data_dir: tfds data directory (default: tfds's own, `~/tensorflow_datasets`).
        **options: builder options (see each builder's README); unknown names are errors.
    """
    module = builder_module(name)
    types = option_types(name)
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
            f"options: {', '.join(sorted(types))}")
    config = module.make_config(**options)
    return module.Builder(config=config, data_dir=data_dir, file_format="array_record")


def parse_cli_options(name: str, args: list[str]) -> dict:
    """Reads `--key=value` / `--key value` builder options of dataset `name` from `args`."""
    options = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ValueError(f"option --{key} needs a value")
            i += 1
            value = args[i]
        options[key] = parse_option(name, key, value)
        i += 1
    return options


def build_command(builder) -> str:
    """The `data_builders.build` command line that builds `builder`'s dataset and config."""
    parts = ["python -m data_builders.build", builder.name, f"--data_dir={builder.data_dir_root}"]
    for field in dataclasses.fields(builder_module(builder.name).Config):
        if field.name in option_types(builder.name):
            value = getattr(builder.builder_config, field.name)
            if value != field.default:
                parts.append(f"--{field.name}={value}")
    return " ".join(parts)


def data_source(builder, split: str):
    """Random-access records of a built split; a clear error if the dataset or split is missing."""
    config = builder.builder_config.name
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"dataset {builder.name}/{config} is not built in {builder.data_dir}; build it with "
            f"`{build_command(builder)}`")
    if split not in builder.info.splits:
        raise ValueError(f"dataset {builder.name}/{config} has no split {split!r}; "
                         f"splits: {', '.join(sorted(builder.info.splits))}")
    return builder.as_data_source(split=split)
