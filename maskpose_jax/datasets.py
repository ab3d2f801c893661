"""The training data of a run, as the library sees it: opened records (`Sources`, opened from the
configured builders by `data_builders.configured`), the training pipeline over them (one source or
a mixture) and the rule that keeps test splits out of every choice of recipe.

The library reads records; it does not know the builders (`data_builders` imports the library,
never the other way).
"""

from typing import Any, Callable, NamedTuple, Sequence

import jax

from maskpose_jax import input_pipeline


class Sources(NamedTuple):
    """The opened splits of a training run (random-access records in the tfds format).

    train: config.data.train_split of the primary dataset.
    val: config.data.val_split (None when it is "": no in-training evaluation).
    mix: one `input_pipeline.MixSource` per entry of config.data.mix, the primary not included.
    physique_pairs: with config.physique.pretrain_steps > 0, a function that makes the
      skeleton -> silhouette pairs of `physique_prior.pretrain` (called by a fresh run only).
    """
    train: Sequence[Any]
    val: Sequence[Any] | None = None
    mix: tuple[input_pipeline.MixSource, ...] = ()
    physique_pairs: Callable[[], dict] | None = None


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


def make_train_dataset(config, sources: Sources):
    """This process's training pipeline: no ground truth, except for the supervised oracle.

    With `config.data.mix` empty, `sources.train` alone, as `input_pipeline.make_dataset` reads
    it. Otherwise a mixture (`input_pipeline.make_mixture`): `sources.train` with
    `config.data.weight` first, then `sources.mix` (entries of weight 0 are not read). The
    oracle does not mix (`factory.check_config`).
    """
    oracle = config.loss.supervision == "oracle"
    if not sources.mix:
        # The fit cache (config.loss.fit_cache) is keyed by each example's position in the split.
        extra = (("joints_world",) if oracle else ()) + (
            (input_pipeline.INDEX_FIELD,) if config.loss.fit_cache else ())
        return input_pipeline.make_dataset(
            sources.train, global_batch_size=config.train.batch_size, training=True,
            seed=config.seed, process_index=jax.process_index(),
            process_count=jax.process_count(), augment=config.data.augment,
            num_threads=config.data.num_threads, prefetch=config.data.prefetch,
            views=tuple(config.data.views), extra_fields=extra)
    primary = input_pipeline.MixSource(sources.train, float(config.data.weight),
                                       tuple(config.data.views),
                                       f"config.data ({config.data.name})")
    return input_pipeline.make_mixture(
        [primary, *sources.mix], global_batch_size=config.train.batch_size, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        augment=config.data.augment, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch)


def image_size_of(source) -> int:
    return int(input_pipeline.decode_example(source[0])["image"].shape[1])
