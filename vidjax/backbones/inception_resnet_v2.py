"""Inception-ResNet-v2 (Szegedy et al. 2017): the backbone of TeSNet (thesis section 3.2.3, Table 3.2).

Layer for layer the TF-slim / Keras / timm ``inception_resnet_v2`` network (299^2 input, 1536-d
features): stem ``Conv2d_1a_3x3 (32, s2, valid) -> Conv2d_2a_3x3 (32, valid) -> Conv2d_2b_3x3 (64) ->
MaxPool_3a (3, s2) -> Conv2d_3b_1x1 (80) -> Conv2d_4a_3x3 (192, valid) -> MaxPool_5a (3, s2)``,
``Mixed_5b`` (320), 10 x Block35 ("Block A", scale 0.17), ``Mixed_6a`` (1088), 20 x Block17
("Block B", scale 0.10), ``Mixed_7a`` (2080), 9 x Block8 ("Block C", scale 0.20) + a final Block8
(scale 1, no ReLU), ``Conv2d_7b_1x1`` (1536), global average pool, dropout, ``fc``.
Every "BasicConv" is conv (no bias) -> BN (eps 1e-3, as TF/timm) -> ReLU; the residual up-projection
1x1 convs of the blocks have a bias and no BN. Strided convs/pools are 'valid' (no padding); stride-1
convs use symmetric ``(k - 1) // 2`` padding; the Mixed_5b average pool excludes padding from the
count. With 1000 classes: 55,843,464 parameters (timm; = Keras' 55,813,192 trainable + the 30,272 BN
scales Keras omits).

Frames are folded into the batch: ``(N, T, H, W, C)`` in, ``(N*T, H, W, C)`` inside, logits averaged over
the frames at the end (segment consensus). ``insert`` hooks modules *after* named points (thesis
Table 3.2: "Conv2d_1a_3x3", "Conv2d_4a_3x3", "Block A", "Block B"): a tuple of ``(point, factory)``,
``factory(channels, name)`` returning a module called as ``module(x, num_frames=T, train=train)`` on
``(N*T, H, W, C)``; it may change the number of frames (TSP: T -> D), which is read back from the
batch size. Points: ``INSERT_POINTS``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidjax.backbones.layers import Classifier, kaiming_fan_out, segment_consensus
from vidjax.ops import pointwise

INSERT_POINTS = ("input", "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
                 "maxpool_5a", "mixed_5b", "block_a", "mixed_6a", "block_b", "mixed_7a", "block_c",
                 "conv2d_7b")
# Table 3.2 names -> insert points.
THESIS_POINT_NAMES = {"Input": "input", "Conv2d_1a_3x3": "conv2d_1a", "Conv2d_4a_3x3": "conv2d_4a",
                      "Block A": "block_a", "Block B": "block_b"}


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv(nn.Module):
  """conv (no bias) -> BN(eps 1e-3) -> ReLU; ``padding`` per spatial dim (symmetric), 0 = valid."""
  features: int
  kernel: Any
  stride: int = 1
  padding: Any = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    k = _pair(self.kernel)
    p = _pair(self.padding)
    x = nn.Conv(self.features, k, strides=(self.stride,) * 2, padding=[(p[0], p[0]), (p[1], p[1])],
                use_bias=False, kernel_init=kaiming_fan_out, dtype=self.dtype, name="conv",
                conv_general_dilated=pointwise.conv_general_dilated)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3, dtype=self.dtype,
                     name="bn")(x)
    return nn.relu(x)


def _max_pool_valid(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class Mixed5b(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = lambda f, k, p=0, name=None: BasicConv(f, k, 1, p, self.dtype, name=name)
    b0 = c(96, 1, name="branch0")(x, train)
    b1 = c(48, 1, name="branch1_0")(x, train)
    b1 = c(64, 5, 2, name="branch1_1")(b1, train)
    b2 = c(64, 1, name="branch2_0")(x, train)
    b2 = c(96, 3, 1, name="branch2_1")(b2, train)
    b2 = c(96, 3, 1, name="branch2_2")(b2, train)
    b3 = nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)
    b3 = c(64, 1, name="branch3_1")(b3, train)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class Block35(nn.Module):
  """Inception-ResNet-A ("Block A"): 320 -> 320."""
  scale: float = 0.17
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = lambda f, k, p=0, name=None: BasicConv(f, k, 1, p, self.dtype, name=name)
    b0 = c(32, 1, name="branch0")(x, train)
    b1 = c(32, 1, name="branch1_0")(x, train)
    b1 = c(32, 3, 1, name="branch1_1")(b1, train)
    b2 = c(32, 1, name="branch2_0")(x, train)
    b2 = c(48, 3, 1, name="branch2_1")(b2, train)
    b2 = c(64, 3, 1, name="branch2_2")(b2, train)
    out = jnp.concatenate([b0, b1, b2], axis=-1)
    out = nn.Conv(x.shape[-1], (1, 1), use_bias=True, kernel_init=kaiming_fan_out, dtype=self.dtype,
                  name="conv2d",
                  conv_general_dilated=pointwise.conv_general_dilated)(out)
    return nn.relu(x + self.scale * out)


class Mixed6a(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    b0 = BasicConv(384, 3, 2, 0, self.dtype, name="branch0")(x, train)
    b1 = BasicConv(256, 1, 1, 0, self.dtype, name="branch1_0")(x, train)
    b1 = BasicConv(256, 3, 1, 1, self.dtype, name="branch1_1")(b1, train)
    b1 = BasicConv(384, 3, 2, 0, self.dtype, name="branch1_2")(b1, train)
    b2 = _max_pool_valid(x)
    return jnp.concatenate([b0, b1, b2], axis=-1)


class Block17(nn.Module):
  """Inception-ResNet-B ("Block B"): 1088 -> 1088."""
  scale: float = 0.10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    b0 = BasicConv(192, 1, 1, 0, self.dtype, name="branch0")(x, train)
    b1 = BasicConv(128, 1, 1, 0, self.dtype, name="branch1_0")(x, train)
    b1 = BasicConv(160, (1, 7), 1, (0, 3), self.dtype, name="branch1_1")(b1, train)
    b1 = BasicConv(192, (7, 1), 1, (3, 0), self.dtype, name="branch1_2")(b1, train)
    out = jnp.concatenate([b0, b1], axis=-1)
    out = nn.Conv(x.shape[-1], (1, 1), use_bias=True, kernel_init=kaiming_fan_out, dtype=self.dtype,
                  name="conv2d",
                  conv_general_dilated=pointwise.conv_general_dilated)(out)
    return nn.relu(x + self.scale * out)


class Mixed7a(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = lambda f, k, s=1, p=0, name=None: BasicConv(f, k, s, p, self.dtype, name=name)
    b0 = c(256, 1, name="branch0_0")(x, train)
    b0 = c(384, 3, 2, name="branch0_1")(b0, train)
    b1 = c(256, 1, name="branch1_0")(x, train)
    b1 = c(288, 3, 2, name="branch1_1")(b1, train)
    b2 = c(256, 1, name="branch2_0")(x, train)
    b2 = c(288, 3, 1, 1, name="branch2_1")(b2, train)
    b2 = c(320, 3, 2, name="branch2_2")(b2, train)
    b3 = _max_pool_valid(x)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class Block8(nn.Module):
  """Inception-ResNet-C ("Block C"): 2080 -> 2080."""
  scale: float = 0.20
  activate: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    b0 = BasicConv(192, 1, 1, 0, self.dtype, name="branch0")(x, train)
    b1 = BasicConv(192, 1, 1, 0, self.dtype, name="branch1_0")(x, train)
    b1 = BasicConv(224, (1, 3), 1, (0, 1), self.dtype, name="branch1_1")(b1, train)
    b1 = BasicConv(256, (3, 1), 1, (1, 0), self.dtype, name="branch1_2")(b1, train)
    out = jnp.concatenate([b0, b1], axis=-1)
    out = nn.Conv(x.shape[-1], (1, 1), use_bias=True, kernel_init=kaiming_fan_out, dtype=self.dtype,
                  name="conv2d",
                  conv_general_dilated=pointwise.conv_general_dilated)(out)
    out = x + self.scale * out
    return nn.relu(out) if self.activate else out


class InceptionResNetV2(nn.Module):
  """``(N, T, H, W, C)`` clip -> ``(N, num_classes)`` logits (frames as batch, mean over frames).

  ``block_repeats`` = (A, B, C) number of Block35/Block17/Block8 before the final Block8 (10, 20, 9 in
  the real network; tests use fewer).
  """
  num_classes: int
  dropout: float = 0.5
  block_repeats: Sequence[int] = (10, 20, 9)
  insert: Sequence[tuple[str, Callable[..., nn.Module]]] = ()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video, train: bool = False, return_features: bool = False):
    n, t, h, w, c = video.shape
    hooks = dict(self.insert)
    unknown = set(hooks) - set(INSERT_POINTS)
    if unknown:
      raise ValueError(f"unknown insert points {sorted(unknown)}; choose from {INSERT_POINTS}")
    x = video.reshape(n * t, h, w, c).astype(self.dtype)

    def point(name, x):
      if name in hooks:
        frames = x.shape[0] // n
        x = hooks[name](x.shape[-1], f"{name}_insert")(x, num_frames=frames, train=train)
      return x

    dt = self.dtype
    x = point("input", x)
    x = point("conv2d_1a", BasicConv(32, 3, 2, 0, dt, name="conv2d_1a")(x, train))
    x = point("conv2d_2a", BasicConv(32, 3, 1, 0, dt, name="conv2d_2a")(x, train))
    x = point("conv2d_2b", BasicConv(64, 3, 1, 1, dt, name="conv2d_2b")(x, train))
    x = point("maxpool_3a", _max_pool_valid(x))
    x = point("conv2d_3b", BasicConv(80, 1, 1, 0, dt, name="conv2d_3b")(x, train))
    x = point("conv2d_4a", BasicConv(192, 3, 1, 0, dt, name="conv2d_4a")(x, train))
    x = point("maxpool_5a", _max_pool_valid(x))
    x = point("mixed_5b", Mixed5b(dt, name="mixed_5b")(x, train))
    ra, rb, rc = self.block_repeats
    for i in range(ra):
      x = Block35(0.17, dt, name=f"block_a_{i}")(x, train)
    x = point("block_a", x)
    x = point("mixed_6a", Mixed6a(dt, name="mixed_6a")(x, train))
    for i in range(rb):
      x = Block17(0.10, dt, name=f"block_b_{i}")(x, train)
    x = point("block_b", x)
    x = point("mixed_7a", Mixed7a(dt, name="mixed_7a")(x, train))
    for i in range(rc):
      x = Block8(0.20, True, dt, name=f"block_c_{i}")(x, train)
    x = Block8(1.0, False, dt, name="block_c_final")(x, train)
    x = point("block_c", x)
    x = point("conv2d_7b", BasicConv(1536, 1, 1, 0, dt, name="conv2d_7b")(x, train))
    features = x
    frames = x.shape[0] // n
    x = jnp.mean(x, axis=(1, 2))
    logits = Classifier(self.num_classes, self.dropout, dtype=dt, name="head")(x, train)
    logits = segment_consensus(logits.astype(jnp.float32), frames)
    return (logits, features) if return_features else logits
