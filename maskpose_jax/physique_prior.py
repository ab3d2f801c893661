"""A Physique network pre-trained on the procedural body from random poses (DESIGN §4).

Trained jointly with the detector, the Physique network co-adapts: it learns to paint the
silhouette from whatever skeleton it is given, and L_phys stops telling poses apart (README,
"Earlier"). Pre-trained instead on skeleton -> silhouette pairs it cannot bend, and then
frozen (or adapted slowly by a cascade stage that trains "physique"), it is a shape prior that
cannot cheat: random poses of the synthetic generator's procedural body (rendered by
`data_builders.synthetic.random_poses`, handed over by `data_builders.configured.physique_pairs`;
no motion capture, no split of any dataset), each drawn as the Skeleton Mask the losses draw
(`fused.draw_pose`, config.loss.body_width) from its true projection, against its rendered
silhouette.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from maskpose_jax import factory
from maskpose_jax import fused
from maskpose_jax import losses

HELD_OUT = 0.1      # share of the pairs kept out of training to report the fit


def skeleton_masks(pairs, loss_config, image_size: int) -> np.ndarray:
    """The Skeleton Masks [B, V, N, N] of the pairs' true poses, as the losses draw them."""
    def one(joints_Jx3, crop, intrinsics, extrinsics):
        views = dict(crop=crop, intrinsics=intrinsics, extrinsics=extrinsics,
                     distortion=jnp.zeros((crop.shape[0], 5), jnp.float32))
        return fused.draw_pose(joints_Jx3, views, loss_config, image_size)["skel_VxNxN"]
    draw = jax.jit(jax.vmap(one))
    return np.concatenate([np.asarray(draw(*(jnp.asarray(pairs[k][i:i + 256]) for k in
                                             ("joints_world", "crop", "intrinsics",
                                              "extrinsics"))))
                           for i in range(0, len(pairs["mask"]), 256)])


def pretrain(config, physique, pairs: dict, echo=print):
    """Pre-trains `physique` (a `models.PhysiqueNet`) on `pairs` per config.physique.pretrain_*.

    `pairs` (`data_builders.configured.physique_pairs`): mask [B, V, N, N], crop, intrinsics,
    extrinsics and joints_world of B random poses. config.physique: pretrain_steps Adam steps at
    pretrain_lr (cosine decay) on batches of pretrain_batch masks (uniform squared error, the
    L_phys of a uniform weight); the last HELD_OUT of the examples score the result. Seeded by
    config.seed.

    Returns:
        (params, report): the physique parameters and a dict of the held-out loss and IoU at 0.5
        (of the network, and of the Skeleton Mask itself), the pairs' count and the seconds of
        the training.
    """
    factory.check_loss_config(config)
    settings = config.physique
    steps, batch_size = int(settings.pretrain_steps), int(settings.pretrain_batch)
    start = time.time()
    masks = pairs["mask"]
    count, image_size = len(masks), int(masks.shape[-1])
    if count < factory.MIN_PRETRAIN_EXAMPLES or steps < 1:
        raise ValueError(f"physique_prior.pretrain needs >= {factory.MIN_PRETRAIN_EXAMPLES} "
                         f"pairs and config.physique.pretrain_steps >= 1, got {count} and {steps}")
    skel = skeleton_masks(pairs, config.loss, image_size)
    held = max(1, int(round(HELD_OUT * count)))
    # On the device once; each step gathers its batch there (no per-step host copy).
    train_x = jnp.asarray(skel[:-held].reshape(-1, image_size, image_size))
    train_y = jnp.asarray(masks[:-held].reshape(-1, image_size, image_size))
    test_x = jnp.asarray(skel[-held:].reshape(-1, image_size, image_size))
    test_y = jnp.asarray(masks[-held:].reshape(-1, image_size, image_size))
    key = jax.random.PRNGKey(int(config.seed))
    params = physique.init(key, jnp.zeros((1, image_size, image_size), jnp.float32))["params"]
    optimizer = optax.adam(optax.cosine_decay_schedule(float(settings.pretrain_lr), steps))
    opt_state = optimizer.init(params)

    def loss_fn(p, x, y):
        return jnp.mean((physique.apply({"params": p}, x) - y) ** 2)

    @jax.jit
    def step(p, s, picked):
        loss, grads = jax.value_and_grad(loss_fn)(p, train_x[picked], train_y[picked])
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    rng = np.random.default_rng([int(config.seed), 31])
    for i in range(steps):
        picked = rng.integers(len(train_x), size=batch_size)
        params, opt_state, loss = step(params, opt_state, picked)
        if (i + 1) % max(1, steps // 10) == 0 or i + 1 == steps:
            echo(f"physique prior: step {i + 1}/{steps}, train loss {float(loss):.4f}")
    phys = jax.jit(lambda p, x: physique.apply({"params": p}, x))(params, test_x)
    report = dict(
        held_out_loss=float(jnp.mean((phys - test_y) ** 2)),
        held_out_iou=float(jnp.mean(jax.vmap(losses.mask_iou)(phys, test_y))),
        skeleton_iou=float(jnp.mean(jax.vmap(losses.mask_iou)(test_x, test_y))),
        examples=count, seconds=time.time() - start)
    echo(f"physique prior: held-out loss {report['held_out_loss']:.4f}, IoU "
         f"{report['held_out_iou']:.3f} (the Skeleton Mask's {report['skeleton_iou']:.3f}), "
         f"{report['seconds']:.0f} s")
    return params, report
