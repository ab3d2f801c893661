"""Tests of the Skeleton Mask renderer against a brute-force float64 NumPy drawing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskpose_jax import render, skeleton


def brute_force_mask(keypoints_Jx2, size, body_width=3e-3, bones=skeleton.BONES,
                     width_scales=skeleton.BONE_WIDTH_SCALES):
    """float64 [size, size]: every bone image materialized, then the maximum over bones."""
    kp = np.asarray(keypoints_Jx2, np.float64)
    coords = -1.0 + 2.0 * np.arange(size) / (size - 1)
    x, y = np.meshgrid(coords, coords)  # x[i, j] = coords[j], y[i, j] = coords[i]
    images = []
    for (i, j), scale in zip(bones, width_scales):
        a, b = kp[i], kp[j]
        v = b - a
        length2 = v @ v
        wx, wy = x - a[0], y - a[1]
        t = np.zeros_like(x) if length2 == 0 else np.clip((wx * v[0] + wy * v[1]) / length2, 0, 1)
        d2 = (wx - t * v[0]) ** 2 + (wy - t * v[1]) ** 2
        images.append(np.exp(-d2 / (body_width * scale)))
    return np.max(np.stack(images), axis=0)


def random_keypoints(seed, low=-0.7, high=0.7):
    return np.random.default_rng(seed).uniform(low, high, (skeleton.NUM_JOINTS, 2))


def test_pixel_grid():
    x, y = render.pixel_grid(5)
    np.testing.assert_allclose(x[2], [-1.0, -0.5, 0.0, 0.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(y[:, 3], [-1.0, -0.5, 0.0, 0.5, 1.0], atol=1e-7)
    assert np.all(np.asarray(x)[:, 0] == -1.0) and np.all(np.asarray(y)[-1] == 1.0)


@pytest.mark.parametrize("seed,size", [(0, 16), (1, 33), (2, 64), (3, 33)])
def test_matches_brute_force(seed, size):
    # Some joints outside [-1, 1]^2, and the neck->head bone of zero length.
    kp = random_keypoints(seed, -1.3, 1.3)
    kp[10] = kp[9]
    body_width = [3e-3, 1e-2][seed % 2]
    got = render.skeleton_mask(jnp.asarray(kp, jnp.float32), size, body_width)
    assert got.shape == (size, size) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, brute_force_mask(kp, size, body_width), atol=1e-5, rtol=0)


def test_custom_bones_and_scales():
    kp = random_keypoints(4)
    bones = ((0, 3), (3, 3), (5, 16), (8, 2))
    scales = (1.0, 0.3, 2.0, 0.7)
    got = render.skeleton_mask(jnp.asarray(kp, jnp.float32), 20, 5e-3, bones, scales)
    np.testing.assert_allclose(got, brute_force_mask(kp, 20, 5e-3, bones, scales), atol=1e-5)


def _fd_gradient(fn, x, step):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += step
        minus[idx] -= step
        grad[idx] = (fn(plus) - fn(minus)) / (2 * step)
    return grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(seed):
    size = 32
    rng = np.random.default_rng(100 + seed)
    kp = random_keypoints(100 + seed)
    weights = rng.normal(size=(size, size))
    body_width = 4e-3

    def loss(k, w=body_width):
        return np.sum(weights * brute_force_mask(k, size, w))

    grad_kp, grad_width = jax.grad(
        lambda k, w: jnp.sum(jnp.asarray(weights, jnp.float32) * render.skeleton_mask(k, size, w)),
        argnums=(0, 1))(jnp.asarray(kp, jnp.float32), jnp.float32(body_width))
    fd_kp = _fd_gradient(loss, kp, 1e-6)
    fd_width = _fd_gradient(lambda w: loss(kp, w[0]), [body_width], 1e-8)[0]
    scale = np.abs(fd_kp).max()
    assert scale > 1.0  # the loss does depend on the joints
    np.testing.assert_allclose(grad_kp, fd_kp, rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(grad_width, fd_width, rtol=1e-3)


def test_degenerate_bones_are_finite():
    centre = np.array([0.13, -0.21])
    kp = jnp.asarray(np.tile(centre, (skeleton.NUM_JOINTS, 1)), jnp.float32)  # all bones length 0
    value, grad = jax.value_and_grad(lambda k: jnp.sum(render.skeleton_mask(k, 16) ** 2))(kp)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # The gradient of a zero-length bone goes to its first joint; summed over joints it is the
    # derivative of moving the one drawn point (full-width bones, s = 3e-3).
    x, y = (np.asarray(c, np.float64) for c in render.pixel_grid(16))
    fd = _fd_gradient(
        lambda c: np.sum(np.exp(-2 * ((x - c[0]) ** 2 + (y - c[1]) ** 2) / 3e-3)), centre, 1e-6)
    assert np.abs(fd).min() > 1.0
    np.testing.assert_allclose(np.asarray(grad).sum(0), fd, rtol=1e-3)


def test_jit_matches_no_jit():
    kp = jnp.asarray(random_keypoints(5, -1.1, 1.1), jnp.float32)
    target = jnp.asarray(np.random.default_rng(5).uniform(size=(24, 24)), jnp.float32)

    def loss(k):
        return jnp.mean((render.skeleton_mask(k, 24) - target) ** 2)

    # A one-ulp difference in d^2 can cross a step of the 5 index bits: 2^-18 of q, < 1.5e-6 in S.
    np.testing.assert_allclose(jax.jit(render.skeleton_mask, static_argnums=1)(kp, 24),
                               render.skeleton_mask(kp, 24), atol=1.5e-6)
    grad = jax.grad(loss)(kp)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(kp), grad,
                               rtol=1e-4, atol=1e-5 * np.abs(grad).max())


def test_vmap_matches_loop():
    kp_Bx17x2 = jnp.asarray(np.stack([random_keypoints(s) for s in range(3)]), jnp.float32)
    widths_B = jnp.asarray([2e-3, 3e-3, 5e-3], jnp.float32)
    batched = jax.vmap(render.skeleton_mask, in_axes=(0, None, 0))(kp_Bx17x2, 20, widths_B)
    for b in range(3):
        single = render.skeleton_mask(kp_Bx17x2[b], 20, widths_B[b])
        np.testing.assert_allclose(batched[b], single, atol=1.5e-6)

    def loss(k, w):
        return jnp.sum(render.skeleton_mask(k, 20, w) ** 3)

    grads = jax.vmap(jax.grad(loss))(kp_Bx17x2, widths_B)
    for b in range(3):
        single = jax.grad(loss)(kp_Bx17x2[b], widths_B[b])
        np.testing.assert_allclose(grads[b], single, rtol=1e-4, atol=1e-5 * np.abs(single).max())


def _isolated_forearm():
    """Left forearm (12 -> 13) vertical at x = 0.5, left shin (5 -> 6) at x = -0.5, rest far."""
    kp = np.full((skeleton.NUM_JOINTS, 2), -0.9)
    kp[:, 0] += np.linspace(0, 0.2, skeleton.NUM_JOINTS)
    kp[12] = (0.5, -0.5)
    kp[13] = (0.5, 0.5)
    kp[5] = (-0.5, -0.5)   # left shin (5 -> 6), full width, vertical at x = -0.5
    kp[6] = (-0.5, 0.5)
    return kp


@pytest.mark.parametrize("body_width", [3e-3, 8e-3])
def test_width_and_per_bone_scales(body_width):
    size = 41  # pixel pitch 0.05; row 20 is y = 0 and column 30 is x = 0.5, column 10 x = -0.5
    mask = np.asarray(render.skeleton_mask(jnp.asarray(_isolated_forearm(), jnp.float32),
                                           size, body_width))
    offsets = 0.05 * np.arange(1, 4)
    forearm = mask[20, 31:34]
    shin = mask[20, 11:14]
    assert skeleton.BONE_WIDTH_SCALES[skeleton.BONES.index((12, 13))] == 0.5
    np.testing.assert_allclose(forearm, np.exp(-offsets ** 2 / (0.5 * body_width)), atol=1e-5)
    np.testing.assert_allclose(shin, np.exp(-offsets ** 2 / body_width), atol=1e-5)
    assert np.all(forearm < shin)


def test_on_bone_is_one_and_far_is_zero():
    size = 33  # pitch 1/16: joints on pixel centres
    kp = _isolated_forearm()
    mask = np.asarray(render.skeleton_mask(jnp.asarray(kp, jnp.float32), size))
    np.testing.assert_allclose(mask[8:25, 24], 1.0, atol=1e-6)  # x = 0.5, y in [-0.5, 0.5]
    assert mask[32, 32] < 1e-6 and mask[0, 32] < 1e-6 and mask[16, 16] < 1e-6


def test_rejects_bad_static_arguments():
    kp = jnp.zeros((skeleton.NUM_JOINTS, 2))
    with pytest.raises(ValueError):
        render.skeleton_mask(kp, 1)
    with pytest.raises(ValueError):
        render.skeleton_mask(kp, 8, bones=((0, 17),), width_scales=(1.0,))
    with pytest.raises(ValueError):
        render.skeleton_mask(kp, 8, bones=((0, 1),), width_scales=(1.0, 1.0))
