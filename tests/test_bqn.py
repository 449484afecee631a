"""Busy-only MBPM model and the Busy-Quiet Net (thesis section 5.4, REFERENCE.md sections 7, 9, 10, 13).

Full-size models are only traced (``jax.eval_shape``); numerics run on narrow, shallow instances.
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import bqn_hmdb51, bqn_k400, bqn_ssv1, bqn_ucf101, bqn_x3d_k400, bqn_x3d_ssv1
from vidjax import config_utils
from vidjax.backbones.resnet import TSMResNet, stage_layout
from vidjax.models import registry
from vidjax.models.bqn import BusyQuietResNet, BusyTSMResNet, lc_block_indices
from vidjax.modules.bandpass import MotionBandPass
from vidjax.tools import flops


def _shapes(model, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  return v, x


@pytest.fixture(scope="module")
def bqn_r50():
  """The thesis' BQN TSM-R50 from configs/bqn_ssv1.py: 24 frames, Quiet 160^2 / Busy 256^2, 174 classes."""
  config = bqn_ssv1.get_config()
  model = registry.build(config.model)
  v, x = _shapes(model, config_utils.input_shape(config))
  return config, model, v, x


# -------------------------------------------------------------------------------- counts (section 13)
def test_bqn_r50_params_and_macs(bqn_r50):
  """REFERENCE.md section 13: 47.679M params, 59.39 GMACs conv/linear (thesis Table 5.9: 47.4M / 60G)."""
  config, model, v, x = bqn_r50
  assert x.shape == (1, 24, 256, 256, 3)
  params = flops.count_params(v["params"])
  macs = flops.count_conv_linear_macs(model, v, x, train=False) / 1e9
  assert abs(params / 47.68e6 - 1) < 0.01, params
  assert abs(macs / 59.4 - 1) < 0.01, macs


def test_bqn_r50_as_src_model_imports_it():
  """REFERENCE.md sections 7 / 13: ``src/bqn_resnet.py`` (Quiet not down-sampled, LC-III with a 1x1 conv on
  both directions of every block) has 88.212M params and 154.14 GMACs conv/linear at 24 x 256^2."""
  model = BusyQuietResNet(num_classes=174, quiet_size=256, lc_design="III", lc_phi=True, lc_w1=True)
  v, x = _shapes(model, (1, 24, 256, 256, 3))
  assert abs(flops.count_params(v["params"]) / 88.212e6 - 1) < 0.01
  assert abs(flops.count_conv_linear_macs(model, v, x, train=False) / 1e9 / 154.14 - 1) < 0.01


def test_busy_tsm_r50_params_and_macs():
  """MBPM + TSM-R50, 24 frames x 224^2, 174 classes: 23.865M / 32.70 GMACs (REFERENCE.md 13), and the
  MBPM adds exactly 252 parameters (Table 5.1 "0.2K") to the TSM-R50 it feeds."""
  cfg = ml_collections.ConfigDict(dict(name="busy_tsm_resnet", num_classes=174))
  model = registry.build(cfg)
  v, x = _shapes(model, (1, 24, 224, 224, 3))
  params = flops.count_params(v["params"])
  assert abs(params / 23.865e6 - 1) < 0.01
  assert abs(flops.count_conv_linear_macs(model, v, x, train=False) / 1e9 / 32.70 - 1) < 0.01
  tsm, _ = _shapes(TSMResNet(num_classes=174), (1, 8, 224, 224, 3))
  assert params - flops.count_params(tsm["params"]) == 252


# ------------------------------------------------------------------------------ lateral connections
def test_bplc_layout_r50(bqn_r50):
  """REFERENCE.md section 7: 16 BPLCs, odd block -> Busy->Quiet (resize+BN), even -> Quiet->Busy
  (MBPM+resize+BN); MBPM k = 7 in res2-res4 and 3 in res5 (section 5.5.3); no phi conv."""
  _, _, v, _ = bqn_r50
  p = v["params"]
  arrows = {}
  for s, b, *_ in stage_layout(50, 1.0):
    lc = p[f"layer{s}_{b}"]["lc"]
    up, down = "to_busy_mbpm" in lc, "to_quiet_bn" in lc
    assert up != down and ("to_busy_bn" in lc) == up
    assert not any(k.endswith(("phi", "w1")) for k in lc)
    arrows.setdefault(s, []).append("up" if up else "down")
    if up:
      k = 3 if s == 4 else 7
      assert lc["to_busy_mbpm"]["log"]["kernel"].shape == (k, k, 1, lc["to_busy_bn"]["scale"].shape[0])
  assert arrows == {1: ["down", "up", "down"], 2: ["up", "down", "up", "down"],
                    3: ["up", "down", "up", "down", "up", "down"], 4: ["up", "down", "up"]}


def test_lc_placement_tables_5_5_and_5_6():
  layout = list(stage_layout(50, 1.0))
  assert len(lc_block_indices("all", (1, 2, 3, 4), layout)) == 16
  assert lc_block_indices("first", (1, 2, 3, 4), layout) == {1, 4, 8, 14}  # Table 5.5, 4 BPLCs
  assert lc_block_indices("first", (1, 2), layout) == {1, 4}  # Table 5.5 "res2,res3"
  assert lc_block_indices("none", (1, 2, 3, 4), layout) == set()
  assert lc_block_indices((1, 2, 4, 5, 8, 9, 14, 15), (1, 2, 3, 4), layout) == {1, 2, 4, 5, 8, 9, 14, 15}
  with pytest.raises(ValueError):
    lc_block_indices((17,), (1, 2, 3, 4), layout)
  # The model builds exactly those connections.
  model = BusyQuietResNet(num_classes=5, width=0.125, lc_blocks="first", lc_stages=(1, 2))
  v, _ = _shapes(model, (1, 6, 64, 64, 3))
  with_lc = {k for k, sub in v["params"].items() if k.startswith("layer") and "lc" in sub}
  assert with_lc == {"layer1_0", "layer2_0"}


# ------------------------------------------------------------------- the two pathways (section 5.4)
def _np_bilinear(n_in, n_out):
  """Half-pixel bilinear without antialiasing (nn.Upsample(align_corners=False)), REFERENCE.md 1."""
  m = np.zeros((n_out, n_in))
  for i in range(n_out):
    src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = min(int(math.floor(src)), n_in - 1)
    lam = src - i0
    m[i, i0] += 1 - lam
    m[i, min(i0 + 1, n_in - 1)] += lam
  return m


def _np_resize_clip(x, frames, size):
  """(N, T, H, W, C) -> (N, frames, size, size, C), separable linear interpolation."""
  a = _np_bilinear(x.shape[1], frames)
  b = _np_bilinear(x.shape[2], size)
  return np.einsum("st,ih,jw,nthwc->nsijc", a, b, b, x).astype(np.float32)


def _pathway_variables(v, which, concat=False):
  """BQN variables of one pathway, renamed as a stand-alone (Busy)TSMResNet's."""
  out = {}
  for col, tree in v.items():
    d = {}
    for name, sub in tree.items():
      if name == f"{which}_stem":
        d["stem"] = sub
      elif name.startswith("layer"):
        d[name] = sub[which]
      elif name == "head":  # only the features are used; keep an fc of the stand-alone width
        fc = sub["fc"]
        width = fc["kernel"].shape[0] // 2 if concat else fc["kernel"].shape[0]
        d["head"] = {"fc": {"kernel": fc["kernel"][:width], "bias": fc["bias"]}}
      elif name == "busy_mbpm" and which == "busy":
        d["mbpm"] = sub
    out[col] = d
  return out


def _frame_features(model, variables, x):
  _, feats = model.apply(variables, x, train=False, return_features=True)
  return np.asarray(feats, np.float64).mean(axis=(1, 2))  # (N*T, C)


SMALL = dict(width=0.25, stage_sizes=(1, 1, 1, 1), dropout=0.5)


def _random_variables(model, video, seed=0):
  """Random weights and BN statistics without jax.random (whose init compiles slowly on a shared CPU).

  The lateral-connection BNs keep their zero-init value (gamma = beta = 0): identity connections.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), video)

  def fill(path, s):
    names = [k.key for k in path]
    if "lc" in names and names[0] == "params":
      return jnp.zeros(s.shape, s.dtype)
    x = rng.normal(size=s.shape)
    if names[-1] == "var":
      x = np.abs(x) + 0.5
    elif names[-1] == "kernel" and len(s.shape) == 4:  # fan-in scaled so activations stay O(1)
      x = x / np.sqrt(np.prod(s.shape[:-1]))
    elif names[-1] == "kernel" and "fc" in names:
      x = x * 0.01
    return jnp.asarray(x.astype(np.float32))
  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize("fusion,quiet_input", [
    ("avg_after_fc", "first_frame"),
    ("max_after_fc", "first_frame"),
    ("avg_before_fc", "first_frame"),
    ("concat_before_fc", "first_frame"),
    ("avg_after_fc", "eq5.4"),
])
def test_bqn_is_two_pathways_fused(fusion, quiet_input):
  """With the BPLC BNs at their zero init (identity connections), BQN = a TSM-ResNet on the Quiet input
  (first frame of every triplet, or Eq. 5.4's Avg3(I) - Gamma, resized bilinearly to the Quiet size)
  and an MBPM + TSM-ResNet on the triplets, with one shared fc fused as Table 5.4 says."""
  n, t, size, qsize, k = 1, 2, 64, 40, 7
  video = np.random.default_rng(0).normal(size=(n, 3 * t, size, size, 3)).astype(np.float32)
  bqn = BusyQuietResNet(num_classes=k, quiet_size=qsize, quiet_input=quiet_input, fusion=fusion, **SMALL)
  v = _random_variables(bqn, video)
  got = np.asarray(bqn.apply(v, video, train=False))
  assert got.shape == (n, k)

  busy_model = BusyTSMResNet(num_classes=k, **SMALL)
  quiet_model = TSMResNet(num_classes=k, **SMALL)
  concat = fusion == "concat_before_fc"
  vb = _pathway_variables(v, "busy", concat)
  f_f = _frame_features(busy_model, vb, video)
  if quiet_input == "first_frame":
    quiet = video[:, 0::3]
  else:
    gamma = np.asarray(MotionBandPass().apply({"params": v["params"]["busy_mbpm"]}, video))
    quiet = video.reshape(n, t, 3, size, size, 3).mean(axis=2) - gamma
  quiet = _np_resize_clip(quiet, t, qsize)
  f_c = _frame_features(quiet_model, _pathway_variables(v, "quiet", concat), quiet)

  fc = v["params"]["head"]["fc"]
  w, b = np.asarray(fc["kernel"], np.float64), np.asarray(fc["bias"], np.float64)
  if fusion == "avg_after_fc":
    per = (f_c @ w + b + f_f @ w + b) / 2
  elif fusion == "max_after_fc":
    per = np.maximum(f_c @ w + b, f_f @ w + b)
  elif fusion == "avg_before_fc":
    per = (f_c + f_f) / 2 @ w + b
  else:
    assert w.shape[0] == 2 * f_c.shape[1]
    per = np.concatenate([f_c, f_f], axis=1) @ w + b
  want = per.reshape(n, -1, k).mean(axis=1)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_reduced_quiet_frames_builds():
  """Table 5.8 "160^2 x 6" with 8 Busy frames: the Quiet pathway runs 6 frames (TSM over 6), the
  connections resize in time (numerics in test_bandpass.py)."""
  model = BusyQuietResNet(num_classes=5, quiet_size=40, quiet_frames=6, **SMALL)
  v, x = _shapes(model, (2, 24, 64, 64, 3))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert out.shape == (2, 5)


# --------------------------------------------------------------------------- configs (section 10)
@pytest.mark.parametrize("mod,classes,frames,lr,batch,epochs,wd,dropout,warmup", [
    (bqn_ssv1, 174, 24, 0.12, 256, 50, 8e-4, 0.8, 7),
    (bqn_k400, 400, 48, 0.08, 512, 100, 2e-4, 0.5, 7),
    (bqn_ucf101, 101, 24, 0.001, 64, 10, 1e-4, 0.8, 0),
    (bqn_hmdb51, 51, 24, 0.001, 64, 10, 1e-4, 0.8, 0),
])
def test_configs_follow_recipe(mod, classes, frames, lr, batch, epochs, wd, dropout, warmup):
  """Thesis section 5.5.1 / REFERENCE.md section 10 hyper-parameters, crop 256 with 3-frame segments."""
  c = mod.get_config()
  assert c.model.name == "bqn_resnet" and c.model.num_classes == classes
  assert config_utils.input_shape(c) == (1, frames, 256, 256, 3)
  assert (c.optim.lr, c.optim.batch_size, c.optim.epochs) == (lr, batch, epochs)
  assert (c.optim.weight_decay, c.model.dropout, c.optim.warmup_epochs) == (wd, dropout, warmup)
  assert c.model.quiet_size == 160 and c.data.frames_per_segment == 3
  registry.build(c.model)


def test_param_groups_bqn_column(bqn_r50):
  """REFERENCE.md section 10, BQN column: which lr / wd multipliers each kind of parameter gets."""
  from vidjax.train.optim import group_labels, parse_rules
  config, _, v, _ = bqn_r50
  mults = {r.name: (r.lr_mult, r.wd_mult) for r in parse_rules(config.optim.param_groups)}
  labels = group_labels(v["params"], config.optim.param_groups)
  expect = {
      ("quiet_stem", "conv1", "kernel"): (5, 1), ("busy_stem", "conv1", "kernel"): (5, 1),
      ("busy_mbpm", "log", "kernel"): (5, 1), ("busy_mbpm", "temporal", "kernel"): (5, 1),
      ("busy_stem", "bn1", "scale"): (5, 0), ("busy_stem", "bn1", "bias"): (5, 0),
      ("quiet_stem", "bn1", "scale"): (1, 0),
      ("layer1_0", "busy", "conv2", "kernel"): (1, 1), ("layer1_0", "quiet", "downsample_bn", "bias"): (1, 0),
      ("layer1_1", "lc", "to_busy_mbpm", "log", "kernel"): (1, 1),
      ("layer1_1", "lc", "to_busy_bn", "scale"): (1, 0), ("layer1_0", "lc", "to_quiet_bn", "bias"): (1, 0),
      ("head", "fc", "kernel"): (5, 0), ("head", "fc", "bias"): (10, 0),
  }
  for path, (lr, wd) in expect.items():
    label = labels
    for p in path:
      label = label[p]
    assert mults[label] == (lr, wd), (path, label)


# ---------------------------------------------------------------------------------------- BQN-X3D
@pytest.fixture(scope="module")
def bqn_x3d_m():
  """BQN X3D-M from configs/bqn_x3d_ssv1.py: 48 frames, Quiet 160^2 / Busy 256^2, 174 classes."""
  config = bqn_x3d_ssv1.get_config()
  model = registry.build(config.model)
  v, x = _shapes(model, config_utils.input_shape(config))
  return config, model, v, x


def test_bqn_x3d_m_params_macs_and_layout(bqn_x3d_m):
  """REFERENCE.md sections 8 and 13: 7.084M params, 9.28 GMACs conv/linear (thesis 6.6M / 9.7G);
  26 alternating connections, each with a 1x1 conv, LC MBPM k 7 (stages 1-3) / 3 (stage 4); two heads."""
  config, model, v, x = bqn_x3d_m
  assert x.shape == (1, 48, 256, 256, 3)
  assert abs(flops.count_params(v["params"]) / 7.08e6 - 1) < 0.01
  assert abs(flops.count_conv_linear_macs(model, v, x, train=False) / 1e9 / 9.28 - 1) < 0.01
  p = v["params"]
  blocks = [k for k in p if k.startswith("stage")]
  assert len(blocks) == 26 and {"quiet_head", "busy_head", "busy_mbpm"} <= set(p)
  for i, (s, b, *_) in enumerate(model.layout(), 1):
    lc = p[f"stage{s}_{b}"]["lc"]
    if i % 2:
      assert set(lc) == {"to_quiet_phi", "to_quiet_bn"}
    else:
      assert set(lc) == {"to_busy_mbpm", "to_busy_w1", "to_busy_bn"}
      k = 3 if s == 4 else 7
      assert lc["to_busy_mbpm"]["log"]["kernel"].shape[:2] == (k, k)


def test_bqn_x3d_param_groups(bqn_x3d_m):
  from vidjax.train.optim import group_labels, parse_rules
  config, _, v, _ = bqn_x3d_m
  mults = {r.name: (r.lr_mult, r.wd_mult) for r in parse_rules(config.optim.param_groups)}
  labels = group_labels(v["params"], config.optim.param_groups)
  expect = {
      ("busy_stem", "conv_xy", "kernel"): (5, 1), ("quiet_stem", "conv_xy", "kernel"): (1, 1),
      ("busy_mbpm", "log", "kernel"): (5, 1), ("busy_stem", "norm", "scale"): (1, 0),
      ("stage1_0", "busy", "se", "reduce", "bias"): (2, 0),
      ("stage1_0", "lc", "to_quiet_phi", "conv", "kernel"): (1, 1),
      ("stage1_1", "lc", "to_busy_mbpm", "temporal", "kernel"): (1, 1),
      ("quiet_head", "fc", "kernel"): (5, 0), ("busy_head", "fc", "bias"): (10, 0),
  }
  for path, (lr, wd) in expect.items():
    label = labels
    for q in path:
      label = label[q]
    assert mults[label] == (lr, wd), (path, label)


@pytest.mark.parametrize("arg,classes,lr,epochs,wd,dropout", [
    ("scratch", 174, 0.2, 100, 5e-5, 0.5), ("k400ft", 174, 0.12, 60, 4e-4, 0.8), (None, 400, 0.4, 256, 5e-5, 0.5)])
def test_bqn_x3d_configs_follow_recipe(arg, classes, lr, epochs, wd, dropout):
  """Thesis section 5.5.1 / REFERENCE.md section 10, X3D-M rows (batch 256, 7 warm-up epochs)."""
  c = bqn_x3d_k400.get_config() if arg is None else bqn_x3d_ssv1.get_config(arg)
  assert c.model.name == "bqn_x3d" and c.model.num_classes == classes
  assert config_utils.input_shape(c) == (1, 48, 256, 256, 3)
  assert (c.optim.lr, c.optim.batch_size, c.optim.epochs, c.optim.weight_decay) == (lr, 256, epochs, wd)
  assert (c.model.dropout, c.optim.warmup_epochs) == (dropout, 7)
  assert c.data.mean == (0.45, 0.45, 0.45) and c.data.std == (0.225, 0.225, 0.225)
