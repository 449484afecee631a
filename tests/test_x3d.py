"""X3D backbone (REFERENCE.md section 8; thesis Tables 3.6, 5.2, 5.9).

Numerics are checked against NumPy written from the block's equations (REFERENCE.md section 8 wording),
never against the module; sizes against REFERENCE.md section 13 (pytorchvideo/torch measurements).
"""
import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vidjax.backbones import x3d as x3d_lib
from vidjax.models import registry
from vidjax.tools import flops


# ------------------------------------------------------------------------------------ NumPy references
def np_conv3d(x, w, stride=(1, 1, 1), pad=(0, 0, 0), groups=1):
  """Cross-correlation, x (N,T,H,W,C), w (kt,kh,kw,C/groups,O), symmetric zero padding."""
  x = np.pad(x, [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
  kt, kh, kw, cig, o = w.shape
  n, t, h, wd, c = x.shape
  ot, oh, ow = [(d - k) // s + 1 for d, k, s in zip((t, h, wd), (kt, kh, kw), stride)]
  og = o // groups
  out = np.zeros((n, ot, oh, ow, o))
  for g in range(groups):
    xg = x[..., g * cig:(g + 1) * cig]
    wg = w[..., g * og:(g + 1) * og]
    for a in range(kt):
      for b in range(kh):
        for d in range(kw):
          patch = xg[:, a:a + ot * stride[0]:stride[0], b:b + oh * stride[1]:stride[1],
                     d:d + ow * stride[2]:stride[2], :]
          out[..., g * og:(g + 1) * og] += patch @ wg[a, b, d]
  return out


def np_bn(x, p, s):
  return (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


def np_relu(x):
  return np.maximum(x, 0)


def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def random_variables(module, *inputs, seed=0):
  """Variables of ``module`` (shapes from ``eval_shape(init)``) filled with NumPy draws.

  Kernels ~ N(0, 1/fan_in); BN gamma / running var ~ U(0.5, 1.5), beta / running mean / biases ~ N(0, 0.2),
  so that no branch is trivially zero (norm_c gamma is 0 at init). No XLA compile of ``init``.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))

  def leaf(path, a):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(0, 1 / np.sqrt(np.prod(a.shape[:-1])), a.shape), a.dtype)
    if name in ("scale", "var"):
      return jnp.asarray(rng.uniform(0.5, 1.5, a.shape), a.dtype)
    return jnp.asarray(rng.normal(0, 0.2, a.shape), a.dtype)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


def run(module, variables, *inputs, **kw):
  return np.asarray(jax.jit(lambda v, *a: module.apply(v, *a, **kw))(variables, *inputs))


def to_np(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


# ------------------------------------------------------------------------------------------- layout
def test_round_width_and_stage_layout_match_reference_section8():
  """REFERENCE.md section 8: stages 24/54/3, 48/108/5, 96/216/11, 192/432/7; SE widths 8, 8, 16, 32."""
  specs = x3d_lib.x3d_stage_specs(2.0, 2.2, 2.25)
  assert [(s.dim_out, s.dim_inner, s.depth) for s in specs] == [
      (24, 54, 3), (48, 108, 5), (96, 216, 11), (192, 432, 7)]
  assert [s.se_dim for s in specs] == [8, 8, 16, 32]
  assert x3d_lib.round_width(12, 2.0) == 24  # stem width
  # X3D-L: depth factor 5.0 -> ceil(5 * (1, 2, 5, 3)).
  assert [s.depth for s in x3d_lib.x3d_stage_specs(2.0, 5.0, 2.25)] == [5, 10, 25, 15]
  # The 10% rule: 27 rounds to 24 (< 0.9 * 27) and is bumped to 32.
  assert x3d_lib.round_width(432, 0.0625) == 32


def test_block_layout_strides_and_se_on_even_blocks():
  """First block of each stage strides 2 in space; SE on block indices 0, 2, 4, ... of each stage."""
  layout = list(x3d_lib.x3d_block_layout())
  assert len(layout) == 26  # 3 + 5 + 11 + 7 (BQN-X3D has 26 lateral connections)
  for stage, block, dim_in, _, dim_out, stride, use_se in layout:
    assert stride == (2 if block == 0 else 1)
    assert use_se == (block % 2 == 0)
  assert layout[0][2:5] == (24, 54, 24)  # stage 1 block 0: 24 -> 24 with stride 2


# ---------------------------------------------------------------------------------------- numerics
def test_x3d_block_matches_numpy_equations():
  """Block: conv_a-BN-ReLU, depthwise 3x3x3 stride (1,2,2)-BN-SE-Swish, conv_c-BN, + shortcut conv-BN, ReLU."""
  blk = x3d_lib.X3DBlock(dim_inner=6, dim_out=8, spatial_stride=2, use_se=True, se_dim=3)
  x = np.random.default_rng(1).normal(size=(2, 3, 5, 6, 4)).astype(np.float32)
  v = random_variables(blk, x)
  got = run(blk, v, x, train=False)
  p, s, xn = to_np(v["params"]), to_np(v["batch_stats"]), np.asarray(x, np.float64)
  h = np_relu(np_bn(np_conv3d(xn, p["conv_a"]["kernel"]), p["norm_a"], s["norm_a"]))
  h = np_bn(np_conv3d(h, p["conv_b"]["kernel"], (1, 2, 2), (1, 1, 1), groups=6), p["norm_b"], s["norm_b"])
  sq = h.mean(axis=(1, 2, 3), keepdims=True)
  sq = np_relu(sq @ p["se"]["reduce"]["kernel"][0, 0, 0] + p["se"]["reduce"]["bias"])
  h = h * np_sigmoid(sq @ p["se"]["expand"]["kernel"][0, 0, 0] + p["se"]["expand"]["bias"])
  h = h * np_sigmoid(h)  # Swish
  h = np_bn(np_conv3d(h, p["conv_c"]["kernel"]), p["norm_c"], s["norm_c"])
  sc = np_bn(np_conv3d(xn, p["shortcut_conv"]["kernel"], (1, 2, 2)), p["shortcut_norm"],
             s["shortcut_norm"])
  want = np_relu(h + sc)
  assert got.shape == (2, 3, 3, 3, 8)  # ceil(5/2), ceil(6/2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_x3d_block_shortcut_bn_only_when_width_changes():
  """Section 8: 24 -> 24 stride 2 has a shortcut conv without BN; width change adds BN; identity else."""
  x = jnp.zeros((1, 2, 8, 8, 8))

  def shapes(blk):
    return jax.eval_shape(lambda: blk.init(jax.random.key(0), x))["params"]
  same_strided = shapes(x3d_lib.X3DBlock(6, 8, 2, use_se=False))
  assert "shortcut_conv" in same_strided and "shortcut_norm" not in same_strided
  wider = shapes(x3d_lib.X3DBlock(6, 16, 2, use_se=False))
  assert "shortcut_conv" in wider and "shortcut_norm" in wider
  assert "shortcut_conv" not in shapes(x3d_lib.X3DBlock(6, 8, 1, use_se=False))
  assert "se" not in same_strided and "se" in shapes(x3d_lib.X3DBlock(6, 8, 1, use_se=True))
  # norm_c gamma 0 at init (REFERENCE.md section 8, init_net_weights): an identity-shortcut block is
  # ReLU(x) at init, whatever its other weights.
  blk = x3d_lib.X3DBlock(6, 8, 1, use_se=True)
  init = jax.jit(blk.init)(jax.random.key(0), x)
  assert np.all(np.asarray(init["params"]["norm_c"]["scale"]) == 0)
  assert np.all(np.asarray(init["params"]["norm_a"]["scale"]) == 1)
  xr = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
  np.testing.assert_allclose(run(blk, init, xr), np.maximum(xr, 0), atol=1e-6)


def test_x3d_stem_matches_numpy():
  """Stem: spatial 1x3x3 stride (1,2,2) pad (0,1,1), then depthwise 5x1x1 pad (2,0,0), BN, ReLU."""
  stem = x3d_lib.X3DStem(features=4)
  x = np.random.default_rng(3).normal(size=(1, 6, 7, 8, 3)).astype(np.float32)
  v = random_variables(stem, x)
  got = run(stem, v, x)
  p, s = to_np(v["params"]), to_np(v["batch_stats"])
  h = np_conv3d(np.asarray(x, np.float64), p["conv_xy"]["kernel"], (1, 2, 2), (0, 1, 1))
  h = np_conv3d(h, p["conv_t"]["kernel"], (1, 1, 1), (2, 0, 0), groups=4)
  want = np_relu(np_bn(h, p["norm"], s["norm"]))
  assert p["conv_xy"]["kernel"].shape == (1, 3, 3, 3, 4) and p["conv_t"]["kernel"].shape == (5, 1, 1, 1, 4)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_head_fixed_pool_is_a_sliding_window_and_global_pool_at_built_size():
  """Head: conv-BN-ReLU, AvgPool3d(k, stride 1), conv-ReLU, fc, mean (section 8 sliding-window note)."""
  head = x3d_lib.X3DHead(num_classes=3, dim_inner=5, dim_out=7, dropout=0.0, pool_size=(2, 2, 2))
  x = np.random.default_rng(4).normal(size=(1, 2, 3, 3, 4)).astype(np.float32)
  v = random_variables(head, x)
  p, s = to_np(v["params"]), to_np(v["batch_stats"])
  h = np_relu(np_bn(np_conv3d(np.asarray(x, np.float64), p["conv_pre"]["kernel"]), p["norm_pre"],
                    s["norm_pre"]))
  windows = np.stack([h[:, :, i:i + 2, j:j + 2].mean(axis=(1, 2, 3)) for i in range(2) for j in range(2)], 1)
  z = np_relu(windows @ p["conv_post"]["kernel"][0, 0, 0])
  want = (z @ p["fc"]["kernel"] + p["fc"]["bias"]).mean(axis=1)
  np.testing.assert_allclose(run(head, v, x), want, rtol=1e-4, atol=1e-5)
  # At the size the pool was built for (2x2x2 map) the fixed pool equals the global average.
  x2 = x[:, :, :2, :2]
  glob = x3d_lib.X3DHead(3, 5, 7, 0.0, None)
  np.testing.assert_allclose(run(head, v, x2), run(glob, v, x2), rtol=1e-5, atol=1e-6)
  assert x3d_lib.x3d_head_pool_size(16, 224) == (16, 7, 7)
  assert x3d_lib.x3d_head_pool_size(4, 160) == (4, 5, 5)


def test_head_init_fc_normal_001_and_kaiming_fan_out():
  """Section 8 init: Linear N(0, 0.01) bias 0; convs kaiming normal fan_out (std sqrt(2 / C_out))."""
  head = x3d_lib.X3DHead(num_classes=400, dim_inner=8, dim_out=64)
  v = jax.jit(head.init)(jax.random.key(0), jnp.zeros((1, 1, 1, 1, 4)))
  fc = np.asarray(v["params"]["fc"]["kernel"])  # 64 x 400 draws
  assert abs(fc.std() - 0.01) < 0.0005 and np.all(np.asarray(v["params"]["fc"]["bias"]) == 0)
  post = np.asarray(v["params"]["conv_post"]["kernel"])  # (1, 1, 1, 8, 64): fan_out = 64
  assert abs(post.std() / np.sqrt(2.0 / 64) - 1) < 0.15


def test_shallow_x3d_forward_train_mode():
  """The whole network on (N, T, H, W, 3) (narrow and shallow to stay cheap): logits (N, K), finite."""
  model = x3d_lib.X3D(num_classes=7, variant="xs", width_factor=0.5, depth_factor=0.5, head_dim_out=16,
                      dropout=0.5)
  x = np.random.default_rng(5).normal(size=(2, 4, 32, 32, 3)).astype(np.float32)
  v = random_variables(model, x)
  assert sorted(k for k in v["params"] if k.startswith("stage")) == [
      "stage1_0", "stage2_0", "stage3_0", "stage3_1", "stage3_2", "stage4_0", "stage4_1"]
  logits, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                                                 mutable=["batch_stats"]))(v, x)
  assert logits.shape == (2, 7) and np.all(np.isfinite(np.asarray(logits)))
  assert set(upd["batch_stats"]) == set(v["batch_stats"])


# ---------------------------------------------------------------------------------- sizes and MACs
def _count(variant, t, s, k):
  model = x3d_lib.X3D(num_classes=k, variant=variant)
  x = jax.ShapeDtypeStruct((1, t, s, s, 3), jnp.float32)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  return flops.count_params(v["params"]), flops.count_conv_linear_macs(model, v, x, train=False) / 1e9


@pytest.mark.parametrize("variant,t,s,k,params,gmacs", [
    ("m", 16, 224, 400, 3_794_274, 4.73),   # REFERENCE.md section 13 (pytorchvideo, torch 2.13)
    ("xs", 4, 160, 400, 3_794_274, 0.605),  # thesis Table 3.6: 0.6G
])  # X3D-M 16x256^2 K=174 (3.331M / 6.18, thesis Table 5.9 3.3M / 6.4G): the config test below
def test_x3d_params_and_macs_reference_section13(variant, t, s, k, params, gmacs):
  got_p, got_g = _count(variant, t, s, k)
  assert abs(got_p - params) <= 0.001 * params
  assert abs(got_g - gmacs) <= 0.005 * gmacs


def test_x3d_l_params_pytorchvideo_model_zoo():
  """X3D-L (depth factor 5.0): 6.15M params in pytorchvideo's model zoo table (K=400)."""
  model = x3d_lib.X3D(num_classes=400, variant="l")
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1, 32, 32, 3)), train=False))
  assert abs(flops.count_params(v["params"]) / 1e6 - 6.15) < 0.01


@pytest.mark.parametrize("name,params,gmacs", [("x3d_m_ssv1", 3_331_200, 6.18),
                                               ("x3d_xs_ssv1", 3_331_200, 0.605)])
def test_x3d_configs_build_through_registry(name, params, gmacs):
  """configs/x3d_*_ssv1.py: 174 classes; X3D-M 16x256^2 (Table 5.9), X3D-XS 4x160^2 (Table 3.6)."""
  from vidjax import config_utils
  config = importlib.import_module(f"configs.{name}").get_config()
  assert config.data.mean == (0.45, 0.45, 0.45) and config.data.std == (0.225, 0.225, 0.225)
  model = registry.build(config.model)
  x = jax.ShapeDtypeStruct(config_utils.input_shape(config), jnp.float32)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  assert abs(flops.count_params(v["params"]) - params) <= 0.001 * params
  assert abs(flops.count_conv_linear_macs(model, v, x, train=False) / 1e9 - gmacs) <= 0.005 * gmacs


def test_registry_rejects_unknown_variant_and_builds_fixed_pool():
  cfg = ml_collections.ConfigDict(dict(name="x3d", variant="q", num_classes=5))
  with pytest.raises(ValueError):
    registry.build(cfg)
  cfg = ml_collections.ConfigDict(dict(name="x3d", variant="xs", num_classes=5, head_pool="fixed"))
  assert tuple(registry.build(cfg).head_pool) == (4, 5, 5)  # built for X3D-XS's 4 x 160^2
