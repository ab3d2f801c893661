"""The datasets a training config names (`config.data`, `config.data.mix`), opened as records
for the library (`maskpose_jax.datasets.Sources`), each built first when it is missing and
building is allowed (`config.data.build_if_missing`, one process).

This is the one place where a run's config meets the builders: the library reads records and
does not import `data_builders`.
"""

import functools

import jax

import data_builders
from data_builders.synthetic import random_poses
from maskpose_jax import datasets
from maskpose_jax import factory
from maskpose_jax import input_pipeline
from maskpose_jax import reporting

MIX_FIELDS = ("name", "weight", "data_dir", "options", "train_split", "views")


def mix_entry(config, index: int) -> dict:
    """`config.data.mix[index]` as a dict (`data_dir` "" = config.data.data_dir); a bad or
    missing field is an error naming it. Entries are written by `experiments/configs/base.py`'s
    `mix_source`, which holds the defaults and writes every field."""
    key = f"config.data.mix[{index}]"
    fields = dict(config.data.mix[index])
    bad = sorted(set(fields) - set(MIX_FIELDS)) + [
        f"{k} (missing)" for k in MIX_FIELDS if k not in fields]
    if bad:
        raise ValueError(f"{key}: bad field(s) {', '.join(bad)}; fields: {', '.join(MIX_FIELDS)} "
                         "(experiments/configs/base.py's mix_source writes them all)")
    if fields["name"] not in data_builders.BUILDERS:
        raise ValueError(f"{key}.name: no builder for dataset {fields['name']!r} in "
                         f"data_builders/; builders: {', '.join(sorted(data_builders.BUILDERS))}")
    if not float(fields["weight"]) >= 0:
        raise ValueError(f"{key}.weight must be >= 0, got {fields['weight']}")
    return {**fields, "weight": float(fields["weight"]), "options": dict(fields["options"]),
            "data_dir": fields["data_dir"] or config.data.data_dir, "views": tuple(fields["views"])}


def get_builder(config, mix_index: int | None = None):
    """The builder of the configured dataset, or of `config.data.mix[mix_index]`, built first
    when missing and allowed (`config.data.build_if_missing`, one process)."""
    if mix_index is None:
        name, data_dir, split = config.data.name, config.data.data_dir, config.data.train_split
        builder = data_builders.make_builder(name, data_dir or None, **dict(config.data.options))
    else:
        entry = mix_entry(config, mix_index)
        name, data_dir, split = entry["name"], entry["data_dir"], entry["train_split"]
        try:
            builder = data_builders.make_builder(name, data_dir or None, **entry["options"])
        except ValueError as error:
            raise ValueError(f"config.data.mix[{mix_index}].options: {error}") from None
    if not builder.is_prepared():
        if not config.data.build_if_missing or jax.process_count() > 1:
            data_builders.data_source(builder, split)  # raises, says how
        reporting.say(f"building dataset {name} into {builder.data_dir}")
        builder.download_and_prepare()
    return builder


def open_split(config, split: str):
    """The records of `split` of the configured (primary) dataset, built first if allowed."""
    return data_builders.data_source(get_builder(config), split)


def open_training(config) -> datasets.Sources:
    """Every split a training run reads, opened (and built when missing and allowed) before
    anything compiles: the primary's train and val splits and each mix entry's train split
    (entries of weight 0 are checked, not opened).

    Every setting of the run is checked first (`factory.check_config`, a ConfigError naming the
    key), so that a bad one is reported before anything is opened or built.
    """
    factory.check_config(config)
    builder = get_builder(config)
    train = data_builders.data_source(builder, config.data.train_split)
    # In-training evaluation reads the val split only; the test split is experiments.evaluate's,
    # read once per reported run. A dataset without a val split (val_split "") trains blind.
    val = None
    if config.data.val_split:
        val = data_builders.data_source(builder, config.data.val_split)
    mix = []
    for index in range(len(config.data.mix)):
        entry = mix_entry(config, index)
        records = ()
        if entry["weight"] > 0:
            records = data_builders.data_source(get_builder(config, index), entry["train_split"])
        label = f"config.data.mix[{index}] ({entry['name']})"
        mix.append(input_pipeline.MixSource(records, entry["weight"], entry["views"], label))
    pairs = None
    if int(config.physique.pretrain_steps):
        pairs = functools.partial(physique_pairs, config, datasets.image_size_of(train))
    return datasets.Sources(train=train, val=val, mix=tuple(mix), physique_pairs=pairs)


def physique_pairs(config, image_size: int, echo=reporting.say) -> dict:
    """The skeleton -> silhouette pairs that pre-train the physique network: the silhouettes of
    config.physique.pretrain_examples random poses of the synthetic generator's procedural body
    in 4 views of `image_size` pixels (`random_poses.silhouettes`, seeded by config.seed)."""
    count = int(config.physique.pretrain_examples)
    return random_poses.silhouettes(
        int(config.seed), count, image_size=image_size,
        progress=lambda n: echo(f"physique prior: {n}/{count} random poses rendered"))
