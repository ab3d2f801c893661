"""Cascaded optimization (DESIGN §9) as one optax transformation driven by the step count.

The config's `stages` is an ordered list of {name, steps, trainable, learning_rate, loss_weights}
and optionally body_scale and lr_scale ({module: factor} on the stage's rate: a module adapted
slowly beside one trained at full rate).
`make_optimizer` labels every parameter by its module ("detector", "physique"), and gives each
label one chain (gradient clipping, Adam, weight decay) inside a *stage gate*: at a step where the
module is frozen, the gate returns a zero update and leaves the chain's state untouched (Adam's
moments and count stay as they were), so the optimizer state keeps one structure for the whole
run and the jitted train step compiles once. Loss weights are step schedules of the same stages.
"""

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

MODULES = ("detector", "physique")
# config.train.optimizer (make_optimizer).
OPTIMIZERS = ("adam", "adamw", "sgd")
SGD_MOMENTUM = 0.9
LOSS_TERMS = ("skel", "phys", "sym", "agree", "oracle", "inside", "cover", "proportion", "bend", "stance",
              "depth", "reproject")


def validate_stages(stages: Sequence[Any]) -> None:
    """Raises ValueError naming the config key of a malformed stage."""
    if not stages:
        raise ValueError("config.stages is empty: at least one stage is needed")
    for i, stage in enumerate(stages):
        where = f"config.stages[{i}] ({stage.get('name', '?')})"
        if int(stage.steps) <= 0:
            raise ValueError(f"{where}.steps must be positive, got {stage.steps}")
        unknown = set(stage.trainable) - set(MODULES)
        if unknown or not stage.trainable:
            raise ValueError(f"{where}.trainable must name some of {MODULES}, got {stage.trainable}")
        unknown = set(stage.loss_weights.keys()) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"{where}.loss_weights has unknown terms {sorted(unknown)}; "
                             f"terms: {LOSS_TERMS}")
        if float(stage.learning_rate) <= 0:
            raise ValueError(f"{where}.learning_rate must be positive")
        if float(stage.get("body_scale", 1.0)) <= 0:
            raise ValueError(f"{where}.body_scale must be positive")
        scales = stage.get("lr_scale", {})
        try:
            valid = not set(dict(scales)) - set(MODULES) and all(
                float(v) > 0 for v in dict(scales).values())
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"{where}.lr_scale must map modules of {MODULES} to positive "
                             f"factors, got {scales!r}")


def stage_starts(stages: Sequence[Any]) -> tuple[int, ...]:
    """First step of every stage, and the total number of steps as the last entry."""
    starts = [0]
    for stage in stages:
        starts.append(starts[-1] + int(stage.steps))
    return tuple(starts)


def total_steps(stages: Sequence[Any]) -> int:
    return stage_starts(stages)[-1]


def stage_index(step, stages: Sequence[Any]) -> jax.Array:
    """Index of the stage that `step` (traced int) falls in; steps past the end stay in the last."""
    ends = jnp.asarray(stage_starts(stages)[1:-1], jnp.int32)
    return jnp.sum(step >= ends).astype(jnp.int32)


def stage_name(step: int, stages: Sequence[Any]) -> str:
    """Host-side name of the stage of `step`."""
    return stages[int(stage_index(step, stages))].name


def loss_weights(step, stages: Sequence[Any]) -> dict[str, jax.Array]:
    """Each term's weight at `step`: the weight its stage gives it, 0 where not named."""
    index = stage_index(step, stages)
    return {term: jnp.asarray([float(s.loss_weights.get(term, 0.0)) for s in stages],
                              jnp.float32)[index]
            for term in LOSS_TERMS}


def body_scale(step, stages: Sequence[Any]) -> jax.Array:
    """The width factor of the drawn body at `step`: its stage's `body_scale` (1 where unset).

    Coarse to fine: a stage with body_scale > 1 draws the Physique Mask that much wider."""
    index = stage_index(step, stages)
    return jnp.asarray([float(s.get("body_scale", 1.0)) for s in stages], jnp.float32)[index]


def module_active(step, stages: Sequence[Any], module: str) -> jax.Array:
    """Whether `module` is trained at `step` (traced bool)."""
    return jnp.asarray([module in s.trainable for s in stages])[stage_index(step, stages)]


def learning_rate(step, stages: Sequence[Any], warmup_steps: int, module: str = "") -> jax.Array:
    """The stage's learning rate, ramped linearly over its first `warmup_steps` steps.

    With `module`, times the stage's lr_scale of that module (1 where unset)."""
    index = stage_index(step, stages)
    rates = jnp.asarray([float(s.learning_rate) * float(dict(s.get("lr_scale", {})).get(module, 1))
                         for s in stages], jnp.float32)
    starts = jnp.asarray(stage_starts(stages)[:-1], jnp.int32)
    since = (step - starts[index] + 1).astype(jnp.float32)
    ramp = jnp.minimum(1.0, since / max(int(warmup_steps), 1))
    return rates[index] * ramp


class GateState(NamedTuple):
    count: jax.Array        # global step, advanced at every update whether active or not
    inner: optax.OptState   # the gated chain's state, frozen while inactive


def stage_gate(inner: optax.GradientTransformation, active_fn: Callable[[jax.Array], jax.Array],
               rate_fn: Callable[[jax.Array], jax.Array]) -> optax.GradientTransformation:
    """Runs `inner` and scales by -rate at steps where `active_fn` holds; else a zero update.

    While inactive the inner state is left exactly as it was (no moment decay, no count).
    """

    def init_fn(params):
        return GateState(jnp.zeros([], jnp.int32), inner.init(params))

    def update_fn(updates, state, params=None):
        active = active_fn(state.count)
        rate = rate_fn(state.count)
        new_updates, new_inner = inner.update(updates, state.inner, params)
        inner_state = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_inner,
                                   state.inner)
        out = jax.tree.map(lambda u: jnp.where(active, -rate * u, 0.0).astype(u.dtype),
                           new_updates)
        return out, GateState(state.count + 1, inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def param_labels(params: dict) -> dict:
    """Labels every leaf of {"detector": ..., "physique": ...} with its module name."""
    return {module: jax.tree.map(lambda _: module, tree) for module, tree in params.items()}


def make_optimizer(stages: Sequence[Any], train_config: Any) -> optax.GradientTransformation:
    """The one optimizer of a run: per-module gated chains over the cascade's stages.

    Args:
        stages: `config.stages`.
        train_config: `config.train` (optimizer, grad_clip_norm, weight_decay, warmup_steps).
            optimizer "adam" adds weight_decay to the gradient (L2), "adamw" decays the weights
            after Adam's scaling (decoupled, Loshchilov & Hutter ICLR 2019), "sgd" is heavy-ball
            momentum (SGD_MOMENTUM) with L2.

    Returns:
        An `optax.GradientTransformation` over params {"detector": ..., "physique": ...}.

    Raises:
        ValueError: an invalid cascade (`validate_stages`) or an unknown optimizer.
    """
    validate_stages(stages)
    name, decay = train_config.optimizer, float(train_config.weight_decay)
    if name not in OPTIMIZERS:
        raise ValueError(f"config.train.optimizer must be one of {OPTIMIZERS}, got {name!r}")
    transforms = {}
    for module in MODULES:
        chain = []
        if train_config.grad_clip_norm:
            chain.append(optax.clip_by_global_norm(float(train_config.grad_clip_norm)))
        if decay and name != "adamw":  # L2: the decay's gradient is scaled like the loss's
            chain.append(optax.add_decayed_weights(decay))
        chain.append(optax.scale_by_adam() if name in ("adam", "adamw")
                     else optax.trace(decay=SGD_MOMENTUM))
        if decay and name == "adamw":  # decoupled from Adam's scaling
            chain.append(optax.add_decayed_weights(decay))
        transforms[module] = stage_gate(
            optax.chain(*chain),
            active_fn=lambda step, m=module: module_active(step, stages, m),
            rate_fn=lambda step, m=module: learning_rate(step, stages, train_config.warmup_steps,
                                                         m))
    return optax.multi_transform(transforms, param_labels)
