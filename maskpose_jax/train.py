"""The training loop: `train_and_evaluate(config, workdir, sources)` is the whole run.

On the opened splits (`datasets.Sources`; `experiments.train` checks the config and opens them
with `data_builders.configured`, which knows the builders) it creates the
parameters directly in their sharding on a 1-D `data` mesh over every device (batch sharded,
parameters replicated: XLA averages the gradients), resumes from the latest checkpoint of
`workdir` (parameters, optimizer, step and data order), and trains through the cascade's stages
with one compiled step (`train_step`), evaluating on the val split (`inference`). Metrics of step
k are fetched after step k+1 is dispatched, so the device never waits for the host. A non-finite
step leaves the state untouched; the loop then saves a checkpoint and stops, naming the stage,
step and loss terms. SIGTERM saves and exits.
"""

import os
import signal

import jax
import ml_collections
import numpy as np

from maskpose_jax import cascade
from maskpose_jax import checkpoint
from maskpose_jax import datasets
from maskpose_jax import evaluation
from maskpose_jax import factory
from maskpose_jax import fit_cache
from maskpose_jax import inference
from maskpose_jax import input_pipeline
from maskpose_jax import physique_prior
from maskpose_jax import reporting
from maskpose_jax import sharding
from maskpose_jax import train_step as train_step_lib
from maskpose_jax import visualization


class NonFiniteLossError(RuntimeError):
    """A train step produced a non-finite loss or gradient."""


def _mean_metrics(history: list[dict]) -> dict:
    keys = [k for k in history[0] if k != "finite"]
    return {k: float(np.mean([h[k] for h in history])) for k in keys}


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       sources: datasets.Sources) -> dict:
    """Trains per `config` in `workdir` (resuming if it holds checkpoints) on `sources`.

    Args:
        config: a config that passed `factory.check_config`.
        workdir: where checkpoints, logs and results go.
        sources: the opened splits (`data_builders.configured.open_training(config)`); training
            reads `sources.train` and `sources.mix`, in-training evaluation `sources.val` (the
            val split; None trains blind).

    Returns:
        The held-out metrics of the last in-training evaluation (empty if none ran).
    """
    optimizer = cascade.make_optimizer(config.stages, config.train)
    os.makedirs(workdir, exist_ok=True)
    train_source, eval_source = sources.train, sources.val
    if eval_source is None:
        reporting.say("config.data.val_split is empty: no in-training evaluation (the test split "
                      "is read by experiments.evaluate alone)")
    image_size = datasets.image_size_of(train_source)
    train_dataset = datasets.make_train_dataset(config, sources)

    mesh = sharding.make_mesh()
    detector, physique = factory.create_models(config)
    cache_size = fit_cache.size(config, train_source)
    state = factory.init_state(config, detector, physique, optimizer, image_size, mesh,
                               cache_size)
    train_step = train_step_lib.make_train_step(config, detector, physique, optimizer,
                                                image_size, mesh)
    predict = inference.make_predict(detector)
    visualize = inference.make_visualize(config, detector, physique, image_size)

    iterator = iter(train_dataset)

    checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                           keep=config.train.keep_checkpoints)
    resumed = checkpointer.latest_step() is not None
    if resumed:
        state, data_state, _ = checkpointer.restore(state)
        # Every process reads as many batches as the others, so process 0's iterator state
        # (a position in this process's own slice) fits every process.
        iterator.set_state(data_state)
        reporting.say(f"resumed from step {int(jax.device_get(state.step))} of {workdir}")

    total = cascade.total_steps(config.stages)
    reporter = reporting.Reporter(workdir, total, is_primary=jax.process_index() == 0)
    # What a reader needs before it restores: the crop size, and the fit cache's length (so that
    # a checkpoint restores without its dataset, `factory.restore_latest`).
    meta = {"config": config.to_json_best_effort(), "image_size": image_size,
            "fit_cache_size": cache_size}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    def save(force=False):
        checkpointer.save(int(jax.device_get(state.step)), state, iterator.get_state(), meta,
                          force=force)

    pretrain, fit_first = int(config.physique.pretrain_steps), int(config.loss.fit_init_steps)
    if pretrain and not resumed:
        # A fresh run: the physique network pre-trained on random poses of the procedural body.
        if sources.physique_pairs is None:
            raise ValueError("config.physique.pretrain_steps > 0: sources.physique_pairs is "
                             "needed (data_builders.configured.open_training makes it)")
        params, _ = physique_prior.pretrain(config, physique, sources.physique_pairs(),
                                            echo=reporting.say)
        state = state.replace(params={
            **state.params, "physique": jax.device_put(params, sharding.replicated(mesh))})
    if fit_first and not resumed:
        # A fresh run: the cache starts with template fits.
        cache = fit_cache.initial_fits(config, train_source, image_size,
                                       factory.physique_capsule_width(config),
                                       factory.physique_body_radii(config))
        state = state.replace(fit_cache=jax.device_put(cache, sharding.replicated(mesh)))
    if (pretrain or fit_first) and not resumed:
        save(force=True)  # at step 0: a resumed run keeps them

    def check(step, metrics):
        metrics = jax.device_get(metrics)
        if not metrics["finite"]:
            save(force=True)
            checkpointer.wait()
            bad = {k: float(v) for k, v in metrics.items() if k != "finite"}
            raise NonFiniteLossError(
                f"non-finite loss at step {step} (stage "
                f"{cascade.stage_name(step, config.stages)}): {bad}; the update was skipped and "
                f"the state saved at step {int(jax.device_get(state.step))} in {workdir}")
        return metrics

    history, results, pending = [], {}, None
    step = int(jax.device_get(state.step))
    with _Preemption() as preemption:
        while step < total:
            local_batch = next(iterator)
            state, metrics = train_step(state, sharding.shard_batch(local_batch, mesh))
            if pending is not None:
                history.append(check(*pending))
            pending = (step, metrics)
            step += 1
            is_log = step % config.train.log_every == 0 or step == total
            if is_log or step % config.train.checkpoint_every == 0 or preemption.requested:
                history.append(check(*pending))
                pending = None
            if is_log:
                reporter.scalars(step, cascade.stage_name(step - 1, config.stages),
                                 _mean_metrics(history))
                history = []
            if config.train.image_every and (step % config.train.image_every == 0 or step == 1):
                local = inference.local_copy(state)
                keypoints_VxJx3, skel_VxNxN, phys_VxNxN = visualize(
                    local.params, local.batch_stats,
                    input_pipeline.without_ground_truth(local_batch), local.step)
                panel = visualization.training_panel(
                    local_batch["image"][0], np.asarray(keypoints_VxJx3), np.asarray(skel_VxNxN),
                    np.asarray(phys_VxNxN), local_batch["mask"][0])
                reporter.images(step, {"train/prediction": panel})
            if eval_source is not None and (
                    (config.train.eval_every and step % config.train.eval_every == 0)
                    or step == total):
                local = inference.local_copy(state)
                results = inference.evaluate(config, predict, local.params, local.batch_stats,
                                             eval_source, image_size, config.train.eval_examples)
                scalars = {f"eval_{k}": v for k, v in results.items() if isinstance(v, float)}
                scalars.update({f"eval_baseline_{k}": v
                                for k, v in results[evaluation.BASELINE_KEY].items()})
                reporter.scalars(step, "eval", scalars)
            if step % config.train.checkpoint_every == 0 or step == total:
                save(force=step == total)
            if preemption.requested:
                save(force=True)
                reporting.say(f"SIGTERM: saved step {step} and stopped")
                break
    if pending is not None:
        check(*pending)
    checkpointer.wait()
    checkpointer.close()
    reporter.close()
    return results
