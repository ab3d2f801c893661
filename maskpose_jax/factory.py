"""A run's parts from its config: the check of every setting they read, the models, the train
state (created or restored), and the fixed body that draws the Physique Masks.

`check_config(config)` raises on any bad setting of the models, the losses, the cascade, the
optimizer and the splits, naming the config key, before a dataset is opened or anything compiles.
The training loop (`train`), the train step (`train_step`), the evaluation (`inference`) and the
entry points take their parts from here.
"""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections

from maskpose_jax import cascade
from maskpose_jax import checkpoint
from maskpose_jax import datasets
from maskpose_jax import fit_cache
from maskpose_jax import models
from maskpose_jax import sharding
from maskpose_jax import skeleton

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SUPERVISIONS = ("masks", "oracle")
PHYSIQUE_KINDS = ("network", "capsules", "body")
MIN_PRETRAIN_EXAMPLES = 10   # config.physique.pretrain_examples (physique_prior.pretrain)
TEMPLATES = ("none", "standing")


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array        # int32, the number of train steps taken
    params: Any            # {"detector": ..., "physique": ...}
    batch_stats: Any       # the detector's BatchNorm statistics ({} with GroupNorm)
    opt_state: Any
    # The network-in-the-loop fit's cache (config.loss.fit_cache): {"joints": NxJx3 world joints
    # (mm), "filled": N} over the N examples of the training split; {} without one.
    fit_cache: Any = flax.struct.field(default_factory=dict)


class ConfigError(ValueError):
    """A bad setting of a run's config; the message names its key."""


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the key of the first bad setting of a training run."""
    try:
        cascade.make_optimizer(config.stages, config.train)  # the stages and the optimizer
        check_loss_config(config)
        _template(config)
        _dtype(config)
        if config.loss.supervision == "oracle" and config.data.mix:
            raise ValueError("config.loss.supervision='oracle' reads ground-truth joints, which "
                             "mixed sources (config.data.mix) may not have (in-the-wild video): "
                             "use one source")
        if config.data.val_split:  # in-training figures choose recipes: val, never test
            datasets.refuse_test_split(config, config.data.val_split, "config.data.val_split")
        # Nor does training read a test split (the primary's or a mix entry's).
        datasets.refuse_test_split(config, config.data.train_split, "config.data.train_split")
        for index, entry in enumerate(config.data.mix):
            if "train_split" in entry:
                datasets.refuse_test_split(config, entry.train_split,
                                           f"config.data.mix[{index}].train_split")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def check_loss_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the key of a bad setting of the train step's losses and body."""
    if config.loss.supervision not in SUPERVISIONS:
        raise ValueError(f"config.loss.supervision must be 'masks' or 'oracle', "
                         f"got {config.loss.supervision!r}")
    if int(config.loss.refine_steps) and not config.loss.fusion:
        raise ValueError("config.loss.refine_steps > 0 refines the fused pose: it needs "
                         "config.loss.fusion = True")
    physique_capsule_width(config)
    physique_body_radii(config)
    settings = config.physique
    if int(settings.pretrain_steps) < 0:
        raise ValueError(f"config.physique.pretrain_steps must be >= 0, got "
                         f"{settings.pretrain_steps}")
    if int(settings.pretrain_steps):
        if settings.kind != "network":
            raise ValueError("config.physique.pretrain_steps > 0 pre-trains the physique network: "
                             f"it needs config.physique.kind = 'network', got {settings.kind!r}")
        if (int(settings.pretrain_examples) < MIN_PRETRAIN_EXAMPLES
                or int(settings.pretrain_batch) < 1):
            raise ValueError(f"config.physique.pretrain_examples must be >= "
                             f"{MIN_PRETRAIN_EXAMPLES} and "
                             "config.physique.pretrain_batch >= 1, got "
                             f"{settings.pretrain_examples} and {settings.pretrain_batch}")


def _template(config):
    """The detector's spatial prior: None or skeleton.STANDING_TEMPLATE (config.model.template)."""
    name = config.model.template
    if name not in TEMPLATES:
        raise ValueError(f"config.model.template must be 'none' or 'standing', got {name!r}")
    return skeleton.STANDING_TEMPLATE if name == "standing" else None


def _dtype(config):
    dtype = DTYPES.get(config.model.dtype)
    if dtype is None:
        raise ValueError(
            f"config.model.dtype must be float32 or bfloat16, got {config.model.dtype}")
    return dtype


def create_models(config: ml_collections.ConfigDict) -> tuple[models.Detector, models.PhysiqueNet]:
    dtype = _dtype(config)
    detector = models.Detector(
        num_joints=skeleton.NUM_JOINTS, depth_bins=config.model.depth_bins,
        resnet_depth=config.model.resnet_depth, width=config.model.width, norm=config.model.norm,
        stem=config.model.stem, head_channels=config.model.head_channels,
        num_deconv=config.model.num_deconv, template=_template(config),
        template_sigma=float(config.model.template_sigma), dtype=dtype)
    physique = models.PhysiqueNet(widths=tuple(config.physique.widths), dtype=dtype)
    return detector, physique


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
    if kind not in PHYSIQUE_KINDS:
        raise ValueError(
            f"config.physique.kind must be 'network', 'capsules' or 'body', got {kind!r}")
    if kind != "capsules":
        return None
    width = float(config.physique.capsule_width)
    if not width > 0:
        raise ValueError(f"config.physique.capsule_width must be > 0, got {width}")
    return width


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


def restore_latest(config, workdir: str, mesh, train_source=None) -> tuple[TrainState, dict]:
    """The latest checkpoint's state of `workdir` (replicated on `mesh`) and its meta, for
    evaluation and prediction.

    The crop size and the fit cache's length (config.loss.fit_cache) come from the checkpoint's
    meta; a checkpoint written before the meta held the cache's length needs `train_source`
    (the records of config.data.train_split) to size it.

    Returns:
        (state, meta): meta holds "image_size", "config" (JSON) and, for newer checkpoints,
        "fit_cache_size".

    Raises:
        FileNotFoundError: `workdir` has no checkpoint.
        ValueError: an older checkpoint with a fit cache, and no `train_source`.
    """
    directory = os.path.join(workdir, "checkpoints")
    checkpointer = checkpoint.Checkpointer(directory, keep=config.train.keep_checkpoints)
    step = checkpointer.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: train first "
                                f"(python -m experiments.train --workdir={workdir} ...)")
    meta = checkpointer.read_meta(step)
    cache_size = meta.get("fit_cache_size")
    if cache_size is None:
        if config.loss.fit_cache and train_source is None:
            raise ValueError(f"{directory} step {step}: an older checkpoint with a fit cache "
                             "whose length its meta does not hold: pass the training split")
        cache_size = fit_cache.size(config, train_source) if train_source is not None else 0
    detector, physique = create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    state = init_state(config, detector, physique, optimizer, int(meta["image_size"]), mesh,
                       int(cache_size))
    state, _, _ = checkpointer.restore(state, step)
    checkpointer.close()
    return state, meta
