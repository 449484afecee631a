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
  float32 for 16-bit inputs (one rounding at the end), else in the input dtype; the taps are summed
  pairwise (error growing with ``log2`` of the taps). Gradients (a ``custom_vjp``, so reverse mode
  only: ``jax.jvp`` through it needs ``impl='conv'``): the input gradient is the same tap loop over the
  (stride-dilated) cotangent with the flipped kernel; the kernel gradient is :func:`_kernel_grad`,
  variadic reductions over a channel-major copy. Results are fenced (:func:`_fence`) so that XLA's
  fusion does not recompute the tap loop inside its consumers. On 2 shared CPU cores, 3x3x3 on
  ``(2, 16, 64, 64, 54)`` (X3D-M's widest ``conv_b``): forward ~46 ms, input gradient ~51 ms, kernel
  gradient ~0.11 s (the compensated sum, JAX's transpose of the tap sum and banded GEMMs this replaced:
  63 ms, 95 ms, 0.66 s; one-off measurements, ``bench/RESULTS.md`` records whole training steps).

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


def _tap_sum(x, kernel, strides, pads, ref):
  """``sum_tap slice_tap(pad(x)) * w[tap]``, summed pairwise (the rounding error grows with
  ``log2(taps)``), in float32 or wider. ``pads`` are ``(lo, hi)`` pairs, negative ones crop.

  The taps run in chunks of at most :data:`MAX_FUSED_TAPS`, one fused loop each, fenced apart
  (:func:`_fence`, predicate on the primal ``ref``).
  """
  nd = x.ndim - 2
  ks = kernel.shape[:nd]
  acc_dtype = jnp.promote_types(jnp.result_type(x, kernel), jnp.float32)
  out_dtype = jnp.result_type(x, kernel)
  x = x.astype(acc_dtype)
  if any(lo or hi for lo, hi in pads):
    x = lax.pad(x, jnp.zeros((), acc_dtype), ((0, 0, 0),) + tuple((lo, hi, 0) for lo, hi in pads) + ((0, 0, 0),))
  sizes = x.shape[1:-1]
  out = tuple((n - k) // s + 1 for n, k, s in zip(sizes, ks, strides))
  if any(o <= 0 for o in out):
    raise ValueError(f"depthwise conv: kernel {ks} larger than the padded input {sizes}")
  w = kernel.reshape(*ks, kernel.shape[-1]).astype(acc_dtype)
  taps = list(itertools.product(*(range(k) for k in ks)))
  n_chunks = -(-len(taps) // MAX_FUSED_TAPS)
  size = -(-len(taps) // n_chunks)

  def term(tap):
    start = (0,) + tap + (0,)
    limit = (x.shape[0],) + tuple(t + (o - 1) * s + 1 for t, o, s in zip(tap, out, strides)) + (x.shape[-1],)
    return lax.slice(x, start, limit, (1,) + tuple(strides) + (1,)) * w[tap]

  partials = []
  for i in range(0, len(taps), size):
    terms = [term(tap) for tap in taps[i:i + size]]
    while len(terms) > 1:
      terms = [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j] for j in range(0, len(terms), 2)]
    partials.append(terms[0] if n_chunks == 1 else _fence(terms[0], ref))
  return _fence(functools.reduce(operator.add, partials).astype(out_dtype), ref)


REDUCE_TAPS = 49  # kernel-gradient taps per variadic reduction (27, 49, 147 measured on 2 CPU cores)


def _kernel_grad(x, g, ks, strides, pads, ref):
  """``dL/dw[tap, 0, c] = sum_{n, o} x_pad[n, o * s + tap, c] * g[n, o, c]``: the kernel gradient.

  Channel-major: ``x`` and ``g`` are transposed once to ``(C, N, *spatial)`` (materialised,
  :func:`_fence`), then every tap is one product of a strided slice of the padded ``x`` with ``g``,
  and one *variadic* reduction over the spatial axes computes up to :data:`REDUCE_TAPS` taps in one
  pass over ``g`` (a row reduction per channel and clip; the clips are summed last). On 2 CPU cores this
  is 5-7x faster than either one reduction per tap (each re-reads ``x`` and ``g``) or channels-last
  GEMMs with banded matrices (which need a transposed copy per tap row): 3x3x3 on ``(2, 16, 64, 64,
  54)`` ~0.11 s (0.66 s), 3x7x7 on ``(2, 8, 14, 14, 512)`` ~0.06 s (0.42 s).
  """
  nd = x.ndim - 2
  acc_dtype = jnp.promote_types(jnp.result_type(x, g), jnp.float32)
  perm = (x.ndim - 1,) + tuple(range(x.ndim - 1))
  xc, gc = _fence((jnp.transpose(x, perm).astype(acc_dtype), jnp.transpose(g, perm).astype(acc_dtype)), ref)
  xc = lax.pad(xc, jnp.zeros((), acc_dtype), ((0, 0, 0), (0, 0, 0)) + tuple((lo, hi, 0) for lo, hi in pads))
  out = gc.shape[2:]
  taps = list(itertools.product(*(range(k) for k in ks)))
  sums = []
  for i in range(0, len(taps), REDUCE_TAPS):
    prods = []
    for tap in taps[i:i + REDUCE_TAPS]:
      limit = xc.shape[:2] + tuple(t + (o - 1) * s + 1 for t, o, s in zip(tap, out, strides))
      prods.append(lax.slice(xc, (0, 0) + tap, limit, (1, 1) + tuple(strides)) * gc)
    n = len(prods)
    add = lambda a, b, n=n: tuple(a[j] + b[j] for j in range(n))
    sums += lax.reduce(prods, [jnp.zeros((), acc_dtype)] * n, add, tuple(range(2, 2 + nd)))
  return jnp.stack([v.sum(axis=1) for v in sums]).reshape(*ks, 1, x.shape[-1])


def _input_grad(g, kernel, x_shape, strides, pads):
  """``dL/dx``: the correlation of ``g`` -- dilated by the strides (``s - 1`` zeros between entries)
  and zero-padded by ``k - 1 - lo`` before and ``n + lo - (o - 1) * s - 1`` after -- with the flipped
  kernel: one fused tap loop like the forward pass (a strided conv's loop also multiplies the zeros)."""
  nd = len(x_shape) - 2
  ks = kernel.shape[:nd]
  out = g.shape[1:-1]
  cfg = [(0, 0, 0)]
  for n, k, s, o, (lo, _) in zip(x_shape[1:-1], ks, strides, out, pads):
    cfg.append((k - 1 - lo, n + lo - (o - 1) * s - 1, s - 1))
  gp = lax.pad(g, jnp.zeros((), g.dtype), cfg + [(0, 0, 0)])
  flipped = jnp.flip(kernel, axis=tuple(range(nd)))
  return _tap_sum(gp, flipped, (1,) * nd, ((0, 0),) * nd, kernel)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifts(x, kernel, strides, pads):
  """The tap sum; gradients :func:`_input_grad` and :func:`_kernel_grad` (a ``custom_vjp``)."""
  return _tap_sum(x, kernel, strides, pads, kernel)


def _shifts_fwd(x, kernel, strides, pads):
  return _shifts(x, kernel, strides, pads), (x, kernel)


def _shifts_bwd(strides, pads, res, g):
  x, kernel = res
  g = _fence(g, kernel)  # materialised once instead of being recomputed inside both consumers
  dx = _input_grad(g, kernel, x.shape, strides, pads).astype(x.dtype)
  dk = _kernel_grad(x, g, kernel.shape[:x.ndim - 2], strides, pads, kernel).astype(kernel.dtype)
  return dx, dk


_shifts.defvjp(_shifts_fwd, _shifts_bwd)


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
