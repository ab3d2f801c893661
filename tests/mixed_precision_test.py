"""The bfloat16 compute switch (`config.model.dtype`): float32 parameters, float32 reductions, and
training that tracks float32 over the tiny config's three cascade stages (one step each)."""

from concurrent import futures

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend import core as jax_core

from data_builders import configured
from experiments.configs import base
from experiments.configs import tiny
from maskpose_jax import cascade
from maskpose_jax import datasets
from maskpose_jax import factory
from maskpose_jax import input_pipeline
from maskpose_jax import sharding
from maskpose_jax import train_step as train_step_lib

IMAGE_SIZE = 32
STEPS = 3
# Reductions over many elements; windowed pooling (2x2, 3x3) is not among them.
_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax",
                         "argmin", "cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
# LLVM's optimization level changes how fast the compiled step runs, not what it computes, and
# halves the compile time that dominates this file. Both dtypes compile with the same options.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _setup(dtype):
    config = tiny.get_config("paper")
    # The tolerances below were measured on the unmirrored tiny batches; the detector's Adam
    # moments after three steps depend on which frames they saw.
    config.data.options.mirror = False
    config.model.dtype = dtype
    base.set_stage_steps(config, (1, 1, 1), STEPS)  # structure, shape, joint
    detector, physique = factory.create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    return config, detector, physique, optimizer


def _float_dtypes(tree):
    return {leaf.dtype for leaf in jax.tree.leaves(tree)
            if jnp.issubdtype(leaf.dtype, jnp.floating)}


def _primitives_on(jaxpr, dtype):
    """Names of the primitives, in `jaxpr` and every sub-jaxpr, that take a `dtype` operand."""
    names = set()
    for eqn in jaxpr.eqns:
        if any(getattr(v.aval, "dtype", None) == dtype for v in eqn.invars):
            names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    names |= _primitives_on(sub.jaxpr, dtype)
                elif isinstance(sub, jax_core.Jaxpr):
                    names |= _primitives_on(sub, dtype)
    return names


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """float32 and bfloat16: the same initial state and batches, STEPS train steps each."""
    config, detector, physique, optimizer = _setup("float32")
    config.data.data_dir = str(tmp_path_factory.mktemp("tfds"))
    source = configured.open_split(config, config.data.train_split)
    iterator = iter(datasets.make_train_dataset(config, datasets.Sources(source)))
    batches = [next(iterator) for _ in range(STEPS)]
    assert set(batches[0]) == set(input_pipeline.TRAIN_FIELDS)

    mesh = sharding.make_mesh()
    initial = factory.init_state(config, detector, physique, optimizer, IMAGE_SIZE, mesh)
    out = {"initial": jax.device_get(initial), "images": batches[0]["image"][:, 0]}
    traced = {}
    for dtype in ("float32", "bfloat16"):
        config, detector, physique, optimizer = _setup(dtype)
        # The switch leaves the state's structure, shapes and dtypes alone: bfloat16 starts
        # from the float32 run's initial values.
        abstract = jax.eval_shape(
            lambda: factory.init_state(config, detector, physique, optimizer, IMAGE_SIZE, mesh))
        assert jax.tree.structure(abstract) == jax.tree.structure(initial)
        assert ([(a.shape, a.dtype) for a in jax.tree.leaves(abstract)]
                == [(a.shape, a.dtype) for a in jax.tree.leaves(initial)])
        jitted = train_step_lib.make_train_step(config, detector, physique, optimizer, IMAGE_SIZE,
                                                mesh)
        traced[dtype] = jitted.trace(initial, sharding.shard_batch(batches[0], mesh))
        out[dtype] = {"jaxpr": traced[dtype].jaxpr.jaxpr, "detector": detector,
                      "physique": physique}
    # Compiling takes most of this file's time and one core each: both at once.
    with futures.ThreadPoolExecutor(len(traced)) as pool:
        compiled = dict(zip(traced, pool.map(
            lambda t: t.lower().compile(compiler_options=_COMPILER_OPTIONS), traced.values())))
    for dtype, train_step in compiled.items():
        state, metrics = jax.tree.map(jnp.copy, initial), []
        for batch in batches:
            state, step_metrics = train_step(state, sharding.shard_batch(batch, mesh))
            metrics.append(step_metrics)
        out[dtype].update(state=jax.device_get(state), metrics=jax.device_get(metrics))
    return out


def test_bfloat16_convolutions_with_float32_parameters_and_outputs(runs):
    params = runs["initial"].params
    images = runs["images"]
    skeleton_masks = jnp.zeros((2, IMAGE_SIZE, IMAGE_SIZE), jnp.float32)
    for dtype in ("float32", "bfloat16"):
        detector, physique = runs[dtype]["detector"], runs[dtype]["physique"]
        det_out, det_vars = jax.eval_shape(
            lambda p, x, m=detector: m.apply({"params": p}, x, train=False,
                                             capture_intermediates=True),
            params["detector"], images)
        phys_out, phys_vars = jax.eval_shape(
            lambda p, x, m=physique: m.apply({"params": p}, x, capture_intermediates=True),
            params["physique"], skeleton_masks)
        det_layers = det_vars["intermediates"]
        phys_layers = phys_vars["intermediates"]
        compute = jnp.dtype(dtype)
        assert det_layers["backbone"]["stem_conv"]["__call__"][0].dtype == compute
        assert det_layers["backbone"]["stage4_block2"]["conv2"]["__call__"][0].dtype == compute
        assert det_layers["deconv3"]["__call__"][0].dtype == compute
        assert phys_layers["enc0_conv1"]["__call__"][0].dtype == compute
        assert phys_layers["dec0_conv2"]["__call__"][0].dtype == compute
        # The biased output convolutions, the soft-argmax and the sigmoid stay float32.
        assert det_layers["final"]["__call__"][0].dtype == jnp.float32
        assert phys_layers["out"]["__call__"][0].dtype == jnp.float32
        assert det_out["keypoints"].dtype == jnp.float32
        assert det_out["heatmaps"].dtype == jnp.float32
        assert phys_out.dtype == jnp.float32
    assert _float_dtypes(runs["initial"]) == {jnp.dtype(jnp.float32)}


def test_bfloat16_train_step_reduces_in_float32(runs):
    bf16 = jnp.dtype(jnp.bfloat16)
    # The switch took effect: convolutions run on bfloat16 operands ...
    assert "conv_general_dilated" in _primitives_on(runs["bfloat16"]["jaxpr"], bf16)
    assert not _primitives_on(runs["float32"]["jaxpr"], bf16)
    # ... but no reduction does (losses, means, gradients of biases, norms' statistics).
    reductions = _primitives_on(runs["bfloat16"]["jaxpr"], bf16) & _REDUCTIONS
    assert not reductions, f"reductions on bfloat16 operands: {sorted(reductions)}"
    for metrics in runs["bfloat16"]["metrics"]:
        for name, value in metrics.items():
            assert value.dtype == (np.bool_ if name == "finite" else np.float32), name
    assert _float_dtypes(runs["bfloat16"]["state"]) == {jnp.dtype(jnp.float32)}


def test_bfloat16_training_tracks_float32(runs):
    m32, m16 = runs["float32"]["metrics"], runs["bfloat16"]["metrics"]
    assert all(bool(m["finite"]) for m in m32 + m16)
    # bfloat16 keeps 8 significant bits (2^-9 ≈ 0.2% per rounding). The terms are smooth
    # functions of keypoints that the float32 soft-argmax averages over 16x16x8 bins; measured at
    # step 1: ≤ 0.1% (sym and agree, differences of lengths), 3e-4 (phys), ≤ 3e-5 (loss, skel).
    for name in ("loss", "skel", "phys", "sym", "agree"):
        np.testing.assert_allclose(m16[0][name], m32[0][name], rtol=1e-2, err_msg=name)
    # ... yet the computation differs: bfloat16 did run.
    assert m16[0]["loss"] != m32[0]["loss"]
    # Gradient norms of all three steps (measured ≤ 0.5%; bias gradients summed in bfloat16
    # put them 2-28% off) and the losses after the updates (measured ≤ 0.02%).
    for step in range(STEPS):
        np.testing.assert_allclose(m16[step]["grad_norm"], m32[step]["grad_norm"], rtol=2e-2)
        np.testing.assert_allclose(m16[step]["loss"], m32[step]["loss"], rtol=1e-2)

    # Adam's first moments are running means of the gradients: the gradient directions agree.
    # The physique network's (steps 2-3) measured 0.9% off (55% with bfloat16 bias gradients).
    # The detector's (steps 1 and 3) mix in a gradient at parameters that already differ: Adam's
    # first update is ±lr per entry, and for entries with near-zero gradients bfloat16 rounding
    # picks the sign. Measured 17-26% off; only the direction is checked (cosine 0.97-0.99).
    def first_moments(state, module):
        moments = optax.tree.get_all_with_path(state.opt_state, "mu")
        (tree,) = [mu for path, mu in moments if any(getattr(k, "key", None) == module
                                                      for k in path)]
        flat = flax.traverse_util.flatten_dict(tree[module])
        return np.concatenate([np.ravel(v) for v in flat.values()])

    for module, max_error, min_cosine in (("physique", 0.05, 0.999), ("detector", 1.0, 0.9)):
        mu32 = first_moments(runs["float32"]["state"], module)
        mu16 = first_moments(runs["bfloat16"]["state"], module)
        assert np.linalg.norm(mu32) > 0, module
        error = np.linalg.norm(mu16 - mu32) / np.linalg.norm(mu32)
        cosine = mu16 @ mu32 / (np.linalg.norm(mu16) * np.linalg.norm(mu32))
        assert error < max_error and cosine > min_cosine, (module, error, cosine)

    # Both runs trained both modules.
    p0 = flax.traverse_util.flatten_dict(runs["initial"].params)
    for dtype in ("float32", "bfloat16"):
        p = flax.traverse_util.flatten_dict(runs[dtype]["state"].params)
        for module in ("detector", "physique"):
            moved = max(np.abs(p[k] - p0[k]).max() for k in p if k[0] == module)
            assert moved > 1e-4, (dtype, module)
