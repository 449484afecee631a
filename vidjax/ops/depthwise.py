"""Depthwise (channel-wise, multiplier 1) convolution with a fast CPU path.

``y[n, o, c] = sum_{tap} w[tap, 0, c] * x_pad[n, o * s + tap, c]`` -- the cross-correlation PyTorch's
``nn.Conv{2,3}d(C, C, k, stride=s, padding=p, groups=C)`` computes, on channels-last tensors
``x (N, *spatial, C)`` with kernels ``(*k, 1, C)`` (the layout of a flax ``nn.Conv(feature_group_count=C)``
kernel, so parameter trees, checkpoints and the torch converters do not change).

Why: XLA's CPU backend has no fast path for grouped convolutions. A 3x3x3 depthwise conv on
``(2, 4, 32, 32, 54)`` takes about 0.36 s forward and 0.6 s / 0.4 s for the input / weight gradients
there (PyTorch: 2 ms), which makes X3D (its 3x3x3 ``conv_b``), MobileNetV2, the MBPM of thesis section
5.3 (Eqs. 5.1-5.3), the BPLC MBPMs (Eq. 5.5) and RNL's channel-wise ``F_theta`` (Eq. 4.3) far slower on
a CPU than the author's PyTorch code. Two implementations give the same numbers (up to float rounding):

* ``'conv'``: ``lax.conv_general_dilated(..., feature_group_count=C)`` -- what ``nn.Conv`` does; fast on
  GPU / TPU.
* ``'shifts'``: pad once, then sum over the ``prod(k)`` kernel taps of the strided slice of the padded
  input times that tap's per-channel weights; XLA fuses it into one loop. Products and sums are in
  float32 for 16-bit inputs (one rounding at the end), else in the input dtype. The forward sum over taps
  is Kahan-compensated, so it adds about no error to that of the rounded products whatever the number
  of taps (147 for a 3x7x7 ``F_theta``; a plain sum's error grows with it): as accurate as XLA's conv or
  more. Derivatives (a ``custom_jvp``, so forward and reverse mode both work): the input tangent is the
  plain tap sum (transposed by JAX into pads and adds); the kernel tangent is :func:`_banded_sum`, whose
  transpose is one GEMM per channel along a stride-1 axis (per-tap reductions when every axis with a
  kernel > 1 is strided). Results are fenced (:func:`_fence`) so that XLA's fusion does not recompute
  the tap loop inside its consumers. On 2 shared CPU cores, 3x3x3 on ``(2, 4, 32, 32, 54)``: forward
  ~8 ms (``'conv'`` ~400 ms), + input grad ~15 ms (~600 ms), + kernel grad ~40 ms (~500 ms).

``impl=None`` uses the module default :data:`DEFAULT_IMPL` (``'auto'``: ``'shifts'`` when
``jax.default_backend() == 'cpu'``, else ``'conv'``). :func:`use_impl` forces one implementation for
everything traced inside it (it wins over an explicit ``impl`` argument too); ``vidjax.tools.flops``
lowers models under ``use_impl('conv')`` so that XLA's cost analysis (``gmacs_total``) sees convolutions,
as before. The choice is made when a function is *traced*: a function jitted before entering
``use_impl`` keeps the implementation it was traced with.

Padding here is zero padding, explicit per spatial dim (PyTorch style); reflect / replicate padding
(the MBPM) stays the caller's ``jnp.pad``.

:class:`DepthwiseConv` is the module form: parameters ``kernel (*k, 1, C)`` and ``bias (C,)`` named,
shaped and initialised as those of ``nn.Conv(C, k, feature_group_count=C)``.
``vidjax.tools.flops.count_conv_linear_macs`` counts it as that ``nn.Conv`` (``prod(out) * prod(k)``
MACs), while the functional :func:`depthwise_conv` stays uncounted, like ``lax.conv``.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import operator
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("conv", "shifts")
DEFAULT_IMPL = "auto"  # 'auto', 'conv' or 'shifts'
_forced: list = [None]  # set by use_impl (a process-wide global; not thread-safe)

Padding = Union[int, Sequence[int], Sequence[Sequence[int]]]


def _check(name: str, allow_auto: bool = True) -> str:
  valid = IMPLS + (("auto",) if allow_auto else ())
  if name not in valid:
    raise ValueError(f"depthwise impl must be one of {valid}, got {name!r}")
  return name


@contextlib.contextmanager
def use_impl(name: str) -> Iterator[None]:
  """Force ``'conv'``, ``'shifts'`` or ``'auto'`` for every :func:`depthwise_conv` traced inside."""
  _check(name)
  prev = _forced[0]
  _forced[0] = name
  try:
    yield
  finally:
    _forced[0] = prev


def resolve_impl(impl: Optional[str] = None) -> str:
  """The implementation a call with ``impl`` uses now: ``'conv'`` or ``'shifts'``."""
  name = _forced[0] or impl or DEFAULT_IMPL
  _check(name)
  if name == "auto":
    return "shifts" if jax.default_backend() == "cpu" else "conv"
  return name


def _tuple(v, nd: int, what: str) -> tuple:
  if isinstance(v, int):
    return (v,) * nd
  v = tuple(v)
  if len(v) != nd:
    raise ValueError(f"{what} {v} has {len(v)} entries for {nd} spatial dims")
  return v


def _pairs(padding: Padding, nd: int) -> tuple[tuple[int, int], ...]:
  if isinstance(padding, str):
    if padding.upper() != "VALID":
      raise ValueError(f"padding must be explicit (ints or pairs) or 'VALID', got {padding!r}")
    return ((0, 0),) * nd
  pads = _tuple(padding, nd, "padding")
  return tuple((int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in pads)


def _dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
  # channels-last input/output, kernel (*spatial, in, out): what flax's nn.Conv uses.
  lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
  rhs = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
  return lax.ConvDimensionNumbers(lhs, rhs, lhs)


def _conv(x, kernel, strides, pads, precision):
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_dimension_numbers(x.ndim),
                                  feature_group_count=x.shape[-1], precision=precision)


def _fence(v, ref):
  """``v`` (an array or a tuple of arrays) unchanged, materialised: on a CPU, XLA fuses nothing that computes ``v`` into its consumers.

  XLA's CPU fusion otherwise pulls a whole elementwise tap loop into whatever reads its result: into each
  of the three slices of a following temporal conv (the MBPM's LoG -> H: 20x slower), into the operands
  of the transposed-conv / GEMM of the backward pass (2-3x slower), or, for a full reduction, into a
  YNNPACK fusion that materialises every tap separately (4-8x slower). A ``lax.cond`` is a fusion
  boundary (``optimization_barrier`` is not: XLA removes it before fusion); its predicate is ``isnan``
  of an entry of ``ref`` (the kernel: data-dependent, so XLA keeps the cond; a primal value, so that
  the cond transposes where ``v`` is a tangent; replicated, so that no collective is needed where
  activations are sharded) and both branches return ``v``. Elsewhere (GPU/TPU, where a
  cond would synchronise with the host) ``v`` is returned as is.
  """
  if jax.default_backend() != "cpu":
    return v
  first = lax.slice(ref.reshape(-1), (0,), (1,))[0]
  return lax.cond(first != first, lambda u: jax.tree.map(lambda a: a + 0, u), lambda u: u, v)


MAX_FUSED_TAPS = 98  # taps per fused loop (XLA's CPU code for one loop over 147 taps is 3-10x slower)


KAHAN_CHAINS = 4  # independent compensated accumulators per fused loop


def _kahan_add(state, v):
  """One step of Kahan summation; ``state = (total, comp)`` or None, ``comp`` None when exact so far."""
  if state is None:
    return v, None
  total, comp = state
  y = v if comp is None else v - comp
  t = total + y
  return t, (t - total) - y


def _tap_sum(x, kernel, strides, pads, compensated, ref):
  """``sum_tap slice_tap(pad(x)) * w[tap]``; Kahan-compensated (``compensated``) or pairwise.

  The taps run in chunks of at most :data:`MAX_FUSED_TAPS`, one fused loop each, fenced apart
  (:func:`_fence`, predicate on the primal ``ref``).
  """
  nd = x.ndim - 2
  ks = kernel.shape[:nd]
  acc_dtype = jnp.promote_types(jnp.result_type(x, kernel), jnp.float32)
  out_dtype = jnp.result_type(x, kernel)
  if any(lo or hi for lo, hi in pads):
    x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  sizes = x.shape[1:-1]
  out = tuple((n - k) // s + 1 for n, k, s in zip(sizes, ks, strides))
  if any(o <= 0 for o in out):
    raise ValueError(f"depthwise conv: kernel {ks} larger than the padded input {sizes}")
  x = x.astype(acc_dtype)
  w = kernel.reshape(*ks, kernel.shape[-1]).astype(acc_dtype)
  taps = list(itertools.product(*(range(k) for k in ks)))
  n_chunks = -(-len(taps) // MAX_FUSED_TAPS)
  size = -(-len(taps) // n_chunks)

  def term(tap):
    start = (0,) + tap + (0,)
    limit = (x.shape[0],) + tuple(t + (o - 1) * s + 1 for t, o, s in zip(tap, out, strides)) + (x.shape[-1],)
    return lax.slice(x, start, limit, (1,) + tuple(strides) + (1,)) * w[tap]

  if compensated:  # Kahan: the error does not grow with the number of taps (147 for 3x7x7)
    state = None  # (total, comp) carried from chunk to chunk; comp = what the total has in excess
    for i in range(0, len(taps), size):
      # KAHAN_CHAINS interleaved accumulators per loop (one chain alone is latency-bound), merged at
      # the end of the chunk
      chains = [None] * KAHAN_CHAINS
      if state is not None:
        chains[0] = _fence(state, ref)
      for j, tap in enumerate(taps[i:i + size]):
        chains[j % KAHAN_CHAINS] = _kahan_add(chains[j % KAHAN_CHAINS], term(tap))
      chains = [c for c in chains if c is not None]
      state = chains[0]
      for total, comp in chains[1:]:
        state = _kahan_add(state, total)
        if comp is not None:
          state = _kahan_add(state, -comp)
    total, comp = state
    return _fence((total if comp is None else total - comp).astype(out_dtype), ref)
  partials = []
  for i in range(0, len(taps), size):
    terms = [term(tap) for tap in taps[i:i + size]]
    while len(terms) > 1:  # pairwise: rounding error grows with log2(taps)
      terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j] for j in range(0, len(terms), 2)]
    partials.append(terms[0] if n_chunks == 1 else _fence(terms[0], ref))
  return functools.reduce(operator.add, partials).astype(out_dtype)


BAND_TILE = 16  # output columns per banded matrix in _banded_sum (measured best of 4 / 8 / 16 on a CPU)


def _band_axis(ks, strides) -> Optional[int]:
  """The spatial axis :func:`_banded_sum` runs along: the largest kernel among stride-1 axes, or None."""
  axes = [i for i in range(len(ks)) if strides[i] == 1 and ks[i] > 1]
  return max(axes, key=lambda i: (ks[i], i)) if axes else None


def _banded_sum(x, kernel, strides, pads, d, tile=BAND_TILE):
  """The same convolution as :func:`_tap_sum`, as batched matmuls with banded (Toeplitz) matrices.

  Along spatial axis ``d`` (stride 1), the output is cut into tiles of ``tile`` positions; tile ``j``
  needs the ``U = tile + k_d - 1`` inputs from ``j * tile``, and ``y[.., j, v] = sum_u xw[.., j, u] *
  B[u, v]`` with ``B[u, v] = w[u - v]`` (0 outside the kernel), one matrix per tap of the other axes and
  channel. Linear in ``kernel``; what it is for is its *transpose* with respect to the kernel, which JAX
  derives as ``einsum(windows, cotangent)`` (a GEMM per channel, contracting over batch and positions)
  followed by sums along the bands -- on a CPU several times faster than one reduction per tap.
  """
  nd = x.ndim - 2
  ks = kernel.shape[:nd]
  c = x.shape[-1]
  acc_dtype = jnp.promote_types(jnp.result_type(x, kernel), jnp.float32)
  out_dtype = jnp.result_type(x, kernel)
  x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),)).astype(acc_dtype)
  out = tuple((n - k) // s + 1 for n, k, s in zip(x.shape[1:-1], ks, strides))
  ax, kd, od = 1 + d, ks[d], out[d]
  tw = min(tile, od)
  nj = -(-od // tw)
  u_len = tw + kd - 1
  need = nj * tw + kd - 1
  if need > x.shape[ax]:  # zeros past the end: only outputs beyond ``od`` see them, and they are cut
    x = jnp.pad(x, [(0, 0)] * ax + [(0, need - x.shape[ax])] + [(0, 0)] * (x.ndim - ax - 1))
  # windows (N, ..., J, U, ..., C): xw[.., j, u, ..] = x[.., j * tw + u, ..]
  xw = jnp.stack([lax.slice_in_dim(x, u, u + (nj - 1) * tw + 1, stride=tw, axis=ax) for u in range(u_len)],
                 axis=ax + 1)
  band = np.zeros((kd, u_len, tw), np.float32)
  for b in range(kd):
    band[b, np.arange(tw) + b, np.arange(tw)] = 1.0
  w = jnp.moveaxis(kernel.reshape(*ks, c).astype(acc_dtype), d, -1)  # (*k_other, C, k_d)
  mats = jnp.einsum("...cb,buv->...cuv", w, jnp.asarray(band, acc_dtype))  # (*k_other, C, U, tile)
  letters = [chr(ord("e") + i) for i in range(nd)]
  sub_x = "n" + "".join("ju" if i == d else letters[i] for i in range(nd)) + "c"
  sub_y = sub_x.replace("ju", "jv")
  other = [i for i in range(nd) if i != d]
  y = None
  for lead in itertools.product(*(range(ks[i]) for i in other)):
    start, limit, step = [0] * xw.ndim, list(xw.shape), [1] * xw.ndim
    for i, t in zip(other, lead):
      a = 1 + i + (i > d)  # axes after d are shifted by the extra U axis
      start[a], limit[a], step[a] = t, t + (out[i] - 1) * strides[i] + 1, strides[i]
    term = jnp.einsum(f"{sub_x},cuv->{sub_y}", lax.slice(xw, start, limit, step), mats[lead])
    y = term if y is None else y + term
  y = y.reshape(y.shape[:ax] + (nj * tw,) + y.shape[ax + 2:])
  return lax.slice_in_dim(y, 0, od, axis=ax).astype(out_dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _shifts(x, kernel, strides, pads):
  """Compensated forward sum. Derivatives: the tap sum of the input tangent (transposed by JAX into
  pads and adds) plus :func:`_banded_sum` of the kernel tangent (transposed into GEMMs), no compensation
  terms."""
  return _tap_sum(x, kernel, strides, pads, True, kernel)


def _kernel_tangent(x, dk, strides, pads, kernel):
  d = _band_axis(dk.shape[:x.ndim - 2], strides)
  if d is None:  # e.g. strided 3x3x3 (X3D's first blocks): the per-tap reductions are cheap there
    return _tap_sum(x, dk, strides, pads, False, kernel)
  return _banded_sum(x, dk, strides, pads, d)


def _shifts_jvp(strides, pads, primals, tangents):
  x, kernel = primals
  dx, dk = tangents
  y = _shifts(x, kernel, strides, pads)
  zero = lambda t: isinstance(t, jax.custom_derivatives.SymbolicZero)
  # tangents fenced on both sides (a cond on a primal value): in the transposed (backward) graph each
  # cotangent is then materialised once instead of being recomputed inside every consumer
  parts = []
  if not zero(dx):
    parts.append(_fence(_tap_sum(_fence(dx, kernel), kernel, strides, pads, False, kernel), kernel))
  if not zero(dk):
    parts.append(_fence(_kernel_tangent(x, dk, strides, pads, kernel), kernel))
  dy = parts[0] + parts[1] if len(parts) == 2 else parts[0] if parts else jnp.zeros_like(y)
  return y, dy


_shifts.defjvp(_shifts_jvp, symbolic_zeros=True)  # skip the tangent term of an undifferentiated operand


def depthwise_conv(x: jnp.ndarray, kernel: jnp.ndarray, strides: Union[int, Sequence[int]] = 1,
                   padding: Padding = 0, impl: Optional[str] = None,
                   precision: Any = None) -> jnp.ndarray:
  """Channel-wise convolution of ``x (N, *spatial, C)`` with ``kernel (*k, 1, C)`` (no bias).

  Args:
    strides: int or one per spatial dim.
    padding: zero padding, an int (every side), one int per spatial dim (both sides, PyTorch style),
      ``(lo, hi)`` pairs, or ``'VALID'``.
    impl: ``'conv'``, ``'shifts'``, ``'auto'`` or ``None`` (= :data:`DEFAULT_IMPL`); see the module
      docstring. :func:`use_impl` overrides it.
    precision: passed to ``lax.conv_general_dilated`` (``'conv'`` only; ``'shifts'`` always computes
      in full float32 or wider).
  Returns ``(N, *out, C)``, ``out = (n + lo + hi - k) // s + 1``, in ``result_type(x, kernel)``.
  """
  nd = x.ndim - 2
  if nd < 1:
    raise ValueError(f"depthwise_conv wants (N, *spatial, C), got shape {x.shape}")
  c = x.shape[-1]
  if kernel.ndim != nd + 2 or kernel.shape[-2] != 1 or kernel.shape[-1] != c:
    raise ValueError(f"depthwise kernel must be (*k, 1, {c}) with {nd} spatial dims, got {kernel.shape}")
  strides = tuple(int(s) for s in _tuple(strides, nd, "strides"))
  pads = _pairs(padding, nd)
  if resolve_impl(impl) == "conv":
    return _conv(x, kernel, strides, pads, precision)
  return _shifts(x, kernel, strides, pads)


class DepthwiseConv(nn.Module):
  """``nn.Conv(features, kernel_size, strides, padding, feature_group_count=features)`` via
  :func:`depthwise_conv`, with the same parameters (``kernel (*k, 1, C)``, ``bias (C,)``), initialisers
  and dtype promotion; ``features`` must equal the input channels (depthwise multiplier 1).

  ``padding``: explicit zero padding (int, one int per dim, or ``(lo, hi)`` pairs) or ``'VALID'``.
  ``impl``: as :func:`depthwise_conv` (``None`` = the module default).
  """
  features: int
  kernel_size: Sequence[int]
  strides: Union[int, Sequence[int]] = 1
  padding: Padding = 0
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  impl: Optional[str] = None

  @nn.compact
  def __call__(self, x):
    ks = (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    c = x.shape[-1]
    if c != self.features:
      raise ValueError(f"DepthwiseConv({self.features}) got {c} input channels (multiplier 1 only)")
    kernel = self.param("kernel", self.kernel_init, (*ks, 1, self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = depthwise_conv(x, kernel, self.strides, self.padding, impl=self.impl, precision=self.precision)
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y


def macs(out_shape: Sequence[int], kernel_size: Sequence[int]) -> int:
  """Multiply-adds of a depthwise conv with output ``out_shape``: ``prod(out) * prod(k)`` (= nn.Conv's)."""
  return int(math.prod(out_shape)) * int(math.prod(kernel_size))
