"""The loss-landscape harness: fit one 3D pose per example to its masks, no network.

    python -m experiments.fit --config=synthetic.py [--examples=64] [--steps=300]
        [--split=train] [--starts=noise50,noise100,noise200,template] [--restarts=4]

Analysis by synthesis: for each of `--examples` evenly spaced examples of a split, the 17 world
joints are optimized (Adam, jit + vmap over examples) against that example's masks and cameras
with the config's loss (`fused.pose_mask_terms`), following its stages' weights and body widths
in turn (`--stage=all`, the steps shared like the stages') or one stage's (`--stage=INDEX`), from

    noiseS      the truth plus a random offset per joint of RMS length S mm;
    template    the standing template centred on the point triangulated from the masks'
                centroids (`fused.template_starts`), at `--restarts` yaws; the restart of lowest final loss is kept (no
                ground truth in the choice).

It prints, per start, MPJPE and P-MPJPE of the fits (as fitted, and after one global left/right
relabelling of the whole set), and the share of examples whose fit reaches a lower loss than the
truth (a loss whose minimum is not the truth cannot be fixed by optimizing harder). Ground truth
is read only to score and to make the noisy starts, as in the evaluation. The physique network
kind is pre-trained first when config.physique.pretrain_steps > 0 (`physique_prior`) and then
frozen; without pre-training it has nothing to fit here and its term is left out.
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_builders import configured
from experiments import flags as experiment_flags
from maskpose_jax import datasets
from maskpose_jax import factory
from maskpose_jax import fused
from maskpose_jax import input_pipeline
from maskpose_jax import metrics
from maskpose_jax import physique_prior

_EXAMPLES = flags.DEFINE_integer("examples", 64, "Examples, evenly spaced over the split.")
_STEPS = flags.DEFINE_integer("steps", 300, "Adam steps per fit.")
_LR = flags.DEFINE_float("lr", 10.0, "Adam learning rate, mm.")
_SPLIT = flags.DEFINE_string("split", None, "Split to read (default: config.data.train_split).")
_STARTS = flags.DEFINE_list("starts", ["noise50", "noise100", "noise200", "template"],
                            "Starts: noiseS (truth + S mm RMS) and/or template.")
_RESTARTS = flags.DEFINE_integer("restarts", 4, "Yaws of the template start.")
_STAGE = flags.DEFINE_string("stage", "all", "Index of the stage whose loss weights are used, or "
                             "'all': every stage in turn, steps shared as the stages' steps.")


def scores(fits_BxJx3, truth_BxJx3):
    """MPJPE / P-MPJPE (mm) as fitted and after the better global left/right relabelling."""
    mpjpe, p_mpjpe = (float(jnp.mean(f(fits_BxJx3, truth_BxJx3)))
                      for f in (metrics.mpjpe, metrics.p_mpjpe))
    flipped = metrics.flip_left_right(fits_BxJx3)
    mpjpe_f, p_mpjpe_f = (float(jnp.mean(f(flipped, truth_BxJx3)))
                          for f in (metrics.mpjpe, metrics.p_mpjpe))
    if mpjpe_f >= mpjpe:
        mpjpe_f, p_mpjpe_f = mpjpe, p_mpjpe
    return {"mpjpe": mpjpe, "p_mpjpe": p_mpjpe, "mpjpe_flip": mpjpe_f, "p_mpjpe_flip": p_mpjpe_f}


def run(config, *, split, examples, steps, lr, starts, restarts=4, stage="all", echo=print):
    """Fits every start of `starts` (see the module docstring); returns {start: row}.

    A row holds mpjpe, p_mpjpe, mpjpe_flip, p_mpjpe_flip (mm), below (share of examples whose fit
    has a lower loss than the truth), start and start_p_mpjpe (MPJPE and P-MPJPE of the starts,
    mm), loss and start_loss (mean loss of the fits and of their starts, the last stage's weights)
    and fits_BxJx3 (world joints, mm); rows["truth_BxJx3"] holds the truth.
    """
    if examples < 1 or steps < 1 or restarts < 1:
        raise ValueError("examples, steps and restarts must be >= 1")
    for start in starts:
        if start != "template" and not (start.startswith("noise") and start[5:].isdigit()):
            raise ValueError(f"unknown start {start!r} (noiseS, S in mm, or template)")
    datasets.refuse_test_split(config, split, "--split")  # the harness chooses losses
    source = configured.open_split(config, split)
    count = min(int(examples), len(source))
    picked = [source[int(i)] for i in np.linspace(0, len(source) - 1, count)]
    batch = next(iter(input_pipeline.make_dataset(
        picked, global_batch_size=count, training=False, num_threads=1, prefetch=1,
        views=tuple(config.data.views))))
    size = int(batch["mask"].shape[-1])
    loss_config = config.loss
    capsule_width = factory.physique_capsule_width(config)
    body_radii = factory.physique_body_radii(config)
    physique_apply = None
    if config.physique.kind == "network" and loss_config.use_phys:
        if int(config.physique.pretrain_steps):
            # The pre-trained network, frozen: the fit's gradient flows through its input.
            _, physique = factory.create_models(config)
            params, _ = physique_prior.pretrain(
                config, physique, configured.physique_pairs(config, size, echo), echo=echo)

            def physique_apply(masks):
                return physique.apply({"params": params}, masks)
        else:
            loss_config = config.loss.copy_and_resolve_references()
            loss_config.use_phys = False
            echo("physique.kind = 'network' without pre-training: the physique term is left "
                 "out (nothing to fit it with)")
    # The stages followed: one (its weights for every step), or all, steps shared in proportion.
    stages = list(config.stages) if stage == "all" else [config.stages[int(stage)]]
    shares = np.array([float(s.steps) for s in stages])
    ends = np.round(np.cumsum(shares) / shares.sum() * int(steps)).astype(int)
    stage_of_step = np.searchsorted(ends, np.arange(int(steps)), side="right")
    names = sorted({t for s in stages for t, w in s.loss_weights.items()
                    if w and t in fused.POSE_TERMS}, key=fused.POSE_TERMS.index)
    weights_SxT = jnp.asarray([[float(s.loss_weights.get(t, 0.0)) for t in names]
                               for s in stages], jnp.float32)
    scales_S = jnp.asarray([float(s.get("body_scale", 1.0)) for s in stages], jnp.float32)
    views = fused.example_views(input_pipeline.without_ground_truth(batch), loss_config)
    truth_BxJx3 = jnp.asarray(batch["joints_world"], jnp.float32)

    def total(joints_Jx3, example, index=len(stages) - 1):
        terms = fused.pose_mask_terms(joints_Jx3, example, loss_config, size, physique_apply,
                                      capsule_width, body_radii, scales_S[index])
        return sum(weights_SxT[index, k] * terms[t] for k, t in enumerate(names)), terms

    optimizer = optax.adam(float(lr))

    @jax.jit
    def fit(start_BxJx3):
        def one(start_Jx3, example):
            def step(carry, index):
                joints, opt_state = carry
                grad = jax.grad(lambda j: total(j, example, index)[0])(joints)
                updates, opt_state = optimizer.update(grad, opt_state)
                return (optax.apply_updates(joints, updates), opt_state), None
            (joints, _), _ = jax.lax.scan(step, (start_Jx3, optimizer.init(start_Jx3)),
                                          jnp.asarray(stage_of_step, jnp.int32))
            return joints, total(joints, example)[0]
        return jax.vmap(one)(start_BxJx3, views)

    total_at = jax.jit(jax.vmap(total))
    truth_loss_B, truth_terms = total_at(truth_BxJx3, views)
    echo(f"{count} examples of {config.data.name}/{split}, {size}px, "
         f"{int(batch['mask'].shape[1])} views; Adam lr {lr:g} mm, {steps} steps; stages: "
         + "; ".join(f"{s.name} (body x{float(s.get('body_scale', 1.0)):g}): "
                     + " + ".join(f"{float(s.loss_weights[t]):g} {t}" for t in names
                                  if float(s.loss_weights.get(t, 0.0)))
                     for s in stages))
    echo("at the truth: " + ", ".join(f"{t} {float(jnp.mean(truth_terms[t])):.4f}"
                                      for t in names)
         + f", skel IoU {float(jnp.mean(truth_terms['skel_iou'])):.3f}")
    echo("| start | MPJPE | P-MPJPE | MPJPE, global flip | P-MPJPE, global flip "
         "| loss below truth | start MPJPE | start P-MPJPE |")
    echo("|---|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(int(config.seed))
    rows = {}
    for start in starts:
        if start == "template":
            starts_BxKxJx3 = fused.template_starts(views, int(restarts))
            tries = [fit(starts_BxKxJx3[:, r]) for r in range(starts_BxKxJx3.shape[1])]
            loss_BxK = jnp.stack([l for _, l in tries], axis=1)
            best_B = jnp.argmin(loss_BxK, axis=1)
            fits = jnp.stack([f for f, _ in tries], axis=1)[jnp.arange(count), best_B]
            loss = loss_BxK[jnp.arange(count), best_B]
            start_BxJx3 = starts_BxKxJx3[jnp.arange(count), best_B]
        else:
            rms = float(start[5:])
            noise = rng.normal(0.0, rms / np.sqrt(3.0), truth_BxJx3.shape).astype(np.float32)
            start_BxJx3 = truth_BxJx3 + noise
            fits, loss = fit(start_BxJx3)
        row = scores(fits, truth_BxJx3)
        row["below"] = float(jnp.mean(loss < truth_loss_B))
        row["start"] = float(jnp.mean(metrics.mpjpe(start_BxJx3, truth_BxJx3)))
        row["start_p_mpjpe"] = float(jnp.mean(metrics.p_mpjpe(start_BxJx3, truth_BxJx3)))
        row["loss"] = float(jnp.mean(loss))
        row["start_loss"] = float(jnp.mean(total_at(start_BxJx3, views)[0]))
        row["fits_BxJx3"] = np.asarray(fits)
        rows[start] = row
        echo(f"| {start} | {row['mpjpe']:.1f} | {row['p_mpjpe']:.1f} | {row['mpjpe_flip']:.1f} "
             f"| {row['p_mpjpe_flip']:.1f} | {row['below']:.2f} | {row['start']:.1f} "
             f"| {row['start_p_mpjpe']:.1f} |")
    rows["truth_BxJx3"] = np.asarray(truth_BxJx3)
    return rows


def main(argv):
    del argv
    config = experiment_flags.config()
    try:
        run(config, split=_SPLIT.value or config.data.train_split, examples=_EXAMPLES.value,
            steps=_STEPS.value, lr=_LR.value, starts=_STARTS.value, restarts=_RESTARTS.value,
            stage=_STAGE.value)
    except ValueError as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    app.run(main, flags_parser=experiment_flags.parse_flags)
