"""Tests for maskpose_jax.models: shapes, the soft-argmax against NumPy float64, gradients,
BatchNorm modes (including under a sharded jit), bfloat16 compute, and the PhysiqueNet.

Compilation dominates on CPU, so the tiny detector is initialised once per module and the
jitted apply functions are shared between tests. Initialisers use "rbg" keys: compiling an init
with threefry keys took ~8 s on CPU, with rbg ~2 s.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from maskpose_jax import models, skeleton

TINY = dict(resnet_depth=18, width=8, depth_bins=16, head_channels=32)
BATCH, SIZE, HEAT = 4, 64, 16  # tiny-model inputs; heatmaps are SIZE / 4


def _key(seed):
    return jax.random.key(seed, impl="rbg")


def _images(batch, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


@functools.lru_cache(maxsize=None)
def _apply_fn(norm, train, dtype=jnp.float32):
    """One jitted apply per (norm, mode, dtype), reused by every test."""
    model = models.Detector(**TINY, norm=norm, dtype=dtype)
    mutable = ["batch_stats"] if (norm == "batch" and train) else False
    return jax.jit(lambda v, x: model.apply(v, x, train=train, mutable=mutable))


@pytest.fixture(scope="module")
def tiny_variables():
    """BatchNorm variables of the tiny detector, final conv scaled so that the initial volumes
    are peaked (not near-uniform). GroupNorm layers have the same parameter tree."""
    model = models.Detector(**TINY, norm="batch")
    variables = jax.jit(lambda x: model.init(_key(0), x, train=False))(
        _images(BATCH, SIZE))
    params = jax.tree.map(lambda x: x, variables["params"])
    params["final"]["kernel"] = params["final"]["kernel"] * 1000.0
    return {"params": params, "batch_stats": variables["batch_stats"]}


def _soft_argmax_numpy(logits_hxwxJxD):
    """Brute force expectation over every cell, in float64."""
    logits = np.asarray(logits_hxwxJxD, np.float64)
    h, w, num_joints, d = logits.shape
    xs = -1 + 2 * np.arange(w) / (w - 1)
    ys = -1 + 2 * np.arange(h) / (h - 1)
    zs = -1 + 2 * np.arange(d) / (d - 1)
    keypoints = np.zeros((num_joints, 3))
    heatmaps = np.zeros((num_joints, h, w))
    for j in range(num_joints):
        vol = logits[:, :, j, :]
        p = np.exp(vol - vol.max())
        p /= p.sum()
        for i in range(h):
            for jj in range(w):
                for k in range(d):
                    keypoints[j] += p[i, jj, k] * np.array([xs[jj], ys[i], zs[k]])
        heatmaps[j] = p.sum(axis=-1)
    return keypoints, heatmaps


@pytest.mark.parametrize(
    "depth, width, norm, stem, size",
    [
        (18, 8, "group", "standard", 64),
        (18, 6, "batch", "standard", 32),
        (34, 4, "group", "standard", 32),
        (34, 4, "batch", "standard", 32),
        (50, 4, "group", "standard", 32),
        (50, 4, "batch", "standard", 64),
        (18, 4, "group", "light", 16),
    ],
)
def test_detector_output_shapes(depth, width, norm, stem, size):
    model = models.Detector(num_joints=5, depth_bins=8, resnet_depth=depth, width=width,
                            norm=norm, stem=stem, head_channels=16)
    images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.uint8)
    variables = jax.eval_shape(lambda x: model.init(_key(0), x, train=False), images)
    assert ("batch_stats" in variables) == (norm == "batch")
    for train in (False, True):
        out = jax.eval_shape(
            lambda v, x: model.apply(v, x, train=train, mutable=False if not train else
                                     ["batch_stats"] if norm == "batch" else False),
            variables, images)
        out = out[0] if isinstance(out, tuple) else out
        heat = size // 4 if stem == "standard" else size
        assert out["keypoints"].shape == (2, 5, 3) and out["keypoints"].dtype == jnp.float32
        assert out["heatmaps"].shape == (2, 5, heat, heat)
    backbone = models.ResNet(depth, width, norm, stem=stem)
    feats = jax.eval_shape(lambda x: backbone.init_with_output(
        _key(1), x, train=False)[0], jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    stride = 32 if stem == "standard" else 8
    assert feats.shape == (1, size // stride, size // stride, width * (32 if depth == 50 else 8))


def test_bottleneck_block_runs():
    block = models.Bottleneck(features=4, stride=2, norm="group")
    x = jnp.asarray(np.random.default_rng(9).normal(size=(2, 8, 8, 6)), jnp.float32)
    y, _ = jax.jit(lambda x: block.init_with_output(_key(0), x, train=False))(x)
    assert y.shape == (2, 4, 4, 16)
    assert np.all(np.isfinite(y)) and np.all(y >= 0) and np.any(y > 0)


def test_soft_argmax_matches_numpy_float64():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, (5, 7, 3, 4)).astype(np.float32)  # h != w: catches x/y swaps
    keypoints, heatmaps = jax.jit(models.soft_argmax_3d)(logits)
    ref_keypoints, ref_heatmaps = _soft_argmax_numpy(logits)
    np.testing.assert_allclose(keypoints, ref_keypoints, atol=2e-6)
    np.testing.assert_allclose(heatmaps, ref_heatmaps, atol=2e-6)


def test_soft_argmax_one_hot_gives_cell_coordinates():
    h, w, num_joints, d = 6, 9, 4, 5
    cells = [(0, 0, 0), (5, 8, 4), (2, 7, 1), (4, 3, 3)]  # (row, column, depth bin) per joint
    logits = np.zeros((h, w, num_joints, d), np.float32)
    for j, (i, jj, k) in enumerate(cells):
        logits[i, jj, j, k] = 200.0  # exp(-200) underflows to 0 in float32
    keypoints, heatmaps = models.soft_argmax_3d(jnp.asarray(logits, jnp.bfloat16))
    expected = [(-1 + 2 * jj / (w - 1), -1 + 2 * i / (h - 1), -1 + 2 * k / (d - 1))
                for i, jj, k in cells]
    np.testing.assert_allclose(keypoints, np.array(expected), atol=1e-6)
    for j, (i, jj, _) in enumerate(cells):
        one_hot = np.zeros((h, w))
        one_hot[i, jj] = 1.0
        np.testing.assert_allclose(heatmaps[j], one_hot, atol=1e-6)


def test_normalize_images():
    images = _images(2, 4, seed=10)
    expected = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(models.normalize_images(images), expected, atol=1e-5)
    np.testing.assert_allclose(models.normalize_images(images.astype(np.float32) / 255.0),
                               expected, atol=1e-5)
    assert models.normalize_images(images, jnp.bfloat16).dtype == jnp.bfloat16


def test_keypoints_in_range_and_examples_independent(tiny_variables):
    params = {"params": tiny_variables["params"]}
    images = _images(BATCH, SIZE, seed=2)
    out = _apply_fn("group", False)(params, images)
    keypoints = np.asarray(out["keypoints"])
    assert np.all(np.abs(keypoints) <= 1.0)
    assert keypoints.std(axis=(0, 1)).min() > 0.05  # the sharpened volumes do move keypoints
    np.testing.assert_allclose(np.asarray(out["heatmaps"]).sum(axis=(2, 3)), 1.0, atol=1e-5)
    # GroupNorm never mixes examples: replacing the last one leaves the others unchanged.
    other = images.copy()
    other[-1] = _images(1, SIZE, seed=11)[0]
    out_other = _apply_fn("group", False)(params, other)
    np.testing.assert_allclose(out_other["keypoints"][:-1], keypoints[:-1], atol=1e-6)
    assert np.abs(out_other["keypoints"][-1] - keypoints[-1]).max() > 1e-3


def test_gradients_reach_every_parameter(tiny_variables):
    model = models.Detector(**TINY)
    images = _images(2, SIZE, seed=3)
    rng = np.random.default_rng(4)
    w_kp = jnp.asarray(rng.normal(size=(2, 17, 3)), jnp.float32)
    w_hm = jnp.asarray(rng.normal(size=(2, 17, HEAT, HEAT)), jnp.float32)

    def loss(p):
        out = model.apply({"params": p}, images, train=True)
        return jnp.sum(out["keypoints"] * w_kp) + jnp.sum(out["heatmaps"] * w_hm)

    grads = jax.jit(jax.grad(loss))(tiny_variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), path

    physique = models.PhysiqueNet(widths=(8, 16))
    masks = jnp.asarray(rng.uniform(size=(2, 16, 16)), jnp.float32)
    target = jnp.asarray(rng.uniform(size=(2, 16, 16)), jnp.float32)
    p_params = jax.jit(physique.init)(_key(1), masks)["params"]
    p_grads = jax.jit(jax.grad(
        lambda p: jnp.sum((physique.apply({"params": p}, masks) - target) ** 2)))(p_params)
    for path, g in jax.tree_util.tree_leaves_with_path(p_grads):
        assert np.all(np.isfinite(g)) and np.any(g != 0), path


def test_batchnorm_train_and_eval_modes(tiny_variables):
    variables = tiny_variables
    train_fn, eval_fn = _apply_fn("batch", True), _apply_fn("batch", False)
    images = _images(BATCH, SIZE, seed=5)
    out, updates = train_fn(variables, images)
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
        variables["batch_stats"])

    # Running mean of the stem norm: momentum 0.9 from zero towards the batch mean of the
    # stem convolution, recomputed here with lax.conv.
    x = models.normalize_images(jnp.asarray(images))
    kernel = variables["params"]["backbone"]["stem_conv"]["kernel"]
    stem = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((3, 3), (3, 3)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(updates["batch_stats"]["backbone"]["stem_norm"]["mean"],
                               0.1 * np.asarray(stem).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)

    # Train mode normalizes with batch statistics: the running statistics do not matter, the
    # other examples do.
    changed = {**variables,
               "batch_stats": jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])}
    other = images.copy()
    other[-1] = _images(1, SIZE, seed=12)[0]
    np.testing.assert_allclose(train_fn(changed, images)[0]["keypoints"], out["keypoints"],
                               atol=1e-6)
    assert np.abs(train_fn(variables, other)[0]["keypoints"][:-1]
                  - out["keypoints"][:-1]).max() > 1e-3

    # Eval mode uses the running statistics. Set them to this batch's statistics (one
    # momentum-0.9 update from mean 0, var 0, divided by 0.1): eval then reproduces the
    # train-mode output, never looks at the other examples, and follows the running
    # statistics when they change.
    zeroed = {**variables, "batch_stats": jax.tree.map(jnp.zeros_like, variables["batch_stats"])}
    calibrated = {"params": variables["params"], "batch_stats": jax.tree.map(
        lambda u: u / 0.1, train_fn(zeroed, images)[1]["batch_stats"])}
    eval_out = eval_fn(calibrated, images)
    np.testing.assert_allclose(eval_out["keypoints"], out["keypoints"], atol=1e-4)
    np.testing.assert_allclose(eval_fn(calibrated, other)["keypoints"][:-1],
                               eval_out["keypoints"][:-1], atol=1e-6)
    shifted = {**calibrated, "batch_stats": jax.tree.map(lambda s: s * 1.5,
                                                         calibrated["batch_stats"])}
    assert np.abs(eval_fn(shifted, images)["keypoints"] - eval_out["keypoints"]).max() > 1e-3


def test_batchnorm_under_sharded_jit_uses_global_batch(tiny_variables):
    devices = np.array(jax.devices()[:4])
    assert devices.size == 4, "tests/conftest.py forces 4 CPU devices"
    mesh = Mesh(devices, ("data",))
    train_fn = _apply_fn("batch", True)
    images = _images(BATCH, SIZE, seed=6)
    single_out, single_stats = train_fn(tiny_variables, images)
    replicated = jax.device_put(tiny_variables, NamedSharding(mesh, P()))
    sharded_images = jax.device_put(images, NamedSharding(mesh, P("data")))
    out, stats = train_fn(replicated, sharded_images)
    assert len(out["keypoints"].sharding.device_set) == 4
    # Per-device statistics (one example each) would change the keypoints by ~0.1 or more.
    np.testing.assert_allclose(out["keypoints"], single_out["keypoints"], atol=1e-4)
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(single_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_compute_close_to_float32(tiny_variables):
    params = {"params": tiny_variables["params"]}
    images = _images(BATCH, SIZE, seed=7)
    abstract = jax.eval_shape(
        lambda x: models.Detector(**TINY, dtype=jnp.bfloat16).init(
            _key(0), x, train=False), images)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(abstract))
    kp32 = np.asarray(_apply_fn("group", False)(params, images)["keypoints"])
    out16 = _apply_fn("group", False, jnp.bfloat16)(params, images)
    assert out16["keypoints"].dtype == jnp.float32
    # Measured: mean error ~2% of the keypoints' spread, worst joint ~0.06.
    assert kp32.std() > 0.1
    error = np.abs(np.asarray(out16["keypoints"]) - kp32)
    assert error.mean() < 0.05 * kp32.std() and error.max() < 0.1


def test_physique_net_shape_range_and_jit():
    model = models.PhysiqueNet(widths=(8, 16, 32))
    rng = np.random.default_rng(8)
    masks = jnp.asarray(rng.uniform(size=(3, 32, 48)), jnp.float32)
    variables = jax.jit(model.init)(_key(0), masks)
    out = model.apply(variables, masks)
    assert out.shape == (3, 32, 48) and out.dtype == jnp.float32
    assert np.all((out > 0.0) & (out < 1.0))
    jitted = jax.jit(model.apply)
    np.testing.assert_allclose(jitted(variables, masks), out, atol=1e-5)
    np.testing.assert_allclose(jitted(variables, masks[..., None]), out, atol=1e-5)
    other = masks.at[-1].set(jnp.asarray(rng.uniform(size=(32, 48)), jnp.float32))
    np.testing.assert_allclose(jitted(variables, other)[:-1], out[:-1], atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 4"):
        model.apply(variables, masks[:, :30])


def test_template_prior_starts_at_the_template_and_is_learned():
    template = np.asarray(skeleton.STANDING_TEMPLATE, np.float64)
    sigma = 0.3
    model = models.Detector(**TINY, template=skeleton.STANDING_TEMPLATE, template_sigma=sigma)
    images = _images(2, SIZE, seed=5)
    variables = jax.jit(lambda x: model.init(_key(2), x, train=False))(images)
    params = jax.tree.map(lambda x: x, variables["params"])
    assert params["template_prior"].shape == (HEAT, HEAT, 17)
    # With the final convolution at zero the logits are the prior alone: every image gives the
    # expectation of the grid-sampled Gaussian around the template, and z = 0.
    params["final"]["kernel"] = jnp.zeros_like(params["final"]["kernel"])
    params["final"]["bias"] = jnp.zeros_like(params["final"]["bias"])
    out = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))(params, images)
    grid = -1.0 + 2.0 * np.arange(HEAT) / (HEAT - 1)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    for j, (tx, ty) in enumerate(template):
        p = np.exp(-((gx - tx) ** 2 + (gy - ty) ** 2) / (2 * sigma ** 2))
        p /= p.sum()
        expected = [np.sum(p * gx), np.sum(p * gy), 0.0]
        np.testing.assert_allclose(out["keypoints"][:, j], np.tile(expected, (2, 1)), atol=1e-5)
        # Near the crop's edge the truncated Gaussian's mean is pulled toward the centre.
        assert np.abs(np.asarray(expected[:2]) - (tx, ty)).max() < 0.1
    grad = jax.jit(jax.grad(lambda p: jnp.sum(
        model.apply({"params": p}, images, train=True)["keypoints"][..., 1])))(params)
    assert np.all(np.isfinite(grad["template_prior"]))
    assert np.abs(grad["template_prior"]).max() > 0
    plain = jax.eval_shape(lambda x: models.Detector(**TINY).init(_key(2), x, train=False), images)
    assert "template_prior" not in plain["params"]
