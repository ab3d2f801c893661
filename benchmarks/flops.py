"""Measured float32 peak of this machine, as JAX reaches it, and the renderer's arithmetic floor.

    python -m benchmarks.flops            # prints both peaks and the floor of 32 × 256² × 24

Two ceilings, both jitted JAX on the default device:
- `matmul_peak`: a large float32 matmul (XLA hands it to a BLAS-like library: oneDNN / Eigen
  on CPU with AVX-512 where the CPU has it, cuBLAS on GPU). The machine's peak.
- `fma_peak`: an elementwise kernel of independent FMA chains, compiled by XLA's own fusion
  emitter, the code path the Skeleton Mask forward takes. On XLA:CPU fusions are emitted with
  256-bit vectors (`prefer-vector-width=256` in the generated LLVM IR), so this is the honest
  ceiling for an elementwise workload there; the matmul figure would overstate it by the
  512-bit datapath that only the library kernels use.

FLOPs count an FMA as 2, as peak figures do.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

# Per distance evaluation (one pixel × one bone) of `render._encoded_min`, counted from its
# code and checked against the inner loop XLA:CPU generates (per 8 pixels × 8 bones: 24 FMAs,
# 8 multiplies, 8 subtractions, 8 and-not (abs), 8 integer max, 8 ternary-logic and-or,
# 8 integer min). The row terms (y sy + s0, n0 - y sx) are loop-invariant along a row and
# hoisted by the compiler: 2 FMAs per row and bone, 1/N of the per-pixel work, not counted.
FORWARD_OPS = {
    "fma": 3,       # along = x sx + row_s; across = x sy + row_n; q = across² + excess²
    "mul": 1,       # excess²
    "sub": 1,       # |along| - h
    "abs": 1,       # |along| (sign-bit clear)
    "max": 1,       # max(excess, 0) on the int32 bits
    "and_or": 1,    # (bits & ~31) | b, one ternary-logic instruction
    "min": 1,       # running minimum
}
# The projection-clamp-residual form the forward used before (per pixel and bone as compiled:
# 1 subtraction, 1 FMA for the projection (wy vy hoisted), 1 multiply by 1/|v|², max and min
# (the clamp, plus an unordered compare and a masked move for NaN), 2 FMAs for the residual,
# 1 multiply + 1 FMA for its square, 1 multiply by 1/s_b, and the same encode and min).
PREVIOUS_FORWARD_OPS = {"fma": 4, "mul": 3, "sub": 1, "max": 1, "min_clamp": 1,
                        "nan_check": 2, "and_or": 1, "min": 1}


def flops(ops):
    """FLOPs of an op count, an FMA as 2 and every other op as 1."""
    return sum(2 * n if name == "fma" else n for name, n in ops.items())


def arithmetic_flops(ops):
    """FLOPs of the float arithmetic alone (FMA 2, mul, sub, add 1), bit and compare ops free."""
    return sum({"fma": 2, "mul": 1, "sub": 1, "add": 1}.get(name, 0) * n
               for name, n in ops.items())


def _best_seconds(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(n=None, repeats=10):
    """Best float32 FLOP/s of a jitted n×n matmul (n: 2048 on CPU, 8192 on accelerators)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    seconds = _best_seconds(jax.jit(jnp.matmul), (a, b), repeats)
    return 2.0 * n ** 3 / seconds


def fma_peak(elements=None, chains=8, rounds=32, repeats=10):
    """Best float32 FLOP/s of an elementwise fusion of independent FMA chains.

    Each element starts `chains` independent chains of `rounds` dependent FMAs (independent
    chains hide the FMA latency, as the bones of the renderer do), then sums them: the data
    are read and written once, so memory traffic is negligible.
    """
    elements = elements or (1 << 21 if jax.default_backend() == "cpu" else 1 << 26)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=elements), jnp.float32)

    def kernel(x):
        values = [x * (1.0 + 1e-3 * c) for c in range(chains)]
        for _ in range(rounds):
            values = [v * 0.999 + 1e-4 * (c + 1) for c, v in enumerate(values)]
        return sum(values)

    seconds = _best_seconds(jax.jit(kernel), (x,), repeats)
    return 2.0 * elements * chains * rounds / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--bones", type=int, default=24)
    args = parser.parse_args()
    mm, fma = matmul_peak(), fma_peak()
    evaluations = args.batch * args.size ** 2 * args.bones
    print(f"{jax.devices()[0]}: matmul peak {mm / 1e9:.0f} GFLOP/s, "
          f"elementwise FMA peak {fma / 1e9:.0f} GFLOP/s")
    for name, ops in (("forward", FORWARD_OPS), ("previous forward", PREVIOUS_FORWARD_OPS)):
        total = evaluations * flops(ops)
        print(f"{name}: {flops(ops)} flops per evaluation ({arithmetic_flops(ops)} float "
              f"arithmetic), {evaluations / 1e6:.1f} M evaluations: floor "
              f"{1e3 * total / fma:.2f} ms at the FMA peak, {1e3 * total / mm:.2f} ms at the "
              f"matmul peak")


if __name__ == "__main__":
    main()
