"""Pointwise (1x1, 1x1x1) convolutions as matrix products on a CPU.

:func:`conv_general_dilated` is a drop-in for ``lax.conv_general_dilated`` that flax's ``nn.Conv`` calls
(its ``conv_general_dilated`` field): a convolution whose kernel is 1 in every spatial dim, without
padding, dilation or groups, on channels-last tensors, is computed as ``x[:, ::s, ..., :] reshaped
(P, C_in) @ kernel (C_in, C_out)`` when ``jax.default_backend() == 'cpu'``; anything else (and every
convolution on GPU/TPU) goes to ``lax.conv_general_dilated``. The parameters (``kernel (1, .., 1,
C_in, C_out)``, ``bias``), their initialisation and the flops tool's count (an ``nn.Conv`` module) are
those of ``nn.Conv``; only the XLA op changes.

Why: XLA:CPU lowers the *kernel gradient* of a 1x1 convolution to a convolution that wants the
activations transposed to ``(C, *spatial, N)``, a full transposed copy of each activation per layer.
The same layer as a ``dot`` has its gradients as two GEMMs over the untransposed data. Fwd + bwd of a
1x1x1 conv 54 -> 24 on ``(2, 16, 64, 64, 54)`` (X3D-M's first stage): 138 ms as a convolution, 16 ms as
a GEMM; 256 -> 64 on ``(2, 8, 28, 28, 256)`` (a ResNet-50 ``conv1``): 31 ms / 14 ms (2 CPU cores, one-off
measurements; ``bench/RESULTS.md`` records the effect on whole training steps).
ResNet bottlenecks have two such layers per block plus the shortcut, X3D blocks three plus SE.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
from jax import lax


def is_pointwise(rhs_shape: Sequence[int], window_strides, padding, lhs_dilation, rhs_dilation,
                 dimension_numbers, feature_group_count: int, batch_group_count: int) -> bool:
  """Whether the call is a channels-last 1x..x1 convolution with no padding, dilation or groups."""
  nd = len(rhs_shape) - 2
  if feature_group_count != 1 or batch_group_count != 1 or nd < 1:
    return False
  if any(d not in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ())):
    return False
  if isinstance(padding, str):  # 'SAME' pads nothing around a 1x1 kernel, whatever the stride
    if padding.upper() not in ("VALID", "SAME"):
      return False
  elif any(tuple(p) != (0, 0) for p in padding):
    return False
  dn = dimension_numbers
  if dn is None:
    return False
  if not isinstance(dn, lax.ConvDimensionNumbers):
    dn = lax.conv_dimension_numbers((1,) * (nd + 2), tuple(rhs_shape), dn)
  channels_last = tuple(range(1, nd + 1))
  return (tuple(dn.lhs_spec) == (0, nd + 1) + channels_last and tuple(dn.out_spec) == tuple(dn.lhs_spec)
          and tuple(dn.rhs_spec) == (nd + 1, nd) + tuple(range(nd))
          and all(int(k) == 1 for k in rhs_shape[:nd]))


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding: Any, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated``, with channels-last pointwise convolutions done as one GEMM on CPU."""
  if jax.default_backend() != "cpu" or not is_pointwise(
      rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count,
                                    batch_group_count=batch_group_count, precision=precision,
                                    preferred_element_type=preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  if any(s != 1 for s in strides):  # a 1x1 kernel with stride s reads every s-th position from the first
    lhs = lax.slice(lhs, (0,) * lhs.ndim, lhs.shape, (1,) + strides + (1,))
  out_spatial = lhs.shape[:-1]
  w = rhs.reshape(rhs.shape[-2], rhs.shape[-1])
  y = lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), w, (((1,), (0,)), ((), ())), precision=precision,
                      preferred_element_type=preferred_element_type)
  return y.reshape(out_spatial + (w.shape[-1],))
