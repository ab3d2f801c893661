"""Training: the train state, one jitted `train_step(state, batch)`, evaluation, and the loop.

`train_and_evaluate(config, workdir)` is the whole run: it opens the datasets (`datasets`), creates
the parameters directly in their sharding on a 1-D `data` mesh over every device (batch sharded,
parameters replicated: XLA averages the gradients), resumes from the latest checkpoint of
`workdir` (parameters, optimizer, step and data order), and trains through the cascade's stages
with one compiled step. Metrics of step k are fetched after step k+1 is dispatched, so the
device never waits for the host. A non-finite step leaves the state untouched; the loop then
saves a checkpoint and stops, naming the stage, step and loss terms. SIGTERM saves and exits.
"""

import os
import signal
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import data_builders
from maskpose_jax import cascade
from maskpose_jax import checkpoint
from maskpose_jax import datasets
from maskpose_jax import evaluation
from maskpose_jax import fit_cache
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import losses
from maskpose_jax import models
from maskpose_jax import render
from maskpose_jax import reporting
from maskpose_jax import sharding
from maskpose_jax import skeleton
from maskpose_jax import visualization


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array        # int32, the number of train steps taken
    params: Any            # {"detector": ..., "physique": ...}
    batch_stats: Any       # the detector's BatchNorm statistics ({} with GroupNorm)
    opt_state: Any
    # The network-in-the-loop fit's cache (config.loss.fit_cache): {"joints": NxJx3 world joints
    # (mm), "filled": N} over the N examples of the training split; {} without one.
    fit_cache: Any = flax.struct.field(default_factory=dict)


class NonFiniteLossError(RuntimeError):
    """A train step produced a non-finite loss or gradient."""


def _template(config):
    """The detector's spatial prior: None or skeleton.STANDING_TEMPLATE (config.model.template)."""
    name = config.model.template
    if name not in ("none", "standing"):
        raise ValueError(f"config.model.template must be 'none' or 'standing', got {name!r}")
    return skeleton.STANDING_TEMPLATE if name == "standing" else None


def create_models(config: ml_collections.ConfigDict) -> tuple[models.Detector, models.PhysiqueNet]:
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(config.model.dtype)
    if dtype is None:
        raise ValueError(f"config.model.dtype must be float32 or bfloat16, got {config.model.dtype}")
    detector = models.Detector(
        num_joints=skeleton.NUM_JOINTS, depth_bins=config.model.depth_bins,
        resnet_depth=config.model.resnet_depth, width=config.model.width, norm=config.model.norm,
        stem=config.model.stem, head_channels=config.model.head_channels,
        num_deconv=config.model.num_deconv, template=_template(config),
        template_sigma=float(config.model.template_sigma), dtype=dtype)
    physique = models.PhysiqueNet(widths=tuple(config.physique.widths), dtype=dtype)
    return detector, physique


def init_state(config, detector, physique, optimizer, image_size: int, mesh,
               cache_size: int = 0) -> TrainState:
    """Creates the state directly on `mesh`, replicated (no host copy of the parameters), with a
    fit cache of `cache_size` empty entries (`fit_cache.size`; 0 = none)."""

    def init(key):
        det_key, phys_key = jax.random.split(key)
        images = jnp.zeros((1, image_size, image_size, 3), jnp.uint8)
        det_vars = detector.init(det_key, images, train=False)
        phys_vars = physique.init(phys_key, jnp.zeros((1, image_size, image_size), jnp.float32))
        params = {"detector": det_vars["params"], "physique": phys_vars["params"]}
        fit_cache = {}
        if cache_size:
            fit_cache = {"joints": jnp.zeros((cache_size, skeleton.NUM_JOINTS, 3), jnp.float32),
                         "filled": jnp.zeros((cache_size,), jnp.float32)}
        return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                          batch_stats=det_vars.get("batch_stats", {}),
                          opt_state=optimizer.init(params), fit_cache=fit_cache)

    # rbg keys: the same parameters for a seed, and a far faster initialisation on CPU.
    key = jax.random.key(config.seed, impl="rbg")
    abstract = jax.eval_shape(init, key)
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
    return jax.jit(init, out_shardings=shardings)(key)


def _detector_variables(state_or_params, batch_stats):
    variables = {"params": state_or_params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def physique_body_radii(config) -> tuple[float, ...] | None:
    """The generic body's bone radii (mm) when config.physique.kind is "body", else None."""
    if config.physique.kind != "body":
        return None
    if not config.loss.fusion:
        raise ValueError("config.physique.kind = 'body' needs config.loss.fusion = True")
    return tuple(float(config.physique.body_scale) * r for r in skeleton.BODY_RADII_MM)


def physique_capsule_width(config) -> float | None:
    """config.physique.capsule_width when config.physique.kind is "capsules", else None."""
    kind = config.physique.kind
    if kind not in ("network", "capsules", "body"):
        raise ValueError(
            f"config.physique.kind must be 'network', 'capsules' or 'body', got {kind!r}")
    if kind != "capsules":
        return None
    width = float(config.physique.capsule_width)
    if not width > 0:
        raise ValueError(f"config.physique.capsule_width must be > 0, got {width}")
    return width


def make_train_step(config, detector, physique, optimizer, image_size: int, mesh) -> Callable:
    """The jitted `train_step(state, batch) -> (state, metrics)`; the state argument is donated."""
    stages = list(config.stages)
    depth_range = float(config.model.depth_range_mm)
    oracle = config.loss.supervision == "oracle"
    if config.loss.supervision not in ("masks", "oracle"):
        raise ValueError(f"config.loss.supervision must be 'masks' or 'oracle', "
                         f"got {config.loss.supervision!r}")
    batch_norm = config.model.norm == "batch"
    loss_config = config.loss
    capsule_width = physique_capsule_width(config)
    fusion = bool(config.loss.fusion)
    if int(config.loss.refine_steps) and not fusion:
        raise ValueError("config.loss.refine_steps > 0 refines the fused pose: it needs "
                         "config.loss.fusion = True")
    body_radii = physique_body_radii(config)

    def loss_fn(params, state, batch, cache):
        b, v = batch["image"].shape[:2]
        images = batch["image"].reshape(b * v, *batch["image"].shape[2:])
        # Named scopes label the profile's ops (benchmarks/train_step.py splits time by them).
        with jax.named_scope("detector"):
            out, new_vars = detector.apply(
                _detector_variables(params["detector"], state.batch_stats), images, train=True,
                mutable=["batch_stats"] if batch_norm else [])
        keypoints = out["keypoints"].reshape(b, v, skeleton.NUM_JOINTS, 3)
        weights = cascade.loss_weights(state.step, stages)
        if oracle:
            terms = losses.oracle_terms(keypoints, batch, image_size, depth_range)
        else:
            def physique_apply(masks):
                with jax.named_scope("shape_prior"):
                    return physique.apply({"params": params["physique"]}, masks)
            if fusion:
                terms = fused.fused_terms(keypoints, batch, physique_apply, loss_config,
                                          image_size, depth_range, capsule_width=capsule_width,
                                          body_radii_mm=body_radii,
                                          body_scale=cascade.body_scale(state.step, stages),
                                          refine_weights=weights, cache=cache)
            else:
                terms = losses.mask_terms(keypoints, batch, physique_apply, loss_config,
                                          image_size, depth_range, capsule_width=capsule_width)
        total = sum(weights[t] * terms[t] for t in cascade.LOSS_TERMS if t in terms)
        return total, (terms, new_vars.get("batch_stats", state.batch_stats))

    def train_step(state, batch):
        # Only the fields a training batch may carry reach the losses (no ground truth, except
        # for the supervised oracle reference, which asks for it by name).
        fields = input_pipeline.TRAIN_FIELDS + (("joints_world",) if oracle else ())
        cache = None
        if state.fit_cache:  # the entries of this batch's examples (no gradient)
            fields += (input_pipeline.INDEX_FIELD,)
            index = batch[input_pipeline.INDEX_FIELD]
            cache = {k: v[index] for k, v in state.fit_cache.items()}
        batch = {k: batch[k] for k in fields + ("view_valid",) if k in batch}
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (total, (terms, batch_stats)), grads = grad_fn(state.params, state, batch, cache)
        fit_cache = state.fit_cache
        if cache is not None:
            fit_cache = {"joints": fit_cache["joints"].at[index].set(
                             terms.pop("cache_joints_BxJx3")),
                         "filled": fit_cache["filled"].at[index].set(1.0)}
        with jax.named_scope("optimizer"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            new_params = optax.apply_updates(state.params, updates)
        if batch_norm:  # a frozen detector keeps its statistics too
            active = cascade.module_active(state.step, stages, "detector")
            batch_stats = jax.tree.map(lambda n, o: jnp.where(active, n, o), batch_stats,
                                       state.batch_stats)
        new_state = TrainState(step=state.step + 1, params=new_params,
                               batch_stats=batch_stats, opt_state=opt_state, fit_cache=fit_cache)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        # A non-finite step changes nothing: the loop stops on it and saves this state.
        new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state, state)
        metrics = {"loss": total, "grad_norm": grad_norm, "finite": finite,
                   "learning_rate": cascade.learning_rate(state.step, stages,
                                                          config.train.warmup_steps),
                   **terms}
        return new_state, metrics

    replicated = sharding.replicated(mesh)
    return jax.jit(train_step, out_shardings=replicated, donate_argnums=0)


def make_predict(detector) -> Callable:
    """`predict(params, batch_stats, images_BxVxNxNx3) -> keypoints_BxVxJx3` (eval mode, jitted)."""

    @jax.jit
    def predict(params, batch_stats, images):
        b, v = images.shape[:2]
        out = detector.apply(_detector_variables(params["detector"], batch_stats),
                             images.reshape(b * v, *images.shape[2:]), train=False)
        return out["keypoints"].reshape(b, v, skeleton.NUM_JOINTS, 3)

    return predict


def make_visualize(config, detector, physique, image_size: int) -> Callable:
    """Jitted: one example's predicted keypoints, Skeleton Masks and Physique Masks per view."""
    predict = make_predict(detector)
    capsule_width = physique_capsule_width(config)

    @jax.jit
    def visualize(params, batch_stats, images_VxNxNx3):
        keypoints_VxJx3 = predict(params, batch_stats, images_VxNxNx3[None])[0]
        skel = jax.vmap(lambda k: render.skeleton_mask(k[:, :2], image_size,
                                                      config.loss.body_width))(keypoints_VxJx3)
        if capsule_width is None:
            phys = physique.apply({"params": params["physique"]}, skel)
        else:
            phys = jax.vmap(lambda k: render.skeleton_mask(k[:, :2], image_size,
                                                          capsule_width))(keypoints_VxJx3)
        return keypoints_VxJx3, skel, phys

    return visualize


def local_copy(tree):
    """This process's copy of a replicated pytree, on one local device (for host-side work)."""
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def evaluate(config, predict: Callable, params, batch_stats, source, image_size: int,
             max_examples: int = 0) -> dict:
    """Runs the detector over (the first `max_examples` of) `source` and computes DESIGN §11.

    Runs on one device of this process; the last partial batch is padded so that nothing
    recompiles. The results also hold, under `evaluation.BASELINE_KEY`, the metrics of a constant
    standing skeleton on the same samples (`evaluation.template_keypoints`): the figure a model
    must beat to have learned anything from the images.
    """
    if max_examples:
        source = [source[i] for i in range(min(max_examples, len(source)))]
    batch_size = int(config.eval.batch_size)
    dataset = input_pipeline.make_dataset(
        source, global_batch_size=batch_size, training=False, num_threads=config.data.num_threads,
        prefetch=config.data.prefetch, views=tuple(config.data.views))
    depth_range = float(config.model.depth_range_mm)
    accumulator = evaluation.Accumulator(image_size, depth_range)
    baseline = evaluation.Accumulator(image_size, depth_range)
    for batch in dataset:
        count = len(batch["frame"])
        images = batch["image"]
        if count < batch_size:
            pad = np.repeat(images[-1:], batch_size - count, axis=0)
            images = np.concatenate([images, pad])
        keypoints = np.asarray(predict(params, batch_stats, images))[:count]
        accumulator.add(keypoints, batch)
        baseline.add(np.broadcast_to(evaluation.template_keypoints(), keypoints.shape), batch)
    threshold = float(config.eval.pck2d_threshold)
    results = accumulator.results(threshold)
    reference = baseline.results(threshold)
    results[evaluation.BASELINE_KEY] = {k: reference[k] for k in evaluation.METRIC_KEYS}
    return results


def restore_latest(config, workdir: str, image_size: int, mesh):
    """The latest checkpoint's state of `workdir` (replicated on `mesh`), for evaluation.

    Raises:
        FileNotFoundError: `workdir` has no checkpoint.
    """
    directory = os.path.join(workdir, "checkpoints")
    checkpointer = checkpoint.Checkpointer(directory, keep=config.train.keep_checkpoints)
    if checkpointer.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: train first "
                                f"(python -m experiments.train --workdir={workdir} ...)")
    detector, physique = create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    cache_size = 0
    if config.loss.fit_cache:
        builder = datasets.get_builder(config)
        cache_size = fit_cache.size(
            config, data_builders.data_source(builder, config.data.train_split))
    state = init_state(config, detector, physique, optimizer, image_size, mesh, cache_size)
    state, _, _ = checkpointer.restore(state)
    checkpointer.close()
    return state


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains per `config` in `workdir` (resuming if it holds checkpoints).

    Returns:
        The held-out metrics of the last in-training evaluation (empty if none ran).
    """
    optimizer = cascade.make_optimizer(config.stages, config.train)  # validates them first
    if config.data.val_split and datasets.is_test_split(config, config.data.val_split):
        raise ValueError(
            f"config.data.val_split is config.data.eval_split or another test split "
            f"({config.data.val_split!r}): in-training figures would read a test split, and "
            "every choice made from them would be tuned on it; set val_split to a val split, "
            "or to '' for none")
    os.makedirs(workdir, exist_ok=True)
    builder = datasets.get_builder(config)
    train_source = data_builders.data_source(builder, config.data.train_split)
    # In-training evaluation reads the val split only; the test split is experiments.evaluate's,
    # read once per reported run. A dataset without a val split (val_split "") trains blind.
    eval_source = None
    if config.data.val_split:
        eval_source = data_builders.data_source(builder, config.data.val_split)
    else:
        reporting.say("config.data.val_split is empty: no in-training evaluation (the test split "
                      "is read by experiments.evaluate alone)")
    image_size = datasets.image_size_of(train_source)
    # Every training source (mixtures included) is opened, or built, before anything compiles.
    train_dataset = datasets.make_train_dataset(config, train_source)

    mesh = sharding.make_mesh()
    detector, physique = create_models(config)
    state = init_state(config, detector, physique, optimizer, image_size, mesh,
                       fit_cache.size(config, train_source))
    train_step = make_train_step(config, detector, physique, optimizer, image_size, mesh)
    predict = make_predict(detector)
    visualize = make_visualize(config, detector, physique, image_size)

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
    meta = {"config": config.to_json_best_effort(), "image_size": image_size}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    def save(force=False):
        checkpointer.save(int(jax.device_get(state.step)), state, iterator.get_state(), meta,
                          force=force)

    if int(config.loss.fit_init_steps) and not resumed:
        # A fresh run: the cache starts with template fits, saved at step 0 (a resumed run
        # keeps them).
        cache = fit_cache.initial_fits(config, train_source, image_size,
                                       physique_capsule_width(config), physique_body_radii(config))
        state = state.replace(fit_cache=jax.device_put(cache, sharding.replicated(mesh)))
        save(force=True)

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
                local = local_copy(state)
                images, masks = local_batch["image"][0], local_batch["mask"][0]
                keypoints, skel, phys = visualize(local.params, local.batch_stats, images)
                panel = visualization.training_panel(images, np.asarray(keypoints),
                                                     np.asarray(skel), np.asarray(phys), masks)
                reporter.images(step, {"train/prediction": panel})
            if eval_source is not None and (
                    (config.train.eval_every and step % config.train.eval_every == 0)
                    or step == total):
                local = local_copy(state)
                results = evaluate(config, predict, local.params, local.batch_stats, eval_source,
                                   image_size, config.train.eval_examples)
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
