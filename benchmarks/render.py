"""Skeleton Mask renderer: time and memory against the dense bones×pixels formulation.

    python benchmarks/render.py            # or: python -m benchmarks.render [--batch 32]

For a batch of jittered standing skeletons and crop sizes 64/128/256 it prints a markdown table
of forward and forward+gradient milliseconds (median of timed runs after compilation) and
compiled memory (XLA temporaries plus outputs) of `render.skeleton_mask` (vmapped) beside the
dense formulation: every bone image materialized as [B, bones, H, W], max over bones,
differentiated by plain autodiff (what the original PyTorch code does).
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from maskpose_jax import render, skeleton

# A standing person facing the camera, normalized crop coordinates (x right, y down).
_STANDING_Jx2 = np.array([
    (0.0, 0.05),                                   # pelvis
    (-0.12, 0.07), (-0.13, 0.45), (-0.13, 0.85),   # right hip, knee, ankle (image left)
    (0.12, 0.07), (0.13, 0.45), (0.13, 0.85),      # left hip, knee, ankle
    (0.0, -0.2), (0.0, -0.45), (0.0, -0.55), (0.0, -0.72),  # spine, thorax, neck, head
    (0.2, -0.43), (0.27, -0.15), (0.3, 0.1),       # left shoulder, elbow, wrist
    (-0.2, -0.43), (-0.27, -0.15), (-0.3, 0.1),    # right shoulder, elbow, wrist
])


def random_poses(batch, seed=0):
    """[batch, 17, 2] standing skeletons with jittered joints, scale and position."""
    rng = np.random.default_rng(seed)
    jitter = rng.normal(0.0, 0.07, (batch, skeleton.NUM_JOINTS, 2))
    scale = rng.uniform(0.85, 1.1, (batch, 1, 1))
    shift = rng.normal(0.0, 0.05, (batch, 1, 2))
    return (scale * (_STANDING_Jx2 + jitter) + shift).astype(np.float32)


def dense_skeleton_mask(keypoints_Jx2, size, body_width=3e-3, bones=skeleton.BONES,
                        width_scales=skeleton.BONE_WIDTH_SCALES):
    """The reference formulation: a [bones, H, W] tensor of bone images, max over bones.

    Pixel coordinates enter as a row and a column that broadcast: with full H×W grids XLA
    materializes more of the bones×H×W intermediates and this baseline runs 2-18× slower.
    """
    coords_N = jnp.arange(size, dtype=jnp.float32) * (2.0 / (size - 1)) - 1.0
    x_HxW, y_HxW = coords_N[None, :], coords_N[:, None]
    start = keypoints_Jx2[np.array([i for i, _ in bones])][:, :, None, None]
    end = keypoints_Jx2[np.array([j for _, j in bones])][:, :, None, None]
    v = end - start
    wx, wy = x_HxW - start[:, 0], y_HxW - start[:, 1]
    t = jnp.clip((wx * v[:, 0] + wy * v[:, 1]) / jnp.maximum(v[:, 0] ** 2 + v[:, 1] ** 2, 1e-12),
                 0.0, 1.0)
    d2 = (wx - t * v[:, 0]) ** 2 + (wy - t * v[:, 1]) ** 2
    widths = body_width * jnp.asarray(width_scales, jnp.float32)[:, None, None]
    return jnp.max(jnp.exp(-d2 / widths), axis=0)


def _median_ms(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _compiled_mb(fn, args):
    """XLA temporaries plus outputs of the compiled function, MB."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return (stats.temp_size_in_bytes + stats.output_size_in_bytes) / 2**20


def measure(renderer, keypoints, target, repeats):
    """{fwd_ms, grad_ms, fwd_mb, grad_mb} of one batched renderer at target's size."""
    size = target.shape[-1]

    def forward(kp):
        return jax.vmap(lambda k: renderer(k, size))(kp)

    def loss(kp):
        return jnp.mean((forward(kp) - target) ** 2)

    fwd, grad = jax.jit(forward), jax.jit(jax.value_and_grad(loss))
    return dict(fwd_ms=_median_ms(fwd, (keypoints,), repeats),
                grad_ms=_median_ms(grad, (keypoints,), repeats),
                fwd_mb=_compiled_mb(forward, (keypoints,)),
                grad_mb=_compiled_mb(jax.value_and_grad(loss), (keypoints,)))


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    keypoints = jnp.asarray(random_poses(args.batch))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}: {_cpu_name()}, "
          f"batch {args.batch}, {skeleton.NUM_BONES} bones\n")
    print("| size | fwd ms (ours / dense) | speed-up | fwd+grad ms (ours / dense) | speed-up "
          "| fwd MB (ours / dense) | fwd+grad MB (ours / dense) | memory ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        target = jnp.asarray(np.random.default_rng(size).uniform(size=(args.batch, size, size)),
                             jnp.float32)
        ours = measure(render.skeleton_mask, keypoints, target, args.repeats)
        dense = measure(dense_skeleton_mask, keypoints, target, args.repeats)
        diff = float(jnp.max(jnp.abs(
            jax.vmap(lambda k: render.skeleton_mask(k, size))(keypoints)
            - jax.vmap(lambda k: dense_skeleton_mask(k, size))(keypoints))))
        print(f"| {size} | {ours['fwd_ms']:.1f} / {dense['fwd_ms']:.1f} "
              f"| {dense['fwd_ms'] / ours['fwd_ms']:.0f}× "
              f"| {ours['grad_ms']:.1f} / {dense['grad_ms']:.1f} "
              f"| {dense['grad_ms'] / ours['grad_ms']:.0f}× "
              f"| {ours['fwd_mb']:.0f} / {dense['fwd_mb']:.0f} "
              f"| {ours['grad_mb']:.0f} / {dense['grad_mb']:.0f} "
              f"| 1/{dense['grad_mb'] / ours['grad_mb']:.0f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
