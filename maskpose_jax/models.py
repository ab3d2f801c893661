"""The two networks of the method, in Flax Linen: the pose detector (DESIGN §6) and the
shape-prior network that turns a Skeleton Mask into a Physique Mask (DESIGN §4).

Conventions:
- Images are NHWC. Parameters are float32; `dtype` sets the compute dtype of convolutions and
  norms (e.g. bfloat16 on accelerators); the soft-argmax and the Physique Mask's sigmoid run
  in float32, and so do the two output 1x1 convolutions (the detector's `final`, the
  PhysiqueNet's `out`, the only convolutions with a bias): the gradient of a bias is a sum over
  every pixel of the batch, which in bfloat16 loses most of its value (tiny config, relative
  to float32 compute: the PhysiqueNet's `out` bias gradient 97% off, the detector's gradient
  20-30% off; with these two in float32, 1e-4 and 0.2-4%). Norm layers already reduce and add
  their bias in float32.
- Normalization: `norm="group"` (default) uses GroupNorm with the largest group count that
  divides the channels and is at most min(max_groups=32, channels // 4) (16 groups at 64
  channels, 32 from 128 on; any width multiplier works). `norm="batch"` uses BatchNorm with
  `use_running_average=not train`, momentum 0.9, running statistics in the `batch_stats`
  collection (apply with `mutable=["batch_stats"]` when `train=True`). No
  `axis_name` is set: the trainer shards the batch under `jit` (no `pmap`/`shard_map`), so the
  batch mean is an ordinary reduction over the *global* batch, which the compiler carries out
  across devices; the statistics and the result equal those of one device holding the whole
  batch (tested). Under `shard_map`/`pmap` the statistics would instead be per device.
- Keypoints are (x, y, z) in [-1, 1]: x, y normalized crop coordinates, z the pelvis-relative
  depth in units of `depth_range / 2` (DESIGN §6).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics of images in [0, 1], RGB order.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# Blocks per stage for each supported ResNet depth, and whether the stage uses bottlenecks.
_RESNET_LAYOUT = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
}

# He initialisation (fan-out, as torchvision) for the backbone convolutions.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Small Gaussian for the upsampling head (as in "Simple Baselines"): near-uniform initial
# volumes, so the first keypoints sit near the crop centre.
_head_init = nn.initializers.normal(stddev=1e-3)


def _num_groups(channels, max_groups=32, min_group_size=4):
    """Largest group count <= min(max_groups, channels // min_group_size) that divides
    `channels` (at least 1), so GroupNorm works for any width multiplier."""
    limit = max(1, min(max_groups, channels // min_group_size))
    return max(g for g in range(1, limit + 1) if channels % g == 0)


def _norm_layer(norm, channels, train, dtype, max_groups, name=None):
    """GroupNorm or BatchNorm over the last axis, by name."""
    if norm == "group":
        return nn.GroupNorm(num_groups=_num_groups(channels, max_groups), dtype=dtype, name=name)
    if norm == "batch":
        return nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
        )
    raise ValueError(f"norm must be 'group' or 'batch', got {norm!r}")


def _pad(kernel):
    """Symmetric padding (k // 2 on each side) as torchvision uses."""
    return ((kernel // 2, kernel // 2),) * 2


def _conv(features, kernel, stride, dtype, name):
    """Bias-free k x k convolution (a norm follows it), He-initialised."""
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=_pad(kernel),
                   use_bias=False, kernel_init=_conv_init, dtype=dtype, name=name)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    Maps B x H x W x C_in to B x H/s x W/s x `features` (s = `stride`).
    """

    features: int
    stride: int = 1
    norm: str = "group"
    max_groups: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train):
        def norm(c, name):
            return _norm_layer(self.norm, c, train, self.dtype, self.max_groups, name)

        def conv(c, k, s, name):
            return _conv(c, k, s, self.dtype, name)

        y = nn.relu(norm(self.features, "norm1")(conv(self.features, 3, self.stride, "conv1")(x)))
        y = norm(self.features, "norm2")(conv(self.features, 3, 1, "conv2")(y))
        if x.shape[-1] != self.features or self.stride != 1:
            x = norm(self.features, "proj_norm")(conv(self.features, 1, self.stride, "proj")(x))
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, as ResNet v1.5) -> 1x1 convolutions with a residual (ResNet-50).

    Maps B x H x W x C_in to B x H/s x W/s x 4*`features`.
    """

    features: int
    stride: int = 1
    norm: str = "group"
    max_groups: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train):
        def norm(c, name):
            return _norm_layer(self.norm, c, train, self.dtype, self.max_groups, name)

        def conv(c, k, s, name):
            return _conv(c, k, s, self.dtype, name)

        out = 4 * self.features
        y = nn.relu(norm(self.features, "norm1")(conv(self.features, 1, 1, "conv1")(x)))
        y = nn.relu(norm(self.features, "norm2")(conv(self.features, 3, self.stride, "conv2")(y)))
        y = norm(out, "norm3")(conv(out, 1, 1, "conv3")(y))
        if x.shape[-1] != out or self.stride != 1:
            x = norm(out, "proj_norm")(conv(out, 1, self.stride, "proj")(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """ResNet-18/34/50 feature extractor (no pooling, no classifier).

    Stage s (0..3) has `width * 2**s` base channels (x4 at the output of bottleneck blocks),
    stride 2 at the start of stages 1-3.

    Stems:
    - "standard": 7x7 stride-2 conv + 3x3 stride-2 max-pool; total stride 32.
    - "light": one 3x3 stride-1 conv, no pool; total stride 8. For small crops (<= 64 px),
      where the standard stem would leave a 2x2 map at stage 4.

    Input B x H x W x 3 (already normalized); output B x H/stride x W/stride x C with
    C = 8*width (depth 18/34) or 32*width (depth 50).
    """

    depth: int = 50
    width: int = 64
    norm: str = "group"
    max_groups: int = 32
    stem: str = "standard"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train):
        if self.depth not in _RESNET_LAYOUT:
            raise ValueError(
                f"resnet depth must be one of {sorted(_RESNET_LAYOUT)}, got {self.depth}")
        stages, bottleneck = _RESNET_LAYOUT[self.depth]
        if self.stem == "standard":
            x = _conv(self.width, 7, 2, self.dtype, "stem_conv")(x)
        elif self.stem == "light":
            x = _conv(self.width, 3, 1, self.dtype, "stem_conv")(x)
        else:
            raise ValueError(f"stem must be 'standard' or 'light', got {self.stem!r}")
        x = _norm_layer(self.norm, self.width, train, self.dtype, self.max_groups, "stem_norm")(x)
        x = nn.relu(x)
        if self.stem == "standard":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_pad(3))
        block = Bottleneck if bottleneck else BasicBlock
        for s, num_blocks in enumerate(stages):
            for b in range(num_blocks):
                x = block(
                    features=self.width * 2**s,
                    stride=2 if (s > 0 and b == 0) else 1,
                    norm=self.norm,
                    max_groups=self.max_groups,
                    dtype=self.dtype,
                    name=f"stage{s + 1}_block{b + 1}",
                )(x, train)
        return x


def soft_argmax_3d(logits_hxwxJxD):
    """Integral regression over one example's per-joint volumes (softmax, then expectation).

    The heatmap grid spans the same [-1, 1] extent as the crop: cell (row i, column j) of an
    h x w map is at x = -1 + 2j/(w-1), y = -1 + 2i/(h-1) (corner cells at +-1, the project's
    normalized-crop convention applied to the heatmap grid), and depth bin k of D is at
    z = -1 + 2k/(D-1). Computed in float32 whatever the input dtype.

    Args:
        logits_hxwxJxD: unnormalized log-probabilities, one h x w x D volume per joint.

    Returns:
        keypoints_Jx3: expected (x, y, z) per joint, each in [-1, 1].
        heatmaps_Jxhxw: per-joint 2D marginal of the softmax (sums to 1 over h x w).
    """
    h, w, num_joints, d = logits_hxwxJxD.shape
    logits_Jxhxwxd = jnp.transpose(logits_hxwxJxD.astype(jnp.float32), (2, 0, 1, 3))
    probs = jax.nn.softmax(logits_Jxhxwxd.reshape(num_joints, -1), axis=-1)
    probs_Jxhxwxd = probs.reshape(num_joints, h, w, d)
    heatmaps_Jxhxw = probs_Jxhxwxd.sum(axis=-1)
    p_x = heatmaps_Jxhxw.sum(axis=1)  # J x w
    p_y = heatmaps_Jxhxw.sum(axis=2)  # J x h
    p_z = probs_Jxhxwxd.sum(axis=(1, 2))  # J x D
    x = p_x @ jnp.linspace(-1.0, 1.0, w, dtype=jnp.float32)
    y = p_y @ jnp.linspace(-1.0, 1.0, h, dtype=jnp.float32)
    z = p_z @ jnp.linspace(-1.0, 1.0, d, dtype=jnp.float32)
    # The expectation of values in [-1, 1] can exceed the range by rounding only.
    keypoints_Jx3 = jnp.clip(jnp.stack([x, y, z], axis=-1), -1.0, 1.0)
    return keypoints_Jx3, heatmaps_Jxhxw


def normalize_images(images_BxHxWx3, dtype=jnp.float32):
    """uint8 images in [0, 255] (or float images already in [0, 1]) -> ImageNet-normalized."""
    if jnp.issubdtype(images_BxHxWx3.dtype, jnp.integer):
        x = images_BxHxWx3.astype(jnp.float32) / 255.0
    else:
        x = images_BxHxWx3.astype(jnp.float32)
    x = (x - jnp.asarray(_IMAGENET_MEAN)) / jnp.asarray(_IMAGENET_STD)
    return x.astype(dtype)


class Detector(nn.Module):
    """ResNet + three stride-2 transposed-conv blocks + 1x1 conv to J x D volumes (DESIGN §6).

    Heatmaps are (H / stride) * 2**num_deconv on a side: H/4 x W/4 with the standard stem and
    three deconvolutions (64 x 64 for a 256 crop), H x W with the light stem. The tiny CPU configuration used in tests:
    `Detector(resnet_depth=18, width=8, depth_bins=16, head_channels=32)` on 64 x 64 crops.

    Attributes:
        num_joints: J.
        depth_bins: D, depth bins spanning z in [-1, 1].
        resnet_depth: 18, 34 or 50.
        width: ResNet base channels (64 for the standard model).
        norm: "group" or "batch" (see the module docstring).
        max_groups: upper bound on GroupNorm's group count.
        stem: "standard" or "light" (see `ResNet`).
        head_channels: channels of the upsampling blocks.
        num_deconv: number of ConvTranspose 4x4 / 2 + norm + ReLU blocks.
        template: None, or J (x, y) positions in normalized crop coordinates (e.g.
            `skeleton.STANDING_TEMPLATE`): a learned h x w x J spatial prior `template_prior`,
            initialized to -|p - template_j|^2 / (2 template_sigma^2), is added to every depth
            bin's logits, so that an untrained detector predicts about the template rather than
            every joint at the centre.
        template_sigma: std of that initial prior, normalized units.
        dtype: compute dtype (parameters stay float32).
    """

    num_joints: int = 17
    depth_bins: int = 64
    resnet_depth: int = 50
    width: int = 64
    norm: str = "group"
    max_groups: int = 32
    stem: str = "standard"
    head_channels: int = 256
    num_deconv: int = 3
    template: Any = None
    template_sigma: float = 0.3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images_BxHxWx3, train):
        """Predicts 2.5D keypoints for a batch of crops.

        Args:
            images_BxHxWx3: RGB crops, uint8 in [0, 255] or float in [0, 1].
            train: training mode (BatchNorm uses batch statistics and updates `batch_stats`).

        Returns:
            dict with `keypoints` B x J x 3 float32 (x, y, z in [-1, 1]) and `heatmaps`
            B x J x h x w float32, the per-joint 2D marginals (each sums to 1).
        """
        x = normalize_images(images_BxHxWx3, self.dtype)
        x = ResNet(self.resnet_depth, self.width, self.norm, self.max_groups, self.stem,
                   self.dtype, name="backbone")(x, train)
        for i in range(self.num_deconv):
            x = nn.ConvTranspose(self.head_channels, (4, 4), (2, 2), padding="SAME",
                                 use_bias=False, kernel_init=_head_init, dtype=self.dtype,
                                 name=f"deconv{i + 1}")(x)
            x = _norm_layer(self.norm, self.head_channels, train, self.dtype, self.max_groups,
                            f"deconv{i + 1}_norm")(x)
            x = nn.relu(x)
        x = nn.Conv(self.num_joints * self.depth_bins, (1, 1), kernel_init=_head_init,
                    dtype=jnp.float32, name="final")(x)
        b, h, w, _ = x.shape
        logits_BxhxwxJxD = x.reshape(b, h, w, self.num_joints, self.depth_bins)
        if self.template is not None:
            template_Jx2 = np.asarray(self.template, np.float32)
            sigma = float(self.template_sigma)

            def init_prior(_, shape):
                grid_y, grid_x = np.meshgrid(np.linspace(-1, 1, shape[0]),
                                             np.linspace(-1, 1, shape[1]), indexing="ij")
                d2 = ((grid_x[..., None] - template_Jx2[:, 0]) ** 2
                      + (grid_y[..., None] - template_Jx2[:, 1]) ** 2)
                return jnp.asarray(-d2 / (2.0 * sigma ** 2), jnp.float32)

            prior_hxwxJ = self.param("template_prior", init_prior, (h, w, self.num_joints))
            logits_BxhxwxJxD = logits_BxhxwxJxD + prior_hxwxJ[None, :, :, :, None]
        keypoints, heatmaps = jax.vmap(soft_argmax_3d)(logits_BxhxwxJxD)
        return {"keypoints": keypoints, "heatmaps": heatmaps}


class PhysiqueNet(nn.Module):
    """U-Net-style encoder-decoder: Skeleton Mask -> Physique Mask (DESIGN §4).

    Level l (0..L-1, L = len(widths)) works at 1/2**l resolution with `widths[l]` channels:
    two 3x3 conv + GroupNorm + LeakyReLU per level, 2x2 average-pool down, bilinear 2x up
    (`jax.image.resize`) with the encoder's skip concatenated, 1x1 conv + sigmoid out.
    H and W must be divisible by 2**(L-1).

    Attributes:
        widths: channels per level, finest first.
        max_groups: upper bound on GroupNorm's group count.
        negative_slope: LeakyReLU slope.
        dtype: compute dtype (parameters and the sigmoid output stay float32).
    """

    widths: tuple = (32, 64, 128)
    max_groups: int = 32
    negative_slope: float = 0.2
    dtype: Any = jnp.float32

    def _block(self, x, features, name):
        for k in range(2):
            x = _conv(features, 3, 1, self.dtype, f"{name}_conv{k + 1}")(x)
            x = nn.GroupNorm(num_groups=_num_groups(features, self.max_groups), dtype=self.dtype,
                             name=f"{name}_norm{k + 1}")(x)
            x = nn.leaky_relu(x, self.negative_slope)
        return x

    @nn.compact
    def __call__(self, skeleton_mask):
        """Maps Skeleton Masks to Physique Masks.

        Args:
            skeleton_mask: B x H x W (or B x H x W x 1) values in [0, 1].

        Returns:
            B x H x W float32 Physique Mask in (0, 1) (float32 rounding can reach 0 or 1
            only for logits beyond about +-17).
        """
        x = skeleton_mask if skeleton_mask.ndim == 4 else skeleton_mask[..., None]
        b, h, w, _ = x.shape
        factor = 2 ** (len(self.widths) - 1)
        if h % factor or w % factor:
            raise ValueError(f"PhysiqueNet needs H, W divisible by {factor}, got {h}x{w}")
        x = x.astype(self.dtype)
        skips = []
        for level, features in enumerate(self.widths):
            x = self._block(x, features, f"enc{level}")
            if level < len(self.widths) - 1:
                skips.append(x)
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        for level in reversed(range(len(self.widths) - 1)):
            skip = skips[level]
            x = jax.image.resize(x, (b, *skip.shape[1:3], x.shape[-1]), "bilinear")
            x = self._block(jnp.concatenate([x, skip], axis=-1), self.widths[level], f"dec{level}")
        logits = nn.Conv(1, (1, 1), dtype=jnp.float32, name="out")(x)
        return jax.nn.sigmoid(logits[..., 0].astype(jnp.float32))


def detector_variables(params, batch_stats) -> dict:
    """The variables `Detector.apply` takes: its params, and its BatchNorm statistics if any."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables
