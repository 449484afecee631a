"""Depthwise (channel-wise) convolution, ``vidjax.ops.depthwise``.

The op is the per-channel cross-correlation of ``nn.Conv(C, k, feature_group_count=C)`` / torch
``Conv{2,3}d(groups=C)`` used by X3D (``conv_b``, REFERENCE.md section 8), MobileNetV2, the MBPM
(thesis Eqs. 5.1-5.3), the BPLC MBPM (Eq. 5.5) and RNL's ``F_theta`` (Eq. 4.3). Both implementations
('conv', 'shifts') are checked against a NumPy loop written from the definition

  ``y[n, o, c] = sum_tap w[tap, 0, c] * x_pad[n, o * s + tap, c]``,

and their gradients against the adjoint of that definition; the module against ``nn.Conv``.
"""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidjax.ops import depthwise
from vidjax.ops.depthwise import DepthwiseConv, depthwise_conv, resolve_impl, use_impl
from vidjax.tools import flops


def np_depthwise(x, w, strides, pads):
  """Cross-correlation per channel, by output position: x (N, *S, C), w (*k, 1, C), pads (lo, hi)."""
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)[..., 0, :]
  ks = w.shape[:-1]
  xp = np.pad(x, [(0, 0)] + list(pads) + [(0, 0)])
  out = [(n - k) // s + 1 for n, k, s in zip(xp.shape[1:-1], ks, strides)]
  y = np.zeros((x.shape[0], *out, x.shape[-1]))
  for o in itertools.product(*(range(d) for d in out)):
    window = tuple(slice(i * s, i * s + k) for i, s, k in zip(o, strides, ks))
    y[(slice(None),) + o] = (xp[(slice(None),) + window] * w).sum(axis=tuple(range(1, 1 + len(ks))))
  return y


def np_grads(x, w, strides, pads, r):
  """Adjoint of the definition for the loss ``sum(y * r)``: dL/dx (scatter of r * w), dL/dw."""
  x = np.asarray(x, np.float64)
  w = np.asarray(w, np.float64)[..., 0, :]
  ks = w.shape[:-1]
  xp = np.pad(x, [(0, 0)] + list(pads) + [(0, 0)])
  gxp, gw = np.zeros_like(xp), np.zeros_like(w)
  for o in itertools.product(*(range(d) for d in r.shape[1:-1])):
    window = tuple(slice(i * s, i * s + k) for i, s, k in zip(o, strides, ks))
    ro = np.asarray(r, np.float64)[(slice(None),) + o]  # (N, C)
    idx = (slice(None),) + window
    gxp[idx] += ro.reshape((ro.shape[0],) + (1,) * len(ks) + (ro.shape[1],)) * w
    gw += (xp[idx] * ro.reshape((ro.shape[0],) + (1,) * len(ks) + (ro.shape[1],))).sum(axis=0)
  inner = (slice(None),) + tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, x.shape[1:-1]))
  return gxp[inner], gw[..., None, :]


# (input shape, kernel, strides, padding as passed, padding as (lo, hi) pairs)
CASES = [
    ((2, 9, 11, 5), (3, 3), (1, 1), 1, ((1, 1), (1, 1))),          # MobileNetV2 dw, stride 1
    ((2, 9, 11, 5), (3, 3), (2, 2), 1, ((1, 1), (1, 1))),          # MobileNetV2 dw, stride 2
    ((1, 12, 12, 3), (9, 9), (1, 1), 0, ((0, 0), (0, 0))),          # stem MBPM LoG (after reflect pad)
    ((2, 8, 10, 4), (2, 4), (1, 2), (1, 2), ((1, 1), (2, 2))),     # even kernels
    ((1, 4, 9, 9, 6), (3, 3, 3), (1, 2, 2), (1, 1, 1), ((1, 1),) * 3),  # X3D conv_b, stride (1,2,2)
    ((1, 5, 9, 10, 4), (3, 7, 7), (1, 1, 1), ((1, 1), (3, 3), (3, 3)), ((1, 1), (3, 3), (3, 3))),  # RNL
    ((2, 4, 7, 7, 3), (1, 3, 3), (1, 1, 1), (0, 1, 1), ((0, 0), (1, 1), (1, 1))),
    ((1, 9, 4, 4, 3), (3, 1, 1), (3, 1, 1), 0, ((0, 0),) * 3),     # MBPM temporal, stride 3
    ((1, 5, 6, 6, 3), (5, 1, 1), (1, 1, 1), (2, 0, 0), ((2, 2), (0, 0), (0, 0))),  # X3D stem conv_t
    ((1, 6, 8, 7, 2), (2, 2, 2), (2, 2, 2), (1, 0, 1), ((1, 1), (0, 0), (1, 1))),  # even, stride 2
    ((1, 7, 8, 3), (3, 3), (2, 1), ((0, 2), (1, 0)), ((0, 2), (1, 0))),  # asymmetric pairs
]
IDS = ["2d-3x3-s1", "2d-3x3-s2", "2d-9x9", "2d-even", "3d-x3d", "3d-3x7x7", "3d-1x3x3", "3d-t-s3",
       "3d-5x1x1", "3d-even-s2", "2d-pairs"]


def _data(shape, ks, seed=0):
  kx, kw = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, shape, jnp.float32)
  w = jax.random.normal(kw, (*ks, 1, shape[-1]), jnp.float32)
  return x, w


@pytest.mark.parametrize("shape,ks,strides,padding,pairs", CASES, ids=IDS)
def test_both_impls_equal_the_definition(shape, ks, strides, padding, pairs):
  x, w = _data(shape, ks)
  want = np_depthwise(x, w, strides, pairs)
  for impl in ("conv", "shifts"):
    got = jax.jit(lambda x, w: depthwise_conv(x, w, strides, padding, impl=impl))(x, w)
    assert got.shape == want.shape and got.dtype == jnp.float32, impl
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5, err_msg=impl)


@pytest.mark.parametrize("case", [0, 1, 3, 4, 5, 7, 9, 10], ids=[IDS[i] for i in (0, 1, 3, 4, 5, 7, 9, 10)])
def test_gradients_equal_the_adjoint(case):
  shape, ks, strides, padding, pairs = CASES[case]
  x, w = _data(shape, ks, seed=1)
  r = np.asarray(jax.random.normal(jax.random.key(2), np_depthwise(x, w, strides, pairs).shape))
  gx_want, gw_want = np_grads(x, w, strides, pairs, r)
  for impl in ("conv", "shifts"):
    loss = lambda x, w: jnp.sum(depthwise_conv(x, w, strides, padding, impl=impl) * r)
    gx, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    np.testing.assert_allclose(np.asarray(gx), gx_want, rtol=1e-5, atol=2e-5, err_msg=impl)
    np.testing.assert_allclose(np.asarray(gw), gw_want, rtol=1e-5, atol=2e-5, err_msg=impl)


@pytest.mark.parametrize("case", [1, 4], ids=["2d", "3d"])
def test_bfloat16(case):
  shape, ks, strides, padding, pairs = CASES[case]
  x, w = _data(shape, ks, seed=3)
  xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  want = np_depthwise(np.asarray(xb, np.float32), np.asarray(wb, np.float32), strides, pairs)
  outs = {}
  for impl in ("conv", "shifts"):
    outs[impl] = jax.jit(lambda x, w: depthwise_conv(x, w, strides, padding, impl=impl))(xb, wb)
    assert outs[impl].dtype == jnp.bfloat16, impl
    # one bf16 rounding of the result (8 bits of mantissa) plus the accumulation
    np.testing.assert_allclose(np.asarray(outs[impl], np.float32), want, rtol=1e-2, atol=3e-2, err_msg=impl)
  # 'shifts' sums in f32 and rounds once: it is the correctly rounded result up to f32 error
  np.testing.assert_allclose(np.asarray(outs["shifts"], np.float32), want, rtol=2 ** -8, atol=1e-3)
  gw = {impl: jax.grad(lambda w: jnp.sum(depthwise_conv(xb, w, strides, padding, impl=impl)
                                         .astype(jnp.float32)))(wb) for impl in ("conv", "shifts")}
  assert gw["shifts"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(gw["shifts"], np.float32), np.asarray(gw["conv"], np.float32),
                             rtol=2e-2, atol=0.3)


def test_use_impl_forces_and_restores():
  x, w = _data((1, 6, 6, 2), (3, 3))
  prims = lambda: {e.primitive.name for e in jax.make_jaxpr(
      lambda x, w: depthwise_conv(x, w, 1, 1, impl="shifts"))(x, w).eqns}
  assert "conv_general_dilated" not in prims()
  with use_impl("conv"):  # wins over the explicit impl
    assert "conv_general_dilated" in prims()
    assert resolve_impl("shifts") == "conv"
  assert "conv_general_dilated" not in prims()
  assert resolve_impl(None) == ("shifts" if jax.default_backend() == "cpu" else "conv")
  with pytest.raises(ValueError):
    with use_impl("fft"):
      pass
  with pytest.raises(ValueError):
    depthwise_conv(x, w[..., :1], 1, 1)  # kernel channels != input channels


@pytest.mark.parametrize("ks,strides,padding,use_bias", [
    ((3, 3, 3), (1, 2, 2), (1, 1, 1), False),  # X3D conv_b
    ((3, 3), (2, 2), (1, 1), True),            # MobileNetV2 dw_conv (with a bias too)
])
def test_module_matches_nn_conv(ks, strides, padding, use_bias):
  c = 6
  x = jax.random.normal(jax.random.key(4), (2, *([7] * len(ks)), c))
  init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  ref = nn.Conv(c, ks, strides, [(p, p) for p in padding], feature_group_count=c, use_bias=use_bias,
                kernel_init=init, bias_init=nn.initializers.normal(1.0))
  mod = DepthwiseConv(c, ks, strides, padding, use_bias=use_bias, kernel_init=init,
                      bias_init=nn.initializers.normal(1.0))
  v_ref, v = ref.init(jax.random.key(5), x), mod.init(jax.random.key(5), x)
  # same names, shapes and initial values (the layout of nn.Conv(feature_group_count=C))
  assert jax.tree.structure(v) == jax.tree.structure(v_ref)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), v, v_ref)
  want = np.asarray(ref.apply(v_ref, x))
  for impl in ("conv", "shifts"):
    with use_impl(impl):
      np.testing.assert_allclose(np.asarray(mod.apply(v, x)), want, rtol=1e-5, atol=1e-5, err_msg=impl)
  # FLOP tool: counted as the nn.Conv, prod(out) * prod(k); XLA total identical (lowered as lax.conv)
  out = want.shape
  assert flops.count_conv_linear_macs(mod, v, x) == flops.count_conv_linear_macs(ref, v_ref, x) \
      == int(np.prod(out)) * int(np.prod(ks))
  assert flops.xla_macs(mod, v, x) == flops.xla_macs(ref, v_ref, x) > 0
  assert depthwise.DEFAULT_IMPL == "auto"


def test_shifts_sum_error_is_pairwise():
  """A 3x7x7 kernel (RNL's F_theta, 147 taps) on values whose products cancel: the 'shifts' forward
  pass stays within the pairwise-summation bound ``(ceil(log2 n) + 2) * 2^-24 * sum |terms|`` of the
  float64 definition (a sequential sum's bound grows with ``n``, not ``log2 n``); both gradients within
  2e-6 relative of the float64 adjoint."""
  shape, ks, strides, padding, pairs = CASES[5]
  x, w = _data(shape, ks, seed=7)
  x = x * 1e3 + 1.0  # large values, mixed signs: cancellation
  want = np_depthwise(x, w, strides, pairs)
  scale = np_depthwise(np.abs(np.asarray(x)), np.abs(np.asarray(w)), strides, pairs)
  n = int(np.prod(ks))
  bound = (np.ceil(np.log2(n)) + 2) * 2.0 ** -24 * scale
  got = np.asarray(jax.jit(lambda x, w: depthwise_conv(x, w, strides, padding, impl="shifts"))(x, w))
  assert np.all(np.abs(got - want) <= bound), float(np.max(np.abs(got - want) / bound))
  r = np.asarray(jax.random.normal(jax.random.key(8), want.shape))
  gx_want, gw_want = np_grads(x, w, strides, pairs, r)
  loss = lambda x, w: jnp.sum(depthwise_conv(x, w, strides, padding, impl="shifts") * r)
  gx, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
  np.testing.assert_allclose(np.asarray(gx), gx_want, rtol=2e-6, atol=1e-4)
  np.testing.assert_allclose(np.asarray(gw), gw_want, rtol=2e-6, atol=1e-2)


def test_gradients_under_remat_and_vmap():
  """The custom VJP composes with ``jax.checkpoint`` (``train.remat``) and ``vmap``: same gradients."""
  shape, ks, strides, padding, pairs = CASES[4]
  x, w = _data(shape, ks, seed=9)
  f = lambda x, w: jnp.sum(jnp.sin(depthwise_conv(x, w, strides, padding, impl="shifts")))
  g_plain = jax.grad(f, argnums=(0, 1))(x, w)
  g_remat = jax.grad(jax.checkpoint(f), argnums=(0, 1))(x, w)
  g_vmap = jax.vmap(jax.grad(f, argnums=(0, 1)), in_axes=(0, None))(x[:, None], w)
  for a, b in zip(g_plain, g_remat):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g_vmap[0][:, 0]), np.asarray(g_plain[0]), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(g_vmap[1].sum(0)), np.asarray(g_plain[1]), rtol=1e-5, atol=1e-5)
