"""Pure functions of the chapter 4 attention blocks (thesis sections 4.2-4.3), no parameters.

Layout: clips are ``(N, T, H, W, C)``; the attention functions work on flattened positions
``(B, L, D)`` (``L = T*H*W``), queries ``q``, keys ``k`` and values ``v``.

Pairwise functions ``f`` of Eq. 4.4 with their normalisation ``C(x)`` (section 4.2.3), each returning
the normalised weights ``w[b, i, j] = f(q_i, k_j) / C(x)`` over the keys ``j``:

* ``gaussian``  Eq. 4.5: ``exp(q_i . k_j) / sum_j exp(q_i . k_j)``, i.e. a softmax over the keys with
  **no** ``1/sqrt(d)`` scaling (reference ``ops/rnl.py``: ``softmax(P^T P)``).
* ``dot``       Eq. 4.6: ``q_i . k_j / L``. The reference code's only dot-product path
  (``activation='relu'``) applies a ReLU first: ``ReLU(q_i . k_j) / L``; that is the default
  (``relu=True``), Eq. 4.6 as printed is ``relu=False``.
* ``cosine``    Eq. 4.7: ``ReLU(cos(q_i, k_j)) / L``; the vectors are L2-normalised over channels as
  ``torch.nn.functional.normalize`` does (``x / max(||x||, 1e-12)``).

Three implementations of ``y_i = sum_j w[i, j] v_j`` that give the same numbers:

* ``dense``: materialises the ``(B, L, L)`` weights (what the reference does; at res3 8x28x28 that is
  6,272^2 floats = 157 MB per clip, plus as much again for the backward pass).
* ``chunked``: ``lax.map`` over blocks of queries, each block's weights ``(B, q, L)`` recomputed in the
  backward pass (``jax.checkpoint``), so neither pass holds the full matrix. This is the default.
  XLA's cost analysis counts a loop body once, so the MACs of a model lowered with this path are
  under-counted; count with ``dense`` (``--config.model.attention.rnl.impl=dense``).
* ``sdpa``: ``jax.nn.dot_product_attention`` with ``scale=1`` (Gaussian only). On CPU and in XLA's own
  implementation it materialises the logits too; it exists for accelerators with a fused kernel.

Region aggregation ``F_theta`` of Eq. 4.3 / 4.9 (section 4.2.4): a channel-wise (depthwise) 3D
convolution, or average / max pooling, stride 1 and padding ``(k - 1) // 2`` per dimension. The
convolution is :func:`vidjax.ops.depthwise.depthwise_conv` (functional, outside the conv/linear MAC
count; shifted slices on a CPU, where XLA's grouped conv is very slow).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from vidjax.ops.depthwise import depthwise_conv

PAIRWISE = ("gaussian", "dot", "cosine")
IMPLS = ("dense", "chunked", "sdpa")


# --------------------------------------------------------------------------------------- layout
def to_clip(x: jnp.ndarray, num_frames: int | None):
  """``(N*T, H, W, C)`` frames-as-batch -> ``(N, T, H, W, C)`` and a function that undoes it.

  A 5D input is returned as is (``num_frames`` is then ignored).
  """
  if x.ndim == 5:
    return x, lambda y: y
  if x.ndim != 4 or not num_frames:
    raise ValueError(f"expected (N*T, H, W, C) with num_frames, or (N, T, H, W, C); got {x.shape}")
  nt, h, w, c = x.shape
  if nt % num_frames:
    raise ValueError(f"batch {nt} is not a multiple of num_frames={num_frames}")
  return x.reshape(nt // num_frames, num_frames, h, w, c), lambda y: y.reshape(nt, h, w, y.shape[-1])


def flatten_positions(x: jnp.ndarray) -> jnp.ndarray:
  """``(N, T, H, W, C)`` -> ``(N, T*H*W, C)``."""
  return x.reshape(x.shape[0], -1, x.shape[-1])


# ---------------------------------------------------------------------------- pairwise functions
def l2_normalize(x: jnp.ndarray, axis: int = -1, eps: float = 1e-12) -> jnp.ndarray:
  """``x / max(||x||_2, eps)`` along ``axis`` (``torch.nn.functional.normalize``)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=axis, keepdims=True))
  return (x / jnp.maximum(norm, eps)).astype(x.dtype)


def _logits(q, k):
  return jnp.einsum("bid,bjd->bij", q, k, preferred_element_type=jnp.float32)


def gaussian(q: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
  """Eq. 4.5 with ``C(x) = sum_j f``: softmax over the keys of ``q_i . k_j`` (float32)."""
  return jax.nn.softmax(_logits(q, k), axis=-1)


def dot(q: jnp.ndarray, k: jnp.ndarray, relu: bool = True, num_keys: int | None = None) -> jnp.ndarray:
  """Eq. 4.6 with ``C(x) = THW``: ``[ReLU](q_i . k_j) / L`` (float32)."""
  s = _logits(q, k)
  if relu:
    s = jax.nn.relu(s)
  return s / float(num_keys or k.shape[1])


def cosine(q: jnp.ndarray, k: jnp.ndarray, num_keys: int | None = None) -> jnp.ndarray:
  """Eq. 4.7 with ``C(x) = THW``: ``ReLU(cos(q_i, k_j)) / L`` (float32)."""
  return dot(l2_normalize(q), l2_normalize(k), relu=True, num_keys=num_keys)


def pairwise_weights(q: jnp.ndarray, k: jnp.ndarray, kind: str = "gaussian",
                     dot_relu: bool = True) -> jnp.ndarray:
  """Normalised weights ``(B, Lq, Lk)`` of one pairwise function (float32)."""
  if kind == "gaussian":
    return gaussian(q, k)
  if kind == "dot":
    return dot(q, k, relu=dot_relu)
  if kind == "cosine":
    return cosine(q, k)
  raise ValueError(f"pairwise function must be one of {PAIRWISE}, got {kind!r}")


# ------------------------------------------------------------------------------ implementations
def _weighted_sum(w, v):
  return jnp.einsum("bij,bjd->bid", w.astype(v.dtype), v)


def dense_attention(q, k, v, kind: str = "gaussian", dot_relu: bool = True) -> jnp.ndarray:
  """``y_i = sum_j w[i, j] v_j`` with the full ``(B, Lq, Lk)`` weight matrix."""
  return _weighted_sum(pairwise_weights(q, k, kind, dot_relu), v)


def chunk_layout(length: int, chunk_size: int) -> tuple[int, int]:
  """``(num_chunks, chunk)`` with ``num_chunks * chunk >= length``, chunks as even as possible."""
  num = max(1, math.ceil(length / max(1, chunk_size)))
  return num, math.ceil(length / num)


def chunked_attention(q, k, v, kind: str = "gaussian", dot_relu: bool = True,
                      chunk_size: int = 1024) -> jnp.ndarray:
  """Same as :func:`dense_attention`, one block of at most ``chunk_size`` queries at a time.

  Peak memory of the weights is ``B * chunk * Lk`` instead of ``B * Lq * Lk``, in the forward and
  (through ``jax.checkpoint`` of the block function) in the backward pass.
  """
  b, lq, d = q.shape
  num, chunk = chunk_layout(lq, chunk_size)
  if num == 1:
    return dense_attention(q, k, v, kind, dot_relu)
  if kind == "cosine":  # normalise once; per block it is then a ReLU dot product
    q, k, kind, dot_relu = l2_normalize(q), l2_normalize(k), "dot", True
  pad = num * chunk - lq
  qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0))) if pad else q
  blocks = jnp.moveaxis(qp.reshape(b, num, chunk, d), 1, 0)  # (num, B, chunk, d)

  @jax.checkpoint
  def one(qb):
    return _weighted_sum(pairwise_weights(qb, k, kind, dot_relu), v)

  out = lax.map(one, blocks)  # (num, B, chunk, dv)
  out = jnp.moveaxis(out, 0, 1).reshape(b, num * chunk, v.shape[-1])
  return out[:, :lq] if pad else out


def sdpa_attention(q, k, v) -> jnp.ndarray:
  """Gaussian attention through ``jax.nn.dot_product_attention`` (one head, ``scale=1``).

  That function wants equal query and value widths; zero channels are appended to the narrower
  (they change neither the logits nor the kept outputs).
  """
  d, dv = q.shape[-1], v.shape[-1]
  width = max(d, dv)
  pad = lambda a: jnp.pad(a, ((0, 0), (0, 0), (0, width - a.shape[-1])))[:, :, None, :]
  out = jax.nn.dot_product_attention(pad(q), pad(k), pad(v), scale=1.0)
  return out[:, :, 0, :dv]


def attention(q, k, v, kind: str = "gaussian", impl: str = "chunked", chunk_size: int = 1024,
              dot_relu: bool = True) -> jnp.ndarray:
  """``y_i = sum_j f(q_i, k_j) / C(x) * v_j`` (Eq. 4.1 / 4.4) with the chosen implementation."""
  if impl == "dense":
    return dense_attention(q, k, v, kind, dot_relu)
  if impl == "chunked":
    return chunked_attention(q, k, v, kind, dot_relu, chunk_size)
  if impl == "sdpa":
    if kind != "gaussian":
      raise ValueError("impl='sdpa' is the softmax (Gaussian) pairwise function only")
    return sdpa_attention(q, k, v)
  raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


# ------------------------------------------------------------------------ region aggregation F_theta
def same_padding(kernel_size: Sequence[int]) -> list[tuple[int, int]]:
  """Reference padding ``(k - 1) // 2`` per side; only odd kernels keep the size (Eq. 4.9 needs it)."""
  if any(k % 2 == 0 for k in kernel_size):
    raise ValueError(f"F_theta kernel {tuple(kernel_size)} must be odd in every dimension")
  return [((k - 1) // 2, (k - 1) // 2) for k in kernel_size]


def channelwise_conv3d(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """Eq. 4.3: ``theta(N_i) = sum_{k in N_i} u_k * x_k`` per channel (depthwise 3D conv, stride 1).

  Args:
    x: ``(N, T, H, W, C)``.
    kernel: ``(kt, kh, kw, 1, C)`` (Flax depthwise layout), the taps ``u_k`` of every channel.
  """
  return depthwise_conv(x, kernel.astype(x.dtype), 1, same_padding(kernel.shape[:3]))


def avg_pool3d(x: jnp.ndarray, kernel_size: Sequence[int]) -> jnp.ndarray:
  """Average over the cuboid ``N_i`` (zero padding counted, as ``AvgPool3d`` by default)."""
  pads = [(0, 0)] + same_padding(kernel_size) + [(0, 0)]
  s = lax.reduce_window(x, jnp.zeros((), x.dtype), lax.add, (1, *kernel_size, 1), (1,) * 5, pads)
  return s / math.prod(kernel_size)


def max_pool3d(x: jnp.ndarray, kernel_size: Sequence[int]) -> jnp.ndarray:
  """Maximum over the cuboid ``N_i`` (padding never wins)."""
  pads = [(0, 0)] + same_padding(kernel_size) + [(0, 0)]
  return lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), lax.max, (1, *kernel_size, 1), (1,) * 5, pads)


def region_aggregate(x: jnp.ndarray, kind: str, kernel_size: Sequence[int],
                     kernel: jnp.ndarray | None = None) -> jnp.ndarray:
  """``F_theta`` of Eq. 4.9: ``'conv'`` (needs ``kernel``), ``'avg'`` or ``'max'``."""
  if kind == "conv":
    return channelwise_conv3d(x, kernel)
  if kind == "avg":
    return avg_pool3d(x, kernel_size)
  if kind == "max":
    return max_pool3d(x, kernel_size)
  raise ValueError(f"aggregation must be conv, avg or max; got {kind!r}")


def softmax_positions(a: jnp.ndarray) -> jnp.ndarray:
  """Softmax of ``(N, T, H, W, 1)`` scores over ``T, H, W`` of each clip (Eq. 4.10's sigma)."""
  n = a.shape[0]
  return jax.nn.softmax(a.reshape(n, -1).astype(jnp.float32), axis=-1).reshape(a.shape)


def flat_index(positions: Sequence[Sequence[int]], grid: Sequence[int]) -> jnp.ndarray:
  """Flat indices of ``(t, h, w)`` positions in a ``(T, H, W)`` grid."""
  t, h, w = grid
  idx = []
  for p in positions:
    pt, ph, pw = (int(v) for v in p)
    if not (0 <= pt < t and 0 <= ph < h and 0 <= pw < w):
      raise ValueError(f"query position {tuple(p)} outside the grid {tuple(grid)}")
    idx.append((pt * h + ph) * w + pw)
  return jnp.asarray(idx, jnp.int32)

