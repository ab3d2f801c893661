"""The one jitted `train_step(state, batch) -> (state, metrics)` of a run (DESIGN §8, §9).

The step runs the detector on every view, scores the cascade's weighted loss terms (the mask
terms of `losses`, the fused pose's of `fused`, or the supervised oracle's), updates the
parameters and the fit cache, and leaves the state untouched when the loss or the gradient is
not finite (the loop stops on the `finite` metric).
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from maskpose_jax import cascade
from maskpose_jax import factory
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import losses
from maskpose_jax import models
from maskpose_jax import sharding
from maskpose_jax import skeleton


def make_train_step(config, detector, physique, optimizer, image_size: int, mesh) -> Callable:
    """The jitted `train_step(state, batch) -> (state, metrics)`; the state argument is donated."""
    factory.check_loss_config(config)
    stages = list(config.stages)
    depth_range = float(config.model.depth_range_mm)
    oracle = config.loss.supervision == "oracle"
    batch_norm = config.model.norm == "batch"
    loss_config = config.loss
    capsule_width = factory.physique_capsule_width(config)
    fusion = bool(config.loss.fusion)
    body_radii = factory.physique_body_radii(config)

    def loss_fn(params, state, batch, cache):
        b, v = batch["image"].shape[:2]
        images = batch["image"].reshape(b * v, *batch["image"].shape[2:])
        # Named scopes label the profile's ops (benchmarks/train_step.py splits time by them).
        with jax.named_scope("detector"):
            variables = models.detector_variables(params["detector"], state.batch_stats)
            out, new_vars = detector.apply(variables, images, train=True,
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
        extra = ("joints_world",) if oracle else ()
        cache = None
        if state.fit_cache:  # the entries of this batch's examples (no gradient)
            extra += (input_pipeline.INDEX_FIELD,)
            index = batch[input_pipeline.INDEX_FIELD]
            cache = {k: v[index] for k, v in state.fit_cache.items()}
        batch = input_pipeline.without_ground_truth(batch, extra)
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
        new_state = factory.TrainState(step=state.step + 1, params=new_params,
                               batch_stats=batch_stats, opt_state=opt_state, fit_cache=fit_cache)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        # A non-finite step changes nothing: the loop stops on it and saves this state.
        new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state, state)
        metrics = {"loss": total, "grad_norm": grad_norm, "finite": finite,
                   "learning_rate": cascade.learning_rate(state.step, stages,
                                                          config.train.warmup_steps, "detector"),
                   **terms}
        return new_state, metrics

    replicated = sharding.replicated(mesh)
    return jax.jit(train_step, out_shardings=replicated, donate_argnums=0)
