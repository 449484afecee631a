"""X3D-XS / S / M / L (Feichtenhofer, CVPR 2020) as the thesis uses it, REFERENCE.md section 8.

The thesis trains X3D-XS (Table 3.6, chapter 3 DAN backbone), X3D-M (Tables 5.2, 5.9, 5.10) and builds
BQN-X3D (section 5.4) from X3D blocks. The author's ``src/x3d.py`` is pytorchvideo's ``create_x3d``
(width factor 2.0, depth factor 2.2, bottleneck factor 2.25, SE ratio 1/16, Swish); this module rebuilds
that network in Flax on ``(N, T, H, W, C)`` tensors with 3D convolutions.

Architecture (every number from ``create_x3d`` defaults; X3D-XS/S/M differ only in their input):

* **Stem** (:class:`X3DStem`): ``conv 1x3x3 stride (1,2,2) pad (0,1,1), 3 -> 24`` then a channel-wise
  ``conv 5x1x1 pad (2,0,0), groups 24`` -> BN -> ReLU, no pooling. pytorchvideo stores these two convs
  under *swapped* names: its ``blocks.0.conv.conv_t`` is the spatial 1x3x3 conv (it runs first) and
  ``blocks.0.conv.conv_xy`` is the temporal depthwise conv. Here the names say what the convs do:
  ``stem/conv_xy`` = torch ``conv.conv_t`` and ``stem/conv_t`` = torch ``conv.conv_xy``; ``stem/norm`` =
  torch ``norm``.
* **Stages** (:func:`x3d_stage_specs`): widths by the X3D rounding rules (:func:`round_width`,
  :func:`round_repeats`) from a stem width of 12 doubled per stage: dim_out / dim_inner / depth =
  24/54/3, 48/108/5, 96/216/11, 192/432/7 for XS/S/M (depth factor 2.2); X3D-L (depth factor 5.0) has
  depths 5/10/25/15. The first block of every stage has spatial stride 2, temporal stride 1 everywhere.
* **Block** (:class:`X3DBlock`): ``conv_a 1x1x1 -> BN -> ReLU -> conv_b 3x3x3 depthwise (stride
  (1,s,s), pad 1) -> BN -> [SE] -> Swish -> conv_c 1x1x1 -> BN (gamma 0 at init)``; SE on the blocks with
  an even index inside their stage (0, 2, 4 ...), reduced width ``round_width(dim_inner, 1/16)`` (8, 8, 16,
  32). Shortcut: ``conv 1x1x1 stride (1,s,s)`` when ``dim_in != dim_out`` or the block strides, followed by
  BN **only when** ``dim_in != dim_out`` -- so stage 1 block 0 (24 -> 24, stride 2) has a shortcut conv
  without BN (pytorchvideo's ``create_x3d_res_block``). Sum -> ReLU.
* **Head** (:class:`X3DHead`): ``conv 192 -> 432 1x1x1 -> BN -> ReLU -> avg-pool -> conv 432 -> 2048 1x1x1
  (no BN) -> ReLU -> dropout -> fc (Linear 2048 -> K) -> average over the remaining T, H, W``.

Head pool and the sliding-window subtlety: pytorchvideo fixes ``AvgPool3d((T, ceil(S/32), ceil(S/32)),
stride 1)`` from the clip length and crop the model is *built* for. At that input the pool covers the
whole map and equals a global average; at a larger test crop it becomes a sliding-window average (the
432 -> 2048 conv, ReLU and fc then run on every window and the logits are averaged), which is not the
same as a global average because of the ReLU after ``conv_post``. ``head_pool=None`` (the default here, and
what BQN-X3D's heads use: ``AdaptiveAvgPool3d(1)``) is the global average; pass
``head_pool=x3d_head_pool_size(T, crop)`` to reproduce pytorchvideo at other test sizes. Every thesis
setting tests at the training crop, where both agree. Params and MACs do not depend on the choice at the
training size.

The two depthwise convs (``stem/conv_t``, every block's ``conv_b``) are
:class:`vidjax.ops.depthwise.DepthwiseConv`: the parameters of ``nn.Conv(feature_group_count=C)``, run as a
sum of shifted slices on a CPU (XLA's grouped conv is very slow there) and as ``lax.conv`` elsewhere; they
count as conv MACs exactly as the ``nn.Conv`` did.

Initialisation (pytorchvideo ``init_net_weights``, style 'resnet'): every conv ``kaiming_normal(fan_out,
relu)`` bias 0 (SE convs too), every BN gamma 1 beta 0 except ``norm_c`` (gamma 0), Linear ``N(0, 0.01)``
bias 0. BN: eps 1e-5, PyTorch momentum 0.1.

Counts (``vidjax.tools.flops``, conv/linear modules only, REFERENCE.md section 13): X3D-M 16x224^2 K=400
3.794M params / 4.73 GMACs; 16x256^2 K=174 3.331M / 6.18 GMACs (thesis Table 5.9: 3.3M / 6.4G); X3D-XS
4x160^2 0.605 GMACs (thesis Table 3.6: 0.6G).

Parity with pytorchvideo 0.1.5 ``create_x3d`` on converted weights (X3D-XS, 4x64^2, float32): eval logits
within 1e-6 relative, train-mode logits 1.1e-5 (tests/parity/X3D.md, tests/parity/x3d_parity.py).

Parameter names (for weight conversion and optimiser regexes): ``stem/{conv_xy,conv_t,norm}``,
``stage{s}_{b}/{conv_a,norm_a,conv_b,norm_b,se/{reduce,expand},conv_c,norm_c,shortcut_conv,shortcut_norm}``
(s = 1..4, b from 0), ``head/{conv_pre,norm_pre,conv_post,fc}``. torch -> flax: ``blocks.{s}.res_blocks.{b}.
branch1_conv/branch1_norm`` -> ``shortcut_conv/shortcut_norm``; ``branch2.norm_b.0`` -> ``norm_b``;
``branch2.norm_b.1.block.{0,2}`` -> ``se/{reduce,expand}``; ``blocks.5.pool.{pre_conv,pre_norm,post_conv}``
-> ``head/{conv_pre,norm_pre,conv_post}``; ``blocks.5.proj`` -> ``head/fc``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidjax.backbones.layers import batch_norm, conv, kaiming_fan_out
from vidjax.ops.depthwise import DepthwiseConv

# Canonical inputs (clip length, crop) and depth factors of the X3D family (pytorchvideo hub builders;
# the author's ``x3d_l`` uses crop 256 instead of 312).
VARIANTS = {
    "xs": dict(depth_factor=2.2, clip_length=4, crop_size=160),
    "s": dict(depth_factor=2.2, clip_length=13, crop_size=160),
    "m": dict(depth_factor=2.2, clip_length=16, crop_size=224),
    "l": dict(depth_factor=5.0, clip_length=16, crop_size=312),
}
STEM_DIM_IN = 12  # stem width before the width factor (create_x3d stem_dim_in)
BASE_DEPTHS = (1, 2, 5, 3)  # stage depths before the depth factor
SE_RATIO = 0.0625
HEAD_DIM_OUT = 2048
fc_init_x3d = nn.initializers.normal(stddev=0.01)  # init_net_weights: Linear N(0, 0.01)


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
  """X3D channel rounding: ``width * multiplier`` to the nearest multiple of ``divisor``.

  The result is at least ``min_width`` and is bumped by one ``divisor`` when rounding down lost more
  than 10% (the rule of the X3D / pytorchvideo code). A zero multiplier returns ``width`` unchanged.
  """
  if not multiplier:
    return int(width)
  width = width * multiplier
  out = max(min_width, int(width + divisor / 2) // divisor * divisor)
  if out < 0.9 * width:
    out += divisor
  return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
  """X3D depth rounding: ``ceil(repeats * multiplier)``."""
  if not multiplier:
    return repeats
  return int(math.ceil(multiplier * repeats))


@dataclasses.dataclass(frozen=True)
class StageSpec:
  dim_out: int
  dim_inner: int
  depth: int
  se_dim: int  # reduced SE width round_width(dim_inner, 1/16)


def x3d_stage_specs(width_factor: float = 2.0, depth_factor: float = 2.2,
                    bottleneck_factor: float = 2.25, stem_dim_in: int = STEM_DIM_IN,
                    se_ratio: float = SE_RATIO) -> tuple[StageSpec, ...]:
  """The four X3D stages as ``create_x3d`` computes them."""
  dims = [stem_dim_in]
  for _ in range(3):
    dims.append(round_width(dims[-1], 2.0, divisor=8))
  specs = []
  for base_dim, base_depth in zip(dims, BASE_DEPTHS):
    dim_out = round_width(base_dim, width_factor)
    dim_inner = int(bottleneck_factor * dim_out)
    specs.append(StageSpec(dim_out, dim_inner, round_repeats(base_depth, depth_factor),
                           round_width(dim_inner, se_ratio)))
  return tuple(specs)


def x3d_block_layout(width_factor: float = 2.0, depth_factor: float = 2.2,
                     bottleneck_factor: float = 2.25, stem_dim_in: int = STEM_DIM_IN):
  """Yields ``(stage, block, dim_in, dim_inner, dim_out, spatial_stride, use_se)`` for every block.

  ``stage`` is 1..4, ``block`` counts from 0 inside its stage; ``use_se`` is True on even ``block``.
  The BQN-X3D builder walks this to pair Quiet/Busy blocks with lateral connections.
  """
  dim_in = round_width(stem_dim_in, width_factor)
  for s, spec in enumerate(x3d_stage_specs(width_factor, depth_factor, bottleneck_factor, stem_dim_in)):
    for b in range(spec.depth):
      yield s + 1, b, dim_in, spec.dim_inner, spec.dim_out, (2 if b == 0 else 1), b % 2 == 0
      dim_in = spec.dim_out


def x3d_head_pool_size(clip_length: int, crop_size: int, temporal_stride: int = 1,
                       spatial_stride: int = 32) -> tuple[int, int, int]:
  """pytorchvideo's fixed head pool ``(T // 1, ceil(S / 32), ceil(S / 32))`` for the built input."""
  s = int(math.ceil(crop_size / spatial_stride))
  return (clip_length // temporal_stride, s, s)


class SqueezeExcite3D(nn.Module):
  """SE of X3D (pytorchvideo ``SqueezeExcitation``): ``x * sigmoid(W2 relu(W1 mean_THW(x) + b1) + b2)``.

  ``W1``/``W2`` are 1x1x1 convs with bias (``reduce``/``expand``), so they count as conv MACs.
  """
  reduced: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    s = conv(self.reduced, (1, 1, 1), bias=True, name="reduce", dtype=self.dtype)(s)
    s = conv(x.shape[-1], (1, 1, 1), bias=True, name="expand", dtype=self.dtype)(nn.relu(s))
    return x * nn.sigmoid(s)


class X3DStem(nn.Module):
  """X3D stem on ``(N, T, H, W, 3)`` -> ``(N, T, ceil(H/2), ceil(W/2), features)``.

  Attributes:
    features: output channels (24 = round_width(12, 2.0)).
    temporal_kernel: kernel of the channel-wise temporal conv (5).
    dtype: compute dtype.
  Submodules: ``conv_xy`` (1x3x3 stride (1,2,2), pad (0,1,1), = torch ``conv.conv_t``), ``conv_t``
  (depthwise ``temporal_kernel``x1x1, pad ``temporal_kernel // 2``, = torch ``conv.conv_xy``), ``norm``.
  Called as ``stem(x, train)``. Inside :class:`X3D` it is named ``stem``, so an optimiser rule on
  ``stem/conv_xy`` finds the first conv; a two-pathway model names its stems itself.
  """
  features: int = 24
  temporal_kernel: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(self.features, (1, 3, 3), (1, 2, 2), (0, 1, 1), name="conv_xy", dtype=self.dtype)(x)
    kt = self.temporal_kernel
    x = DepthwiseConv(self.features, (kt, 1, 1), 1, (kt // 2, 0, 0), use_bias=False,
                      kernel_init=kaiming_fan_out, dtype=self.dtype, name="conv_t")(x)
    return nn.relu(batch_norm(train, name="norm", dtype=self.dtype)(x))


class X3DBlock(nn.Module):
  """One X3D residual block on ``(N, T, H, W, C_in)`` -> ``(N, T, H', W', dim_out)``.

  ``H' = ceil(H / spatial_stride)`` (pad 1, kernel 3). The input width ``C_in`` is read from ``x``.

  Attributes:
    dim_inner: channels of conv_a / conv_b (the depthwise 3x3x3 conv).
    dim_out: output channels (conv_c, shortcut).
    spatial_stride: stride of conv_b and of the shortcut conv in H and W (2 on a stage's first block).
    temporal_stride: stride in T (1 in every X3D stage).
    use_se: squeeze-excitation after norm_b (X3D: blocks with an even index inside their stage).
    se_dim: reduced SE width; ``None`` = ``round_width(dim_inner, 1/16)``.
    kernel: conv_b kernel (3, 3, 3), padded by ``k // 2``.
    dtype: compute dtype.
  Call: ``block(x, train)``.
  """
  dim_inner: int
  dim_out: int
  spatial_stride: int = 1
  temporal_stride: int = 1
  use_se: bool = True
  se_dim: Optional[int] = None
  kernel: Sequence[int] = (3, 3, 3)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    dim_in = x.shape[-1]
    stride = (self.temporal_stride, self.spatial_stride, self.spatial_stride)
    kernel = tuple(self.kernel)
    h = conv(self.dim_inner, (1, 1, 1), name="conv_a", dtype=self.dtype)(x)
    h = nn.relu(batch_norm(train, name="norm_a", dtype=self.dtype)(h))
    h = DepthwiseConv(self.dim_inner, kernel, stride, tuple(k // 2 for k in kernel), use_bias=False,
                      kernel_init=kaiming_fan_out, dtype=self.dtype, name="conv_b")(h)
    h = batch_norm(train, name="norm_b", dtype=self.dtype)(h)
    if self.use_se:
      se_dim = self.se_dim if self.se_dim is not None else round_width(self.dim_inner, SE_RATIO)
      h = SqueezeExcite3D(se_dim, dtype=self.dtype, name="se")(h)
    h = nn.swish(h)
    h = conv(self.dim_out, (1, 1, 1), name="conv_c", dtype=self.dtype)(h)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     scale_init=nn.initializers.zeros, bias_init=nn.initializers.zeros,
                     dtype=self.dtype, name="norm_c")(h)
    shortcut = x
    if dim_in != self.dim_out or max(stride) > 1:
      shortcut = conv(self.dim_out, (1, 1, 1), stride, name="shortcut_conv", dtype=self.dtype)(x)
      if dim_in != self.dim_out:
        shortcut = batch_norm(train, name="shortcut_norm", dtype=self.dtype)(shortcut)
    return nn.relu(h + shortcut)


class X3DHead(nn.Module):
  """X3D head on ``(N, T, H, W, C)`` -> logits ``(N, num_classes)``.

  ``conv_pre (C -> dim_inner) -> BN -> ReLU -> pool -> conv_post (-> dim_out) -> ReLU -> dropout -> fc ->
  mean over T, H, W``. ``pool_size=None``: global average; a tuple: ``AvgPool3d(pool_size, stride 1)``
  (pytorchvideo's fixed pool, a sliding window at inputs larger than the built size).
  """
  num_classes: int
  dim_inner: int = 432
  dim_out: int = HEAD_DIM_OUT
  dropout: float = 0.5
  pool_size: Optional[Sequence[int]] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    x = conv(self.dim_inner, (1, 1, 1), name="conv_pre", dtype=self.dtype)(x)
    x = nn.relu(batch_norm(train, name="norm_pre", dtype=self.dtype)(x))
    if self.pool_size is None:
      x = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    else:
      window = tuple(self.pool_size)
      if any(w > d for w, d in zip(window, x.shape[1:4])):
        raise ValueError(f"X3D head pool {window} larger than the feature map {x.shape[1:4]}")
      x = nn.avg_pool(x, window, strides=(1, 1, 1), padding="VALID")
    x = nn.relu(conv(self.dim_out, (1, 1, 1), name="conv_post", dtype=self.dtype)(x))
    features = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=fc_init_x3d, bias_init=nn.initializers.zeros,
                 dtype=self.dtype, name="fc")(x)
    logits = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    return (logits, features) if return_features else logits


class X3D(nn.Module):
  """X3D classifier on normalised clips ``(N, T, H, W, 3)`` -> logits ``(N, num_classes)``.

  ``variant`` picks the depth factor (xs/s/m: 2.2, l: 5.0); ``width_factor``/``bottleneck_factor``
  default to 2.0 / 2.25 and ``head_dim_out`` to 2048 (narrow networks for tests: e.g.
  ``width_factor=0.5, head_dim_out=32``). ``head_pool`` is the
  head's fixed pool window (``None`` = global average, see the module docstring).
  """
  num_classes: int
  variant: str = "m"
  dropout: float = 0.5
  width_factor: float = 2.0
  depth_factor: Optional[float] = None
  bottleneck_factor: float = 2.25
  head_pool: Optional[Sequence[int]] = None
  head_dim_out: int = HEAD_DIM_OUT
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each block in the backward pass (memory for compute)

  @nn.compact
  def __call__(self, video, train: bool = False, return_features: bool = False):
    if self.variant not in VARIANTS:
      raise ValueError(f"X3D variant {self.variant!r} not in {sorted(VARIANTS)}")
    depth_factor = self.depth_factor or VARIANTS[self.variant]["depth_factor"]
    x = video.astype(self.dtype)
    x = X3DStem(round_width(STEM_DIM_IN, self.width_factor), dtype=self.dtype, name="stem")(x, train)
    dim_inner = None
    block = nn.remat(X3DBlock, static_argnums=(2,)) if self.remat else X3DBlock  # (self, x, train)
    for s, b, _, dim_inner, dim_out, stride, use_se in x3d_block_layout(
        self.width_factor, depth_factor, self.bottleneck_factor):
      x = block(dim_inner, dim_out, stride, use_se=use_se, dtype=self.dtype,
                   name=f"stage{s}_{b}")(x, train)
    features = x
    logits = X3DHead(self.num_classes, dim_inner, self.head_dim_out, self.dropout, self.head_pool,
                     dtype=self.dtype, name="head")(x, train)
    return (logits, features) if return_features else logits
