"""Layers shared by the backbones, initialised as the PyTorch reference does.

* Convolutions: ``kaiming_normal_(mode='fan_out', nonlinearity='relu')`` (torchvision ResNet, X3D).
* BatchNorm: eps 1e-5, PyTorch momentum 0.1 (= Flax momentum 0.9), gamma 1, beta 0.
* Classifier: weight ~ N(0, 0.001), bias 0 (TSN ``new_fc``, REFERENCE.md section 2).
Padding is always explicit and symmetric, as PyTorch pads (REFERENCE.md section 1).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidjax.ops import pointwise

kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
fc_init = nn.initializers.normal(stddev=0.001)


def conv(features: int, kernel: int | Sequence[int], stride: int | Sequence[int] = 1,
         padding: int | Sequence[int] | None = None, *, groups: int = 1, bias: bool = False,
         name: str | None = None, dtype: Any = jnp.float32, kernel_init=kaiming_fan_out) -> nn.Conv:
  """A PyTorch-style convolution: symmetric explicit padding ``(k - 1) // 2`` unless given."""
  kernel = (kernel,) * 2 if isinstance(kernel, int) else tuple(kernel)
  nd = len(kernel)
  stride = (stride,) * nd if isinstance(stride, int) else tuple(stride)
  if padding is None:
    padding = tuple((k - 1) // 2 for k in kernel)
  elif isinstance(padding, int):
    padding = (padding,) * nd
  return nn.Conv(features, kernel, strides=stride, padding=[(p, p) for p in padding],
                 feature_group_count=groups, use_bias=bias, kernel_init=kernel_init,
                 dtype=dtype, name=name, conv_general_dilated=pointwise.conv_general_dilated)


def batch_norm(train: bool, *, name: str | None = None, zero_init: bool = False,
               momentum: float = 0.9, dtype: Any = jnp.float32) -> nn.BatchNorm:
  """BatchNorm with PyTorch defaults; ``zero_init`` sets gamma = beta = 0 (block is identity at init)."""
  zeros = nn.initializers.zeros
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      scale_init=zeros if zero_init else nn.initializers.ones,
                      bias_init=zeros, dtype=dtype, name=name)


def max_pool_3x3_s2(x: jnp.ndarray) -> jnp.ndarray:
  """``MaxPool2d(3, stride=2, padding=1)``: pads with -inf, output ``ceil(H / 2)``."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class Classifier(nn.Module):
  """Dropout then ``Linear(C, num_classes)``, named ``fc`` so the optimiser finds it (lr x5/x10)."""
  num_classes: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=fc_init, bias_init=nn.initializers.zeros,
                    dtype=self.dtype, name="fc")(x)


def segment_consensus(logits: jnp.ndarray, num_frames: int) -> jnp.ndarray:
  """Average consensus of TSN: ``(N*T, K)`` logits -> ``(N, K)`` mean over T (no softmax)."""
  nt, k = logits.shape
  return logits.reshape(nt // num_frames, num_frames, k).mean(axis=1)
