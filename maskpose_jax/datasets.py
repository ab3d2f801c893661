"""The configured datasets: their builders (built first when missing and allowed) and the
training pipeline, one source or a mixture (`config.data`, `config.data.mix`).
"""

import data_builders
import jax

from maskpose_jax import input_pipeline
from maskpose_jax import reporting


def is_test_split(config, split: str) -> bool:
    """Whether `split` is held out for testing: config.data.eval_split, or a split the builders
    name `test` or `test_*` (synthetic's test and test_unseen, h36m's and mpi_inf_3dhp's test).
    Such a split is read by experiments.evaluate alone, once per reported run."""
    return split == config.data.eval_split or split == "test" or split.startswith("test_")


def refuse_test_split(config, split: str, where: str) -> None:
    """Raises ValueError if `split` is a test split (`is_test_split`).

    Every path whose figures choose a recipe (in-training evaluation, the fitting harness, the
    error sources, the loss at the truth, the template-fit benchmark) reads through this, so
    that choices are made on val; `where` names the config key or flag that chose the split.
    """
    if is_test_split(config, split):
        raise ValueError(
            f"{where} is config.data.eval_split or another test split ({split!r}): choices made "
            "from its figures would be tuned on test; use a val split (the test split is read by "
            "experiments.evaluate alone, once per reported run)")


def make_train_dataset(config, source):
    """This process's training pipeline: no ground truth, except for the supervised oracle.

    With `config.data.mix` empty, `source` (the primary dataset's training split) alone, as
    `input_pipeline.make_dataset` reads it. Otherwise a mixture (`input_pipeline.make_mixture`):
    `source` with `config.data.weight` first, then every mix entry of weight > 0, each opened (and
    built when missing and allowed) here.
    """
    oracle = config.loss.supervision == "oracle"
    if not config.data.mix:
        # The fit cache (config.loss.fit_cache) is keyed by each example's position in the split.
        extra = (("joints_world",) if oracle else ()) + (
            (input_pipeline.INDEX_FIELD,) if config.loss.fit_cache else ())
        return input_pipeline.make_dataset(
            source, global_batch_size=config.train.batch_size, training=True, seed=config.seed,
            process_index=jax.process_index(), process_count=jax.process_count(),
            augment=config.data.augment, num_threads=config.data.num_threads,
            prefetch=config.data.prefetch, views=tuple(config.data.views), extra_fields=extra)
    if oracle:
        raise ValueError("config.loss.supervision='oracle' reads ground-truth joints, which mixed "
                         "sources (config.data.mix) may not have (in-the-wild video): use one source")
    sources = [input_pipeline.MixSource(source, float(config.data.weight),
                                        tuple(config.data.views),
                                        f"config.data ({config.data.name})")]
    for index in range(len(config.data.mix)):
        entry = _mix_entry(config, index)
        records = ()
        if entry["weight"] > 0:
            records = data_builders.data_source(get_builder(config, index), entry["train_split"])
        label = f"config.data.mix[{index}] ({entry['name']})"
        sources.append(input_pipeline.MixSource(records, entry["weight"], entry["views"], label))
    return input_pipeline.make_mixture(
        sources, global_batch_size=config.train.batch_size, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        augment=config.data.augment, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch, extra_fields=("joints_world",) if oracle else ())


_MIX_FIELDS = ("name", "weight", "data_dir", "options", "train_split", "views")


def _mix_entry(config, index: int) -> dict:
    """`config.data.mix[index]` as a dict, defaults filled in; a bad field is an error naming it."""
    key = f"config.data.mix[{index}]"
    fields = {"data_dir": "", "options": {}, "train_split": "train", "views": (),
              **dict(config.data.mix[index])}
    bad = sorted(set(fields) - set(_MIX_FIELDS)) + [
        f"{k} (missing)" for k in ("name", "weight") if k not in fields]
    if bad:
        raise ValueError(f"{key}: bad field(s) {', '.join(bad)}; fields: {', '.join(_MIX_FIELDS)}")
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
        entry = _mix_entry(config, mix_index)
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


def image_size_of(source) -> int:
    return int(input_pipeline.decode_example(source[0])["image"].shape[1])
