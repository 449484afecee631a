"""TSM-ResNet-50/101 (Lin et al. TSM on torchvision ResNet v1.5), REFERENCE.md section 2.

Frames are folded into the batch: the backbone sees ``(N*T, H, W, C)`` with the T frames of a clip
contiguous. In every bottleneck the input of the residual branch (``conv1``) is temporally shifted
(1/8 of the channels each way, zero at clip ends); the identity path is not. T is constant through
the net (no temporal pooling). The head averages the logits of the T frames (segment consensus).

``zero_init_residual`` (torchvision's option; off in the reference, which starts from ImageNet weights)
sets the last BN gamma (and beta) of every bottleneck to 0 so each block starts as the identity: the
stable choice for training from scratch, used by the synthetic demo.

``width`` multiplies every channel count (1.0 is the thesis' network; tests and the demo use a narrow
one). Names follow torchvision (``conv1``, ``bn1``, ``layer2_0/conv1`` ...) so PyTorch weights map 1:1.

Attention blocks (chapter 4) are inserted *after* chosen residual blocks through ``insert``: a tuple of
``(stage, block, factory)`` where stage is 1..4 (res2..res5) and ``factory(channels, name)`` returns a
module called as ``module(x, num_frames=T, train=train)`` on ``(N*T, H, W, C)``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidjax.backbones.layers import (Classifier, batch_norm, conv, max_pool_3x3_s2,
                                     segment_consensus)
from vidjax.ops.temporal_shift import temporal_shift

STAGE_SIZES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


def scaled(channels: int, width: float) -> int:
  return max(1, int(round(channels * width)))


class Bottleneck(nn.Module):
  """ResNet v1.5 bottleneck (stride on the 3x3 conv) with the TSM shift before ``conv1``.

  ``shift_div = 0`` disables the shift (a plain TSN ResNet block).
  """
  planes: int
  stride: int = 1
  num_frames: int = 8
  shift_div: int = 8
  downsample: bool = False
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    out_ch = self.planes * EXPANSION
    h = temporal_shift(x, self.num_frames, self.shift_div) if self.shift_div else x
    h = conv(self.planes, 1, name="conv1", dtype=self.dtype)(h)
    h = nn.relu(batch_norm(train, name="bn1", dtype=self.dtype)(h))
    h = conv(self.planes, 3, self.stride, name="conv2", dtype=self.dtype)(h)
    h = nn.relu(batch_norm(train, name="bn2", dtype=self.dtype)(h))
    h = conv(out_ch, 1, name="conv3", dtype=self.dtype)(h)
    h = batch_norm(train, name="bn3", dtype=self.dtype, zero_init=self.zero_init_residual)(h)
    identity = x
    if self.downsample:
      identity = conv(out_ch, 1, self.stride, name="downsample_conv", dtype=self.dtype)(x)
      identity = batch_norm(train, name="downsample_bn", dtype=self.dtype)(identity)
    return nn.relu(h + identity)


class ResNetStem(nn.Module):
  """``conv 7x7/2 p3 -> BN -> ReLU`` (the max-pool is applied by the caller)."""
  width: float = 1.0
  conv_name: str = "conv1"
  bn_name: str = "bn1"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv(scaled(64, self.width), 7, 2, 3, name=self.conv_name, dtype=self.dtype)(x)
    return nn.relu(batch_norm(train, name=self.bn_name, dtype=self.dtype)(x))


def stage_layout(depth: int, width: float, stage_sizes: Optional[Sequence[int]] = None):
  """Yields ``(stage, block, planes, stride, downsample)`` for every bottleneck, stage in 1..4."""
  sizes = tuple(stage_sizes) if stage_sizes else STAGE_SIZES[depth]
  in_ch = scaled(64, width)
  for s, (n, w) in enumerate(zip(sizes, STAGE_WIDTHS)):
    planes = scaled(w, width)
    for b in range(n):
      stride = 2 if (s > 0 and b == 0) else 1
      yield s + 1, b, planes, stride, (b == 0 and (stride != 1 or in_ch != planes * EXPANSION))
      in_ch = planes * EXPANSION


class TSMResNet(nn.Module):
  """TSM-ResNet classifier on ``(N, T, H, W, 3)`` normalised clips -> ``(N, num_classes)`` logits."""
  num_classes: int
  depth: int = 50
  width: float = 1.0
  stage_sizes: Optional[Sequence[int]] = None
  shift_div: int = 8
  dropout: float = 0.5
  zero_init_residual: bool = False
  insert: Sequence[tuple[int, int, Callable[..., nn.Module]]] = ()
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each bottleneck in the backward pass (memory for compute)


  @nn.compact
  def __call__(self, video, train: bool = False, return_features: bool = False):
    n, t, h, w, c = video.shape
    x = video.reshape(n * t, h, w, c).astype(self.dtype)
    x = ResNetStem(self.width, dtype=self.dtype, name="stem")(x, train)
    x = max_pool_3x3_s2(x)
    x = self.stages(x, t, train)
    features = x
    x = jnp.mean(x, axis=(1, 2))
    logits = Classifier(self.num_classes, self.dropout, dtype=self.dtype, name="head")(x, train)
    logits = segment_consensus(logits.astype(jnp.float32), t)
    return (logits, features) if return_features else logits

  def stages(self, x, t: int, train: bool):
    inserts = {(s, b): f for s, b, f in self.insert}
    block = nn.remat(Bottleneck, static_argnums=(2,)) if self.remat else Bottleneck  # (self, x, train)
    for s, b, planes, stride, down in stage_layout(self.depth, self.width, self.stage_sizes):
      x = block(planes, stride, t, self.shift_div, down, self.zero_init_residual, dtype=self.dtype,
                     name=f"layer{s}_{b}")(x, train)
      if (s, b) in inserts:
        x = inserts[(s, b)](x.shape[-1], f"layer{s}_{b}_attn")(x, num_frames=t, train=train)
    return x
