"""TeSNet (thesis section 3.2.3, Table 3.2, Fig. 3.4), Inception-ResNet-v2, DAN (section 3.5.3, Tables
3.6/3.7/3.12) and the chapter 3 configs. Full-size networks are only traced (jax.eval_shape)."""
import importlib
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vidjax import config_utils
from vidjax.backbones.inception_resnet_v2 import InceptionResNetV2
from vidjax.backbones.resnet import TSMResNet
from vidjax.models import registry
from vidjax.models.tesnet import ResNetTeS, TwoStream
from vidjax.modules.projection import PixelWiseTemporalProjection, TemporalSqueezePooling
from vidjax.tools import flops


def _shapes(model, x, **kw):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x, jnp.float32), **kw))


def _random(shapes, seed=0):
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1].key)
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    if name == "scale":
      return jnp.asarray(1 + 0.1 * rng.normal(size=leaf.shape), jnp.float32)
    fan_in = math.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else 4
    return jnp.asarray(rng.normal(size=leaf.shape) / math.sqrt(fan_in), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_inception_resnet_v2_param_count():
  """Inception-ResNet-v2, 1000 classes: 55,843,464 params (timm; Keras 55,813,192 trainable + 30,272 BN
  scales), 1536-d features."""
  model = InceptionResNetV2(1000)
  v = _shapes(model, (1, 1, 299, 299, 3))
  assert flops.count_params(v["params"]) == 55_843_464
  assert flops.count_params(v["batch_stats"]) == 2 * 30_272
  assert v["params"]["conv2d_7b"]["conv"]["kernel"].shape == (1, 1, 2080, 1536)


@pytest.mark.parametrize("setting,first,second", [(1, (10, 3), None), (2, (10, 1), None), (3, (10, 3), (3, 1)),
                                                  (4, (10, 3), (3, 1)), (5, (10, 3), (3, 1))])
def test_tesnet_table_3_2_settings(setting, first, second):
  """Table 3.2: TSP at the input / Conv2d_1a_3x3 with D1, then at Conv2d_4a_3x3 / Block A / Block B with D2;
  W1 is K x K and W2 KD x K for the frames K reaching each TSP (K = 10 input frames); M l_proj sown."""
  cfg = ml_collections.ConfigDict(dict(name="tesnet", num_classes=7, backbone="inception_resnet_v2",
                                       block_repeats=(0, 0, 0), tsp_setting=setting))
  model = registry.build(cfg)
  v = _shapes(model, (2, 10, 75, 75, 3))
  tsps = {k: p["tsp"] for k, p in v["params"]["backbone"].items() if k.endswith("_insert")}
  found = sorted((p["w1"]["kernel"].shape[0], p["w2"]["kernel"].shape[1] // p["w1"]["kernel"].shape[0])
                 for p in tsps.values())
  assert found == sorted([first] + ([second] if second else []))
  if setting in (1, 5):  # tracing the forward: logits and one sown l_proj per TSP (M = 1, 2)
    out, st = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 10, 75, 75, 3)), mutable=["losses"]), v)
    assert out.shape == (2, 7)
    assert len(jax.tree.leaves(st["losses"])) == (2 if second else 1)


def _narrow_resnet_cfg(**kw):
  base = dict(name="tesnet", num_classes=5, backbone="resnet50", width=0.125, stage_sizes=(1, 1, 1, 1),
              dropout=0.0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_tesnet_input_tsp_is_tsp_then_backbone():
  """Fig. 3.3(a): TeSNet logits = backbone(TSP(clip)) averaged over the D squeezed images; l_proj sown."""
  model = registry.build(_narrow_resnet_cfg(tsp_layers=("input:2",)))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 32, 32, 3)), jnp.float32)
  v = _random(_shapes(model, x.shape))
  plain = ResNetTeS(5, width=0.125, stage_sizes=(1, 1, 1, 1), dropout=0.0)

  @jax.jit
  def both(v, x):  # one compile for the model and the composition written out
    logits, st = model.apply(v, x, mutable=["losses"])
    tsp_vars = {"params": v["params"]["backbone"]["input_insert"]["tsp"]}
    y, st2 = TemporalSqueezePooling(2).apply(tsp_vars, x, mutable=["losses"])
    bb = {"params": {k: p for k, p in v["params"]["backbone"].items() if k != "input_insert"},
          "batch_stats": v["batch_stats"]["backbone"]}
    return logits, st, plain.apply(bb, y), st2

  logits, st, ref, st2 = both(v, x)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(jax.tree.leaves(st)[0]), float(st2["losses"]["l_proj"][0]), rtol=1e-5)


class _Linear(nn.Module):
  """A stand-in stream: mean over frames and pixels, then a Dense (cheap to compile)."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(5)(x.mean(axis=(1, 2, 3)))


def test_tesnet_two_stream_averages_scores():
  """Fig. 3.4: RGB stream on channels 0-2, flow stream on the x/y channels 3-4, scores averaged
  (logits, or softmax probabilities with fusion='softmax')."""
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 8, 8, 5)), jnp.float32)
  for fusion in ("logits", "softmax"):
    model = TwoStream(_Linear(), _Linear(), fusion)
    v = model.init(jax.random.key(1), x)
    out = model.apply(v, x)
    a = _Linear().apply({"params": v["params"]["rgb_stream"]}, x[..., :3])
    b = _Linear().apply({"params": v["params"]["flow_stream"]}, x[..., 3:])
    if fusion == "logits":
      ref = (np.asarray(a) + np.asarray(b)) / 2
    else:
      sm = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
      ref = np.log((sm(np.asarray(a, np.float64)) + sm(np.asarray(b, np.float64))) / 2)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)
  # The registered two-stream TeSNet: two full streams, the flow stream's first conv takes 2 channels.
  model = registry.build(_narrow_resnet_cfg(tsp_layers=("input:1",), modality="rgb+flow"))
  v = _shapes(model, (2, 4, 32, 32, 5))
  assert v["params"]["rgb_stream"]["backbone"]["stem"]["conv1"]["kernel"].shape[2] == 3
  assert v["params"]["flow_stream"]["backbone"]["stem"]["conv1"]["kernel"].shape[2] == 2
  assert jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 4, 32, 32, 5)), mutable=["losses"]),
                        v)[0].shape == (2, 5)


def _dan_cfg(**kw):
  base = dict(name="dan", num_classes=6, num_segments=2, backbone="tsm_resnet", width=0.125,
              stage_sizes=(1, 1, 1, 1), dropout=0.0,
              pwtp=dict(num_basis=1, conv_setting=4, mlp_config=7))
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_dan_is_pwtp_then_backbone():
  """Fig. 3.11: S x T frames -> PWTP per segment -> S dynamic appearances -> TSM-R50; ENoPR sown."""
  model = registry.build(_dan_cfg())
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 32, 32, 3)), jnp.float32)  # S=2, T=4
  v = _random(_shapes(model, x.shape), seed=2)
  backbone = TSMResNet(6, width=0.125, stage_sizes=(1, 1, 1, 1), dropout=0.0)

  @jax.jit
  def both(v, x):  # one compile for the model and the composition written out
    logits, st = model.apply(v, x, mutable=["losses"])
    rep = {"params": v["params"]["representation"], "batch_stats": v["batch_stats"]["representation"]}
    da, st2 = PixelWiseTemporalProjection().apply(rep, x.reshape(4, 4, 32, 32, 3), mutable=["losses"])
    bb = {"params": v["params"]["backbone"], "batch_stats": v["batch_stats"]["backbone"]}
    return logits, st, backbone.apply(bb, da.reshape(2, 2, 32, 32, 3)), st2

  logits, st, ref, st2 = both(v, x)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-4, atol=1e-5)
  assert list(st["losses"]["representation"]) == ["enopr"]
  np.testing.assert_allclose(float(st["losses"]["representation"]["enopr"][0]),
                             float(st2["losses"]["enopr"][0]), rtol=1e-5)


@pytest.mark.parametrize("rep,in_ch,sown", [("rgb_diff", 9, None), ("dynamic_image", 3, None),
                                            ("squeezed_image", 3, "l_proj"), ("rgb", 3, None),
                                            ("pwtp", 3, "enopr")])
def test_dan_representations(rep, in_ch, sown):
  """Table 3.12 inputs selectable by config: one frame per segment, backbone input channels, sown loss."""
  model = registry.build(_dan_cfg(representation=rep))
  v = _shapes(model, (2, 8, 32, 32, 3))
  assert v["params"]["backbone"]["stem"]["conv1"]["kernel"].shape[2] == in_ch
  out, st = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 8, 32, 32, 3)), mutable=["losses"]), v)
  assert out.shape == (2, 6)
  names = [str(p[-2].key) for p, _ in jax.tree_util.tree_flatten_with_path(st.get("losses", {}))[0]]
  assert names == ([sown] if sown else [])


def test_dan_x3d_backbone_narrow():
  """DAN with an X3D backbone: the S dynamic appearances form the X3D clip."""
  model = registry.build(_dan_cfg(backbone="x3d_xs", width_factor=0.5, head_dim_out=16, num_segments=4))
  out, v = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 16, 32, 32, 3))))
  assert out.shape == (1, 6)
  assert v["params"]["backbone"]["stem"]["conv_xy"]["kernel"].shape[-2] == 3
  assert v["params"]["representation"]["conv"]["kernel"].shape == (9, 9, 3, 24)


# ---------------------------------------------------------------------------------------------- configs

DAN_CONFIGS = {  # name: (backbone, S, T, classes, lr, batch, epochs, wd, dropout) -- section 3.6.1, Tables 3.6/3.7
    "dan_tsm_ssv1": ("tsm_resnet", 8, 4, 174, 0.12, 256, 50, 8e-4, 0.8),
    "dan_x3d_xs_ssv1": ("x3d_xs", 4, 8, 174, 0.12, 256, 50, 4e-4, 0.8),
    "dan_x3d_m_ssv1": ("x3d_m", 16, 3, 174, 0.12, 256, 50, 4e-4, 0.8),
    "dan_tsm_k400": ("tsm_resnet", 16, 8, 400, 0.08, 512, 100, 2e-4, 0.5),
    "dan_x3d_m_k400": ("x3d_m", 16, 8, 400, 0.4, 256, 256, 5e-5, 0.5),
}


@pytest.mark.parametrize("name", sorted(DAN_CONFIGS))
def test_dan_configs_section_3_6_1(name):
  c = importlib.import_module(f"configs.{name}").get_config()
  bb, s, t, k, lr, bs, ep, wd, dr = DAN_CONFIGS[name]
  assert (c.model.name, c.model.backbone, c.model.representation) == ("dan", bb, "pwtp")
  assert c.model.num_segments == c.data.num_segments == s and c.data.frames_per_segment == t
  assert c.model.num_classes == k and c.model.dropout == dr
  assert (c.optim.lr, c.optim.batch_size, c.optim.epochs, c.optim.weight_decay) == (lr, bs, ep, wd)
  assert c.joint.strategy == "mgda" and c.model.pwtp.num_basis == 1
  assert c.model.pwtp.conv_setting == 4 and c.model.pwtp.mlp_config == 7
  assert c.data.flip == (k == 400)  # no flip on Something-Something
  assert c.data.crop_size == (160 if bb == "x3d_xs" else 224)


@pytest.mark.parametrize("name,thesis_m", [("dan_x3d_xs_ssv1", 3.34), ("dan_x3d_m_ssv1", 3.34),
                                           ("dan_tsm_ssv1", 23.8)])
def test_dan_param_counts_table_3_6(name, thesis_m):
  """Table 3.6 #Param.: DAN-XS 3.34M, DAN-M 3.34M (exact to 0.01M), DAN TSM 23.8M (within 0.5%)."""
  c = importlib.import_module(f"configs.{name}").get_config()
  model = registry.build(c.model)
  n = flops.count_params(_shapes(model, config_utils.input_shape(c), train=False)["params"]) / 1e6
  if thesis_m < 10:
    assert round(n, 2) == thesis_m, n
  else:
    assert abs(n - thesis_m) / thesis_m < 0.005, n


def test_tesnet_ucf101_config():
  """Section 3.3.1: Inception-ResNet-v2, K = 10, TSP before the first conv with D = 3, beta = 10, 299^2,
  batch 32, wd 4e-5, lr 0.001 (RGB) / 0.005 (flow), 30 epochs, dropout 0.5; two-stream variant."""
  mod = importlib.import_module("configs.tesnet_ucf101")
  c = mod.get_config()
  assert c.model.backbone == "inception_resnet_v2" and tuple(c.model.tsp_layers) == ("input:3",)
  assert c.data.frames_per_segment == 10 and c.data.crop_size == 299
  assert (c.joint.strategy, c.joint.beta) == ("weighted", 10.0)
  assert (c.optim.batch_size, c.optim.weight_decay, c.optim.lr, c.optim.epochs) == (32, 4e-5, 0.001, 30)
  assert mod.get_config("flow").optim.lr == 0.005
  assert mod.get_config("rgb+flow").model.modality == "rgb+flow"
  assert c.model.tsp_activations == "sigmoid+leaky_relu" and c.model.dropout == 0.5
