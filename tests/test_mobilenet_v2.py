"""TSM-MobileNetV2 (thesis Table 5.2 backbone; MobileNetV2 paper Table 2; TSM paper's residual shift).

Sizes are checked against an independent count written here from the MobileNetV2 paper's Table 2 and
against torchvision's published ``mobilenet_v2`` figures (3,504,872 params, 0.30 GFLOPS = MACs at 224^2,
same architecture at width 1.0); numerics against NumPy written from the block equations.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidjax.backbones import mobilenet_v2 as mb
from vidjax.models import registry
from vidjax.tools import flops

# MobileNetV2 paper, Table 2 (t, c, n, s) and the first (32) / last (1280) widths, written out again here.
PAPER_TABLE2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]


def paper_counts(num_classes, size=224):
  """Params and conv/linear MACs of MobileNetV2-1.0 from Table 2 (convs without bias, BN = 2 params/ch)."""
  params, macs = 0, 0
  h = size // 2
  params += 3 * 3 * 3 * 32 + 2 * 32  # conv 3x3/2 + BN
  macs += h * h * 3 * 3 * 3 * 32
  cin = 32
  for t, c, n, s in PAPER_TABLE2:
    for i in range(n):
      stride = s if i == 0 else 1
      hid = cin * t
      if t != 1:
        params += cin * hid + 2 * hid
        macs += h * h * cin * hid
      h_out = -(-h // stride)
      params += 9 * hid + 2 * hid + hid * c + 2 * c
      macs += h_out * h_out * 9 * hid + h_out * h_out * hid * c
      cin, h = c, h_out
  params += cin * 1280 + 2 * 1280
  macs += h * h * cin * 1280
  params += 1280 * num_classes + num_classes
  macs += 1280 * num_classes
  return params, macs


def _count(num_classes, t=1, size=224):
  model = mb.MobileNetV2TSM(num_classes=num_classes)
  x = jax.ShapeDtypeStruct((1, t, size, size, 3), jnp.float32)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  return flops.count_params(v["params"]), flops.count_conv_linear_macs(model, v, x, train=False)


def test_params_and_macs_match_paper_table2_and_torchvision():
  """1000 classes: 3,504,872 params (torchvision docs), ~0.30 GMACs per 224^2 frame (paper: 300M)."""
  p_1000, m_1000 = _count(1000)
  want_p, want_m = paper_counts(1000)
  assert p_1000 == want_p == 3_504_872
  assert m_1000 == want_m and abs(m_1000 / 1e9 - 0.30) < 0.005
  p_400, m_400 = _count(400, t=2)  # 2 frames: MACs scale with the frames (TSN folds time into batch)
  assert p_400 == paper_counts(400)[0] == 2_736_272
  assert m_400 == 2 * paper_counts(400)[1]
  assert p_1000 - (1280 * 1000 + 1000) == 2_223_872  # backbone without classifier


def test_mobilenet_config_builds_through_registry():
  from vidjax import config_utils
  config = importlib.import_module("configs.mobilenet_v2_tsm_k400").get_config()
  model = registry.build(config.model)
  assert isinstance(model, mb.MobileNetV2TSM) and model.shift_div == 8 and model.num_classes == 400
  assert config_utils.input_shape(config) == (1, 8, 224, 224, 3)


# ------------------------------------------------------------------------------------------ numerics
def np_shift(x, t, fold_div=8):
  """TSM (REFERENCE.md section 2): channels [0, f) take frame t+1, [f, 2f) frame t-1, zero at the ends."""
  nt, h, w, c = x.shape
  v = x.reshape(nt // t, t, h, w, c)
  f = c // fold_div
  out = np.zeros_like(v)
  out[:, :-1, ..., :f] = v[:, 1:, ..., :f]
  out[:, 1:, ..., f:2 * f] = v[:, :-1, ..., f:2 * f]
  out[..., 2 * f:] = v[..., 2 * f:]
  return out.reshape(x.shape)


def np_bn(x, p, s):
  return (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


def np_dw3x3(x, k, stride):
  """Depthwise 3x3, pad 1; k (3, 3, 1, C)."""
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  ho, wo = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
  out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
  for a in range(3):
    for b in range(3):
      out += xp[:, a:a + ho * stride:stride, b:b + wo * stride:stride, :] * k[a, b, 0]
  return out


def np_block(x, p, s, stride, expand, t, shift):
  relu6 = lambda z: np.clip(z, 0, 6)  # noqa: E731
  use_res = stride == 1 and x.shape[-1] == p["project_conv"]["kernel"].shape[-1]
  h = x
  if expand != 1:
    if shift:
      h = np_shift(h, t)
    h = relu6(np_bn(h @ p["expand_conv"]["kernel"][0, 0], p["expand_bn"], s["expand_bn"]))
  h = relu6(np_bn(np_dw3x3(h, p["dw_conv"]["kernel"], stride), p["dw_bn"], s["dw_bn"]))
  h = np_bn(h @ p["project_conv"]["kernel"][0, 0], p["project_bn"], s["project_bn"])
  return x + h if use_res else h


def random_variables(module, x, seed=0):
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x))

  def leaf(path, a):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(0, 1 / np.sqrt(np.prod(a.shape[:-1])), a.shape), a.dtype)
    if name in ("scale", "var"):
      return jnp.asarray(rng.uniform(0.5, 1.5, a.shape), a.dtype)
    return jnp.asarray(rng.normal(0, 0.2, a.shape), a.dtype)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.mark.parametrize("cin,cout,stride,expand,shifted", [
    (16, 16, 1, 6, True),    # residual block with expansion: TSM shifts the residual branch input
    (16, 24, 2, 6, False),   # no residual connection: no shift
    (16, 16, 1, 1, False),   # t = 1 (no expansion conv; TSM's len(conv) == 8 test): no shift
])
def test_inverted_residual_matches_numpy_with_tsm_rule(cin, cout, stride, expand, shifted):
  t = 4
  blk = mb.InvertedResidual(cout, stride, expand, num_frames=t, shift_div=8)
  x = np.random.default_rng(1).normal(size=(2 * t, 6, 6, cin)).astype(np.float32)
  v = random_variables(blk, x)
  got = np.asarray(jax.jit(lambda v, x: blk.apply(v, x, train=False))(v, x))
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v["params"])
  s = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v["batch_stats"])
  xn = x.astype(np.float64)
  np.testing.assert_allclose(got, np_block(xn, p, s, stride, expand, t, shifted), rtol=1e-4, atol=1e-5)
  # The other reading gives a different output whenever the shift matters.
  if expand != 1 and stride == 1:
    assert np.max(np.abs(got - np_block(xn, p, s, stride, expand, t, not shifted))) > 1e-3


def test_temporal_shift_breaks_frame_order_invariance():
  """TSN (shift off) averages per-frame logits, so reversing the frames changes nothing; TSM does."""
  x = np.random.default_rng(2).normal(size=(1, 4, 32, 32, 3)).astype(np.float32)
  outs = {}
  for div in (0, 8):
    model = mb.MobileNetV2TSM(num_classes=5, width_mult=0.25, shift_div=div, dropout=0.0)
    v = random_variables(model, x, seed=3)
    f = jax.jit(lambda v, x: model.apply(v, x, train=False))
    outs[div] = (np.asarray(f(v, x)), np.asarray(f(v, x[:, ::-1])))
  assert outs[0][0].shape == (1, 5)
  np.testing.assert_allclose(outs[0][0], outs[0][1], rtol=1e-5, atol=1e-6)
  assert np.max(np.abs(outs[8][0] - outs[8][1])) > 1e-4
