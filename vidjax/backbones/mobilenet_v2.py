"""MobileNetV2 (Sandler et al., CVPR 2018) with the Temporal Shift Module, the backbone of thesis Table 5.2.

Thesis section 5.5.4 / Table 5.2 run "MobileNetV2 with TSM embedded", ImageNet-pretrained, 8 segments on
SS V1, through the author's TSN wrapper (``ops/models.py`` of the BQN repo, ``base_model='mobilenetv2'``),
which takes the network from the TSM code base (``archs/mobilenet_v2.py``, itself the tonylins
PyTorch port). That network, rebuilt here:

* ``features.0``: ``conv 3x3 stride 2 pad 1, 3 -> 32`` -> BN -> ReLU6 (first width is always 32).
* 17 inverted residual blocks from the paper's Table 2, ``(t, c, n, s)`` = (1,16,1,1), (6,24,2,2),
  (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1); stride ``s`` on the first of the ``n``.
  A block is ``[1x1 expand (C -> tC) BN ReLU6] -> 3x3 depthwise stride s pad 1 BN ReLU6 -> 1x1 project
  BN`` (no expansion conv when t = 1) and adds its input when ``stride == 1 and C_in == C_out``.
  Channels at width multiplier ``w``: ``ceil(c * w / 8) * 8`` for t > 1 blocks (TSM's ``make_divisible``
  rounds *up*), ``c`` for the t = 1 block; last conv ``1x1 -> 1280`` (``ceil(1280 w / 8) * 8`` only when
  w > 1) BN ReLU6.
* Global average pool -> (TSN) dropout -> ``fc`` ``Linear(1280, K)`` N(0, 0.001) bias 0 -> average of the
  T frames' logits (TSN consensus).
* **TSM**: the TSN wrapper wraps ``conv[0]`` of every ``InvertedResidual`` whose ``conv`` has 8 layers
  (i.e. t != 1) *and* ``use_res_connect``: the input of the residual branch (before the expansion conv)
  is temporally shifted, 1/``shift_div`` (8) of the channels each way, zero at clip ends; the identity path
  is not shifted. 10 of the 17 blocks qualify (blocks 3, 5, 6, 8, 9, 10, 12, 13, 15, 16, 1-based).

The depthwise 3x3 convs are :class:`vidjax.ops.depthwise.DepthwiseConv` (the parameters and MAC count
of ``nn.Conv(feature_group_count=C)``; shifted slices on a CPU, where XLA's grouped conv is very slow).

Frames are folded into the batch, ``(N*T, H, W, C)`` with the T frames of a clip contiguous.
Init (tonylins / TSM ``_initialize_weights``): conv ``N(0, sqrt(2 / (k*k*out_channels)))`` = kaiming
normal fan_out (also for depthwise convs: PyTorch's fan_out is ``out_channels * k * k``); BN 1/0; the TSN
``new_fc`` N(0, 0.001) (it replaces the ImageNet classifier).

Counts at 224^2 per frame (``vidjax.tools.flops``): 3,504,872 params with 1000 classes (torchvision's
``mobilenet_v2`` has the same count at w = 1: 3.50M; paper Table 4: 3.4M), 2,223,872 without the
classifier; 0.3006 GMACs conv/linear per frame with 1000 classes (paper: 300M multiply-adds).

Names: ``stem/conv1``, ``stem/bn1``, ``block{i}/{expand_conv,expand_bn,dw_conv,dw_bn,project_conv,
project_bn}`` (i = 1..17 = torch ``features.{i}``; torch ``conv.{0,1,3,4,6,7}`` for t > 1, ``conv.{0,1,3,4}``
= dw/project for t = 1), ``last_conv``, ``last_bn`` (``features.18``), ``head/fc`` (TSN ``new_fc``).
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vidjax.backbones.layers import Classifier, batch_norm, conv, kaiming_fan_out, segment_consensus
from vidjax.ops.depthwise import DepthwiseConv
from vidjax.ops.temporal_shift import temporal_shift

# (expansion t, channels c, repeats n, first stride s): MobileNetV2 paper, Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FIRST_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(x: float, divisor: int = 8) -> int:
  """TSM / tonylins channel rounding: ``ceil(x / divisor) * divisor``."""
  return int(math.ceil(x / divisor) * divisor)


def block_layout(width_mult: float = 1.0):
  """Yields ``(index, in_ch, out_ch, stride, expand_ratio)`` of the 17 blocks (index 1..17)."""
  in_ch, idx = FIRST_CHANNELS, 1
  for t, c, n, s in INVERTED_RESIDUAL_SETTING:
    out_ch = make_divisible(c * width_mult) if t > 1 else c
    for i in range(n):
      yield idx, in_ch, out_ch, (s if i == 0 else 1), t
      in_ch, idx = out_ch, idx + 1


def relu6(x):
  return jnp.clip(x, 0.0, 6.0)


class InvertedResidual(nn.Module):
  """MobileNetV2 block on ``(N*T, H, W, C_in)``; TSM shift of the residual branch when it has one.

  The shift is applied only when the block has a residual connection (stride 1, ``C_in == out_ch``) and
  an expansion conv (``expand_ratio != 1``), as the TSM code does; ``shift_div = 0`` disables it.
  """
  out_ch: int
  stride: int = 1
  expand_ratio: int = 6
  num_frames: int = 8
  shift_div: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    in_ch = x.shape[-1]
    hidden = int(in_ch * self.expand_ratio)
    use_res = self.stride == 1 and in_ch == self.out_ch
    h = x
    if self.expand_ratio != 1:
      if use_res and self.shift_div:
        h = temporal_shift(h, self.num_frames, self.shift_div)
      h = conv(hidden, 1, name="expand_conv", dtype=self.dtype)(h)
      h = relu6(batch_norm(train, name="expand_bn", dtype=self.dtype)(h))
    h = DepthwiseConv(hidden, (3, 3), self.stride, 1, use_bias=False, kernel_init=kaiming_fan_out,
                      dtype=self.dtype, name="dw_conv")(h)
    h = relu6(batch_norm(train, name="dw_bn", dtype=self.dtype)(h))
    h = conv(self.out_ch, 1, name="project_conv", dtype=self.dtype)(h)
    h = batch_norm(train, name="project_bn", dtype=self.dtype)(h)
    return x + h if use_res else h


class MobileNetV2TSM(nn.Module):
  """TSM-MobileNetV2 classifier on ``(N, T, H, W, 3)`` normalised clips -> ``(N, num_classes)`` logits.

  ``shift_div = 0`` gives the plain TSN MobileNetV2.
  """
  num_classes: int
  width_mult: float = 1.0
  shift_div: int = 8
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False, return_features: bool = False):
    n, t, h, w, c = video.shape
    x = video.reshape(n * t, h, w, c).astype(self.dtype)
    x = StemConvBN(FIRST_CHANNELS, dtype=self.dtype, name="stem")(x, train)
    for idx, _, out_ch, stride, expand in block_layout(self.width_mult):
      x = InvertedResidual(out_ch, stride, expand, t, self.shift_div, dtype=self.dtype,
                           name=f"block{idx}")(x, train)
    last = make_divisible(LAST_CHANNELS * self.width_mult) if self.width_mult > 1.0 else LAST_CHANNELS
    x = conv(last, 1, name="last_conv", dtype=self.dtype)(x)
    x = relu6(batch_norm(train, name="last_bn", dtype=self.dtype)(x))
    features = x
    x = jnp.mean(x, axis=(1, 2))
    logits = Classifier(self.num_classes, self.dropout, dtype=self.dtype, name="head")(x, train)
    logits = segment_consensus(logits.astype(jnp.float32), t)
    return (logits, features) if return_features else logits


class StemConvBN(nn.Module):
  """``conv 3x3 stride 2 pad 1 (no bias) -> BN -> ReLU6`` (torch ``features.0``)."""
  features: int = FIRST_CHANNELS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(self.features, 3, 2, 1, name="conv1", dtype=self.dtype)(x)
    return relu6(batch_norm(train, name="bn1", dtype=self.dtype)(x))
