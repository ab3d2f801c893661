"""The Skeleton Mask (DESIGN §3): a differentiable drawing of the 2D skeleton in a square crop.

Keypoints are in normalized crop coordinates: x right, y down, the crop's corner pixel centres
at ±1. Pixel grid: pixel (row i, column j) of a size-N mask sits at

    x = -1 + 2 j / (N - 1),    y = -1 + 2 i / (N - 1),

so an N×N mask samples [-1, 1]² with corners exactly at ±1 (`pixel_grid`). For every bone
b = (i, j), d_b(p) is the distance from pixel p to the segment x_i–x_j and

    S(p) = max_b exp(-d_b(p)² / s_b) = exp(-min_b d_b(p)² / s_b),  s_b = body_width * scale_b,

with `body_width` in normalized units² (default 3e-3) and scale_b 0.5 for upper arms and
forearms (`skeleton.BONE_WIDTH_SCALES`).

How it is computed (one example; batch with `jax.vmap` at the call site):
- Forward: a running minimum over bones of q_b = d_b² / s_b into one H×W array, never a
  bones×H×W tensor. Per bone, with k = 1/sqrt(s_b), unit direction u, length L and start x_i,
  two affine functions of the pixel p = (x, y) give its scaled offsets from the bone's middle,
  along it, s = k (u·(p - x_i) - L/2), and across it, n = k (u × (p - x_i)); then
  q_b = n² + max(|s| - kL/2, 0)². That is 3 FMAs, a multiply, a subtraction, an absolute value
  and a max per pixel and bone, against the projection-clamp-residual form's 4 FMAs, 4
  multiplies/subtractions and a NaN-checked clamp (1.5–1.7× faster, benchmarks/README.md);
  the max acts on the int32 bit pattern (a negative float is a negative int), one integer op.
  The bone index rides in the low 5 mantissa bits of q: for q >= 0 the float32 bit pattern
  orders like an int32, so `min((bits(q_b) & ~31) | b)` gives the minimum and its argmin in
  one integer min. q loses 2^-19 of itself (S moves by < 1e-6).
- Backward (`jax.custom_vjp`): that encoded H×W int32 is the only per-pixel residual. Each
  pixel gathers its nearest bone's constants, recomputes the closest point
  c = (1-t) x_i + t x_j and takes dq/dx_i = -2 (1-t)(p - c) / s_b, dq/dx_j = -2 t (p - c) / s_b
  (t minimizes the distance, so its own derivative drops out); a segment-sum over the bone
  index gives per-bone totals, which add into the J keypoints. Where bones tie, one of them
  gets the pixel's gradient. The pixels are walked in row blocks of about 8K (`lax.scan`):
  the temporaries, ~52 bytes a pixel of one block (against ~650 a pixel of the whole mask for
  the dense bones×H×W formulation), are a few buffers reused block after block: 32 MB in all
  (the residual and the output included) for a batch of 32 at 256² instead of 112 MB, and
  fewer fresh pages to fault in on every call, where much of the time went.
- Choices measured on a 2-core CPU (XLA:CPU, batch 32, 64²–256²):
  * The bones are a `lax.fori_loop` over passes of 8, each pass one fused loop over the
    pixels. A loop-free unroll over all 24 bones renders as fast, but XLA then fuses the whole
    min/argmin chain into every consumer of the residual and recomputes it there (6–13×
    slower forward+gradient); `lax.optimization_barrier` does not stop that on XLA:CPU.
  * Segment-sum (scatter-add) over bones beats a one-hot over joints (XLA:CPU does not fuse a
    select into a reduction, so every one-hot slice is materialized: 5–10× slower) and a
    variadic reduce over bones × 4 outputs (no temporaries, but scalar code: ~2× slower at
    64² and 128²; at 256² it was on par with the unblocked scatter path, whose 100 MB of
    temporaries were fresh pages that fault on every call). Masked per-bone sums (a dense
    pass per bone) are 3–13× slower still. One row gather of the bone constants beats
    per-column gathers, and a 24-way select chain gets fused into several consumers and
    recomputed (10× slower).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from maskpose_jax import skeleton

# Low mantissa bits of q that carry the bone index in the forward pass.
_INDEX_BITS = 5
_MAX_BONES = 1 << _INDEX_BITS
_INDEX_MASK = _MAX_BONES - 1
# A segment shorter than 1e-6 (normalized units) is treated as a point: t = 0, all to x_i.
_MIN_SQUARED_LENGTH = 1e-12
# Bones drawn per pass over the pixels (one fused loop body).
_BONES_PER_PASS = 8
# Pixels per row block of the backward pass (its temporaries are ~52 bytes a pixel).
_BLOCK_PIXELS = 8192


def pixel_grid(size):
    """Normalized coordinates of the pixel centres of a size×size crop.

    Args:
        size: N, a Python int >= 2.

    Returns:
        (x_HxW, y_HxW), float32 [N, N]: x = -1 + 2 j / (N-1) at column j (right) and
        y = -1 + 2 i / (N-1) at row i (down).
    """
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    return _pixel_rows(size, 0, size)


def _pixel_rows(size, first_row, num_rows):
    """(x, y) [num_rows, N]: rows first_row.. of the size-N grid (first_row may be traced)."""
    step = 2.0 / (size - 1)
    x_RxN = lax.broadcasted_iota(jnp.float32, (num_rows, size), 1) * step - 1.0
    rows_RxN = lax.broadcasted_iota(jnp.int32, (num_rows, size), 0) + first_row
    return x_RxN, rows_RxN.astype(jnp.float32) * step - 1.0


def _row_blocks(size):
    """How many equal row blocks the backward pass walks through: about _BLOCK_PIXELS each."""
    wanted = -(-size * size // _BLOCK_PIXELS)
    return max(d for d in range(1, min(wanted, size) + 1) if size % d == 0)


def _bone_table(keypoints_Jx2, body_width, bones, width_scales):
    """Per bone: start x_i [NB,2], direction v = x_j - x_i [NB,2], 1/|v|² [NB], 1/s_b [NB]."""
    start_Bx2 = keypoints_Jx2[np.array([i for i, _ in bones])]
    dir_Bx2 = keypoints_Jx2[np.array([j for _, j in bones])] - start_Bx2
    sq_len_B = jnp.sum(dir_Bx2 * dir_Bx2, axis=-1)
    long_enough = sq_len_B > _MIN_SQUARED_LENGTH
    inv_sq_len_B = jnp.where(long_enough, 1.0 / jnp.where(long_enough, sq_len_B, 1.0), 0.0)
    inv_width_B = 1.0 / (body_width * jnp.asarray(width_scales, jnp.float32))
    return start_Bx2, dir_Bx2, inv_sq_len_B, inv_width_B


def _closest_point(x, y, ax, ay, vx, vy, inv_sq_len):
    """Segment parameter t in [0, 1] of the closest point and the offset p - c (arrays like x)."""
    wx = x - ax
    wy = y - ay
    t = jnp.clip((wx * vx + wy * vy) * inv_sq_len, 0.0, 1.0)
    return t, wx - t * vx, wy - t * vy


def _distance_coefficients(keypoints_Jx2, body_width, bones, width_scales):
    """[NB, 5] per bone (sx, sy, s0, n0, h): s = x sx + y sy + s0, n = x sy - y sx + n0.

    With k = 1/sqrt(s_b), unit direction u, length L and start x_i: s = k (u·(p - x_i) - L/2),
    n = k (u × (p - x_i)), h = kL/2, so that d_b(p)² / s_b = n² + max(|s| - h, 0)². A segment
    shorter than 1e-6 gets u = (1, 0) and L = 0: the distance to its start.
    """
    start_Bx2 = keypoints_Jx2[np.array([i for i, _ in bones])]
    dir_Bx2 = keypoints_Jx2[np.array([j for _, j in bones])] - start_Bx2
    sq_len_B = jnp.sum(dir_Bx2 * dir_Bx2, axis=-1)
    long_enough = sq_len_B > _MIN_SQUARED_LENGTH
    len_B = jnp.sqrt(jnp.where(long_enough, sq_len_B, 1.0))
    k_B = lax.rsqrt(body_width * jnp.asarray(width_scales, jnp.float32))
    sx_B = k_B * jnp.where(long_enough, dir_Bx2[:, 0] / len_B, 1.0)
    sy_B = k_B * jnp.where(long_enough, dir_Bx2[:, 1] / len_B, 0.0)
    h_B = 0.5 * k_B * jnp.where(long_enough, len_B, 0.0)
    s0_B = -(start_Bx2[:, 0] * sx_B + start_Bx2[:, 1] * sy_B) - h_B
    n0_B = start_Bx2[:, 1] * sx_B - start_Bx2[:, 0] * sy_B
    return jnp.stack([sx_B, sy_B, s0_B, n0_B, h_B], axis=-1)


def _encoded_min(keypoints_Jx2, body_width, size, bones, width_scales):
    """int32 [N, N]: min over bones of (bits(d_b² / s_b) & ~31) | b."""
    coef_Bx5 = _distance_coefficients(keypoints_Jx2, body_width, bones, width_scales)
    per_pass = min(_BONES_PER_PASS, len(bones))
    num_passes = -(-len(bones) // per_pass)
    # Padding repeats the last bone under higher indices: equal q, so it never wins the min.
    coef_Bx5 = jnp.concatenate(
        [coef_Bx5, jnp.repeat(coef_Bx5[-1:], num_passes * per_pass - len(bones), axis=0)])

    def one_pass(p, code_HxW):
        # The grid is built inside the body so that it fuses instead of being read from memory.
        x_HxW, y_HxW = pixel_grid(size)
        for offset in range(per_pass):
            b = p * per_pass + offset
            sx, sy, s0, n0, h = (coef_Bx5[b, m] for m in range(5))
            along_HxW = x_HxW * sx + (y_HxW * sy + s0)
            across_HxW = x_HxW * sy + (n0 - y_HxW * sx)
            excess_HxW = jnp.abs(along_HxW) - h
            excess_HxW = lax.bitcast_convert_type(
                jnp.maximum(lax.bitcast_convert_type(excess_HxW, jnp.int32), 0), jnp.float32)
            q_HxW = across_HxW * across_HxW + excess_HxW * excess_HxW
            bits_HxW = lax.bitcast_convert_type(q_HxW, jnp.int32)
            code_HxW = jnp.minimum(code_HxW, (bits_HxW & ~_INDEX_MASK) | b)
        return code_HxW

    init = jnp.full((size, size), jnp.iinfo(jnp.int32).max, jnp.int32)
    return lax.fori_loop(0, num_passes, one_pass, init)


def _decode(code_HxW):
    """(q [N,N] float32 at the middle of its truncated range, nearest bone [N,N] int32)."""
    q_HxW = lax.bitcast_convert_type((code_HxW & ~_INDEX_MASK) | (_MAX_BONES // 2), jnp.float32)
    return q_HxW, code_HxW & _INDEX_MASK


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _render(keypoints_Jx2, body_width, size, bones, width_scales):
    q_HxW, _ = _decode(_encoded_min(keypoints_Jx2, body_width, size, bones, width_scales))
    return jnp.exp(-q_HxW)


def _render_fwd(keypoints_Jx2, body_width, size, bones, width_scales):
    code_HxW = _encoded_min(keypoints_Jx2, body_width, size, bones, width_scales)
    q_HxW, _ = _decode(code_HxW)
    return jnp.exp(-q_HxW), (keypoints_Jx2, body_width, code_HxW)


def _render_bwd(size, bones, width_scales, residuals, grad_HxW):
    keypoints_Jx2, body_width, code_HxW = residuals
    start, direction, inv_sq_len, inv_width = _bone_table(
        keypoints_Jx2, body_width, bones, width_scales)
    table_Bx6 = jnp.concatenate(
        [start, direction, inv_sq_len[:, None], 2.0 * inv_width[:, None]], axis=-1)
    num_blocks = _row_blocks(size)
    rows = size // num_blocks

    def block(carry, inputs):
        sums_Bx4, grad_width = carry
        first_row, code_RxN, grad_RxN = inputs
        q_RxN, bone_RxN = _decode(code_RxN)
        grad_q_RxN = grad_RxN * jnp.exp(-q_RxN)  # -dL/dq; the 2/s_b of d(d²)/dx is in the table.
        per_pixel = jnp.take(table_Bx6, bone_RxN, axis=0, mode="clip")
        ax, ay, vx, vy, inv_len, two_inv_width = (per_pixel[..., k] for k in range(6))
        x_RxN, y_RxN = _pixel_rows(size, first_row, rows)
        t, rx, ry = _closest_point(x_RxN, y_RxN, ax, ay, vx, vy, inv_len)
        scale = grad_q_RxN * two_inv_width
        end_x = scale * t * rx
        end_y = scale * t * ry
        terms_Px4 = jnp.stack([scale * rx - end_x, scale * ry - end_y, end_x, end_y],
                              axis=-1).reshape(-1, 4)
        sums_Bx4 += jax.ops.segment_sum(terms_Px4, bone_RxN.reshape(-1), len(bones),
                                        mode="drop")
        return (sums_Bx4, grad_width + jnp.sum(grad_q_RxN * q_RxN)), None

    (sums_Bx4, grad_width), _ = lax.scan(
        block, (jnp.zeros((len(bones), 4), jnp.float32), jnp.zeros((), jnp.float32)),
        (jnp.arange(num_blocks, dtype=jnp.int32) * rows,
         code_HxW.reshape(num_blocks, rows, size), grad_HxW.reshape(num_blocks, rows, size)))
    grad_kp_Jx2 = (jnp.zeros_like(keypoints_Jx2)
                   .at[np.array([i for i, _ in bones])].add(sums_Bx4[:, :2])
                   .at[np.array([j for _, j in bones])].add(sums_Bx4[:, 2:]))
    # q = d² / (body_width * scale_b), so dS/d(body_width) = S * q / body_width.
    return grad_kp_Jx2, (grad_width / body_width).astype(body_width.dtype)


_render.defvjp(_render_fwd, _render_bwd)


def skeleton_mask(keypoints_Jx2, size, body_width=3e-3, bones=skeleton.BONES,
                  width_scales=skeleton.BONE_WIDTH_SCALES):
    """Renders the Skeleton Mask of one skeleton (DESIGN §3).

    Differentiable in `keypoints_Jx2` and `body_width` (reverse mode: a custom VJP, so no
    `jax.jvp`); `size`, `bones` and `width_scales` are static. Batch with
    `jax.vmap(lambda k: skeleton_mask(k, size))`.

    Args:
        keypoints_Jx2: [J, 2] joints in normalized crop coordinates (x right, y down, crop
            corners at ±1); points outside [-1, 1]² are fine.
        size: N, the mask is N×N (Python int >= 2).
        body_width: s, the squared width of a bone in normalized units² (> 0); bone b draws as
            exp(-d² / (s * width_scales[b])). A float or a scalar array.
        bones: static tuple of (i, j) joint-index pairs, at most 32.
        width_scales: static tuple, one width factor per bone.

    Returns:
        float32 [N, N] in [0, 1]: S = max over bones of exp(-d_b² / s_b), pixel (i, j) at
        (x, y) = (-1 + 2j/(N-1), -1 + 2i/(N-1)).
    """
    keypoints_Jx2 = jnp.asarray(keypoints_Jx2, jnp.float32)
    bones = tuple((int(i), int(j)) for i, j in bones)
    width_scales = tuple(float(w) for w in width_scales)
    if keypoints_Jx2.ndim != 2 or keypoints_Jx2.shape[1] != 2:
        raise ValueError(f"keypoints must be [J, 2], got {keypoints_Jx2.shape}")
    num_joints = keypoints_Jx2.shape[0]
    if not 1 <= len(bones) <= _MAX_BONES:
        raise ValueError(f"need 1 to {_MAX_BONES} bones, got {len(bones)}")
    if len(width_scales) != len(bones):
        raise ValueError(f"{len(width_scales)} width scales for {len(bones)} bones")
    if any(not (0 <= i < num_joints and 0 <= j < num_joints) for i, j in bones):
        raise ValueError(f"a bone refers to a joint outside 0..{num_joints - 1}")
    return _render(keypoints_Jx2, jnp.asarray(body_width, jnp.float32), int(size), bones,
                   width_scales)


# Squared distances are drawn as exp(-d^2 / scale), which stays above float32's smallest normal
# number up to d = sqrt(87 scale) = 37 normalized units: far beyond any crop.
_DISTANCE_SCALE = 16.0


def bone_distance_sq(keypoints_Jx2, size, bones=skeleton.BONES):
    """Squared distance from every pixel to the nearest bone segment, normalized units².

    The Skeleton Mask's running minimum (every bone at unit width) read back as a distance, so it
    shares its speed and its custom gradient: d² = -scale log S with S drawn at width `scale`.

    Args:
        keypoints_Jx2: [J, 2] joints, normalized crop coordinates.
        size: N (static int).
        bones: static tuple of (i, j) joint pairs.

    Returns:
        float32 [N, N] squared distances (pixel grid of `pixel_grid`).
    """
    mask_NxN = skeleton_mask(keypoints_Jx2, size, _DISTANCE_SCALE, bones, (1.0,) * len(bones))
    return -_DISTANCE_SCALE * jnp.log(jnp.maximum(mask_NxN, jnp.finfo(jnp.float32).tiny))
