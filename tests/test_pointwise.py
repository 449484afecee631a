"""Pointwise convolutions as GEMMs (``vidjax.ops.pointwise``).

``nn.Conv(features, (1, .., 1), strides=s)`` with ``conv_general_dilated=pointwise.conv_general_dilated``
is checked against the definition written in NumPy, ``y[n, o, d] = sum_c x[n, o * s, c] * w[c, d] + b[d]``,
with its gradients against the adjoint (``dx[n, o * s, c] = sum_d g[n, o, d] w[c, d]``, ``dw = sum x g``);
the parameters are those of a plain ``nn.Conv``. Anything that is not pointwise goes to ``lax``.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vidjax.backbones import layers
from vidjax.ops import pointwise

CASES = [((2, 5, 6, 7, 8), (1, 1, 1), 3),          # ResNet/X3D 1x1x1, stride 1
         ((2, 5, 7, 9, 8), (1, 2, 2), 4),          # downsample shortcut, stride (1, 2, 2)
         ((3, 9, 10, 4), (2, 2), 6)]                 # 2-D, stride 2


@pytest.mark.parametrize("shape,strides,feat", CASES, ids=["3d-s1", "3d-s122", "2d-s2"])
def test_pointwise_conv_equals_the_definition(shape, strides, feat):
  nd = len(shape) - 2
  kx, kg = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, shape, jnp.float32)
  conv = layers.conv(feat, (1,) * nd, strides, bias=True)
  assert conv.conv_general_dilated is pointwise.conv_general_dilated
  v = conv.init(jax.random.key(1), x)
  v = jax.tree.map(lambda a: a + 0.1, v)  # a non-zero bias
  plain = nn.Conv(feat, (1,) * nd, strides=strides, padding=[(0, 0)] * nd, use_bias=True)
  assert jax.tree.map(jnp.shape, plain.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, v)
  w = np.asarray(v["params"]["kernel"], np.float64).reshape(shape[-1], feat)
  b = np.asarray(v["params"]["bias"], np.float64)
  xs = np.asarray(x, np.float64)[(slice(None),) + tuple(slice(None, None, s) for s in strides)]
  want = xs @ w + b
  got = jax.jit(conv.apply)(v, x)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  g = np.asarray(jax.random.normal(kg, want.shape), np.float64)
  dx_want = np.zeros(shape)
  dx_want[(slice(None),) + tuple(slice(None, None, s) for s in strides)] = g @ w.T
  dw_want = xs.reshape(-1, shape[-1]).T @ g.reshape(-1, feat)
  dv, dx = jax.jit(jax.grad(lambda v, x: jnp.sum(conv.apply(v, x) * g), argnums=(0, 1)))(v, x)
  np.testing.assert_allclose(np.asarray(dx), dx_want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dv["params"]["kernel"]).reshape(w.shape), dw_want, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(dv["params"]["bias"]), g.reshape(-1, feat).sum(0), rtol=1e-5, atol=1e-4)


def test_pointwise_lowers_to_a_dot_and_other_convs_to_a_convolution():
  x = jnp.ones((1, 4, 6, 6, 8))
  for ks, pad, want in [((1, 1, 1), 0, "dot("), ((3, 3, 3), 1, "convolution("), ((1, 1, 1), 1, "convolution(")]:
    conv = layers.conv(4, ks, 1, pad)
    v = conv.init(jax.random.key(0), x)
    hlo = jax.jit(conv.apply).lower(v, x).as_text("hlo")
    assert want in hlo, (ks, pad)
    other = "convolution(" if want == "dot(" else "dot("
    assert other not in hlo, (ks, pad)


def test_is_pointwise_refuses_groups_dilation_padding():
  dn = lax.conv_dimension_numbers((1, 4, 4, 8), (1, 1, 8, 8), ("NHWC", "HWIO", "NHWC"))
  ok = dict(window_strides=(1, 1), padding=((0, 0), (0, 0)), lhs_dilation=None, rhs_dilation=None,
            dimension_numbers=dn, feature_group_count=1, batch_group_count=1)
  assert pointwise.is_pointwise((1, 1, 8, 8), **ok)
  assert pointwise.is_pointwise((1, 1, 8, 8), **{**ok, "padding": "SAME", "window_strides": (2, 2)})
  assert not pointwise.is_pointwise((3, 3, 8, 8), **ok)
  assert not pointwise.is_pointwise((1, 1, 4, 8), **{**ok, "feature_group_count": 2})
  assert not pointwise.is_pointwise((1, 1, 8, 8), **{**ok, "padding": ((1, 1), (0, 0))})
  assert not pointwise.is_pointwise((1, 1, 8, 8), **{**ok, "rhs_dilation": (2, 2)})
  nchw = lax.conv_dimension_numbers((1, 8, 4, 4), (8, 8, 1, 1), ("NCHW", "OIHW", "NCHW"))
  assert not pointwise.is_pointwise((8, 8, 1, 1), **{**ok, "dimension_numbers": nchw})
