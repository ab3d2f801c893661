"""Skeleton Mask renderer: time and memory against the dense formulation and the reference.

    python -m benchmarks.render [--batch 32] [--sizes 64 128 256] [--sections dense reference floor]

For a batch of jittered standing skeletons and crop sizes 64/128/256 it prints three markdown
tables:
- dense: forward and forward+gradient milliseconds (median of timed runs after compilation) and
  compiled memory (XLA temporaries plus outputs) of `render.skeleton_mask` (vmapped) beside the
  dense formulation: every bone image materialized as [B, bones, H, W], max over bones,
  differentiated by plain autodiff (what the original PyTorch code does).
- reference: our forward and forward+gradient beside the original authors' PyTorch figures
  (`REFERENCE`, measured on the 2-core CPU of benchmarks/README.md), with the peak memory of a
  process doing forward+gradient, measured as theirs was: fresh subprocesses per size read
  their peak RSS (`peak_rss_mb`). The baseline is a process that only imported JAX and ran a
  trivial jit. On an accelerator the device's peak bytes in use are printed too.
- floor: the forward against its arithmetic floor, distance evaluations (B × N² × bones) × flops
  per evaluation (`benchmarks.flops.FORWARD_OPS`) ÷ the measured elementwise FMA peak, both
  measured in this process one after the other (the shared machine's load moves both alike).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import flops
from maskpose_jax import render, skeleton

# The original authors' PyTorch renderer (dense, 32 skeletons × 25 bones), from the issue:
# size -> (forward ms, forward+gradient ms, peak process memory GB).
REFERENCE = {64: (148.0, 204.0, 0.8), 128: (1060.0, 1955.0, 1.2), 256: (4348.0, 8826.0, 4.1)}
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def _best_and_median_ms(fn, args, repeats):
    """Best and median wall time of `repeats` calls after a warm-up call, ms."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), 1e3 * statistics.median(times)


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
    return dict(fwd_ms=_best_and_median_ms(fwd, (keypoints,), repeats)[1],
                grad_ms=_best_and_median_ms(grad, (keypoints,), repeats)[1],
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


def _targets(batch, size):
    return jnp.asarray(np.random.default_rng(size).random((batch, size, size), np.float32))


def peak_rss_mb():
    """This process's peak resident set, MB.

    Linux: VmHWM of /proc/self/status. `ru_maxrss` would do in a process started from a shell,
    but it survives fork + exec, so a child of a big process reports at least its parent's RSS
    at the fork; VmHWM belongs to the process image. Elsewhere `ru_maxrss`, read as KB.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_peak_memory(renderer_name, batch, size):
    """Runs forward+gradient three times in this (fresh) process; returns its peak memory.

    Returns:
        {"rss_mb": peak resident set of the process (MB), "device_mb": the device's peak bytes
        in use (MB) where the backend reports it, else None}.
    """
    if renderer_name != "baseline":
        renderer = {"ours": render.skeleton_mask, "dense": dense_skeleton_mask}[renderer_name]
        keypoints, target = jnp.asarray(random_poses(batch)), _targets(batch, size)

        def loss(kp):
            return jnp.mean((jax.vmap(lambda k: renderer(k, size))(kp) - target) ** 2)

        grad = jax.jit(jax.value_and_grad(loss))
        for _ in range(3):
            jax.block_until_ready(grad(keypoints))
    else:
        jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(3)))
    stats = jax.devices()[0].memory_stats() or {}
    device_mb = stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None
    return {"rss_mb": peak_rss_mb(), "device_mb": device_mb}


def peak_memory(renderer_name, batch, size, runs=3):
    """`child_peak_memory` in `runs` fresh subprocesses (ru_maxrss is a whole-process high-water
    mark); the median and the largest of each figure (the allocator's arenas vary run to run)."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.render", "--child", renderer_name,
             "--batch", str(batch), "--sizes", str(size)],
            cwd=_REPO_ROOT, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    summary = {}
    for key in ("rss_mb", "device_mb"):
        values = [r[key] for r in results if r[key] is not None]
        summary[key] = (statistics.median(values), max(values)) if values else None
    return summary


def dense_table(keypoints, sizes, repeats):
    print("| size | fwd ms (ours / dense) | speed-up | fwd+grad ms (ours / dense) | speed-up "
          "| fwd MB (ours / dense) | fwd+grad MB (ours / dense) | memory ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        target = _targets(keypoints.shape[0], size)
        ours = measure(render.skeleton_mask, keypoints, target, repeats)
        dense = measure(dense_skeleton_mask, keypoints, target, repeats)
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


def reference_table(keypoints, sizes, repeats):
    batch = keypoints.shape[0]
    base_mb = peak_memory("baseline", batch, sizes[0])["rss_mb"][0]
    print(f"Baseline process (import jax, one trivial jit): {base_mb:.0f} MB peak RSS. Peak "
          f"memory: median of 3 fresh processes (largest in brackets).\n")
    print("| size | fwd ms (ours / reference) | speed-up | fwd+grad ms (ours / reference) "
          "| speed-up | peak process MB (ours / reference) | memory ratio | ours above baseline MB "
          "| device peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        ours = measure(render.skeleton_mask, keypoints, _targets(batch, size), repeats)
        memory = peak_memory("ours", batch, size)
        rss_mb, rss_max_mb = memory["rss_mb"]
        ref_fwd, ref_grad, ref_gb = REFERENCE.get(size, (float("nan"),) * 3)
        device = "—" if memory["device_mb"] is None else f"{memory['device_mb'][0]:.0f}"
        print(f"| {size} | {ours['fwd_ms']:.1f} / {ref_fwd:,.0f} "
              f"| {ref_fwd / ours['fwd_ms']:.0f}× "
              f"| {ours['grad_ms']:.1f} / {ref_grad:,.0f} | {ref_grad / ours['grad_ms']:.0f}× "
              f"| {rss_mb:.0f} ({rss_max_mb:.0f}) / {1024 * ref_gb:,.0f} "
              f"| 1/{1024 * ref_gb / rss_mb:.1f} | {rss_mb - base_mb:.0f} | {device} |",
              flush=True)


def floor_table(keypoints, sizes, repeats):
    batch = keypoints.shape[0]
    per_eval = flops.flops(flops.FORWARD_OPS)
    print(f"{per_eval} flops per distance evaluation (an FMA counts 2; "
          f"{flops.arithmetic_flops(flops.FORWARD_OPS)} of them float arithmetic).\n")
    print("| size | evaluations (M) | FMA peak GFLOP/s | matmul peak GFLOP/s | floor ms "
          "| forward ms (best / median) | forward ÷ floor |")
    print("|---|---|---|---|---|---|---|")
    matmul = flops.matmul_peak()
    for size in sizes:
        fma = flops.fma_peak()
        forward = jax.jit(jax.vmap(lambda k: render.skeleton_mask(k, size)))
        best, median = _best_and_median_ms(forward, (keypoints,), max(repeats, 20))
        evaluations = batch * size * size * skeleton.NUM_BONES
        floor_ms = 1e3 * evaluations * per_eval / fma
        print(f"| {size} | {evaluations / 1e6:.1f} | {fma / 1e9:.0f} | {matmul / 1e9:.0f} "
              f"| {floor_ms:.2f} | {best:.2f} / {median:.2f} | {best / floor_ms:.2f} |",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sections", nargs="+", default=["dense", "reference", "floor"],
                        choices=["dense", "reference", "floor"])
    parser.add_argument("--child", choices=["ours", "dense", "baseline"],
                        help=argparse.SUPPRESS)  # internal: one peak-memory measurement
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_peak_memory(args.child, args.batch, args.sizes[0])))
        return

    keypoints = jnp.asarray(random_poses(args.batch))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}: {_cpu_name()}, "
          f"{os.cpu_count()} CPUs, batch {args.batch}, {skeleton.NUM_BONES} bones, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    tables = {"dense": dense_table, "reference": reference_table, "floor": floor_table}
    for section in args.sections:
        print(f"## {section}\n")
        tables[section](keypoints, args.sizes, args.repeats)
        print()


if __name__ == "__main__":
    main()
