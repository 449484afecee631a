"""Fine-tuning helpers (vidjax/train/finetune.py): partial BN, frozen BN parameters, init checkpoints.

Partial BN = thesis section 5.5.1 ("freeze all of the batch normalization layers except for the first
one", following TSN) as the reference's ``src/model.py`` ``TSN.train()`` / ``get_optim_policies`` do it
(REFERENCE.md section 10): frozen BNs normalise with their running statistics and leave them unchanged,
their scale / bias never move. Init checkpoints: ``main_apex.py --pretrain`` (every ``fc`` re-initialised).
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bqn_ucf101
from tests.tiny import tiny_config
from vidjax import config_utils
from vidjax.backbones.layers import batch_norm
from vidjax.models import registry
from vidjax.tools import convert
from vidjax.train import finetune, optim

EPS = 1e-5  # layers.batch_norm: PyTorch eps
MOMENTUM = 0.9  # Flax momentum = 1 - PyTorch momentum 0.1


# ------------------------------------------------------------------------------------------ toy
class Inner(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    return batch_norm(train, name="bn")(x)


class Toy(nn.Module):
  """bn_first -> dense -> block/bn -> LayerNorm (a norm layer that is not a BatchNorm)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = batch_norm(train, name="bn_first")(x)
    x = nn.Dense(6, name="dense")(x)
    x = Inner(name="block")(x, train)
    return nn.LayerNorm(name="ln")(x)


def _toy_variables(seed=0):
  """Random running statistics, scales and biases (so that train / eval mode differ visibly)."""
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(lambda: Toy().init(jax.random.key(0), jnp.zeros((2, 5)), train=False))

  def fill(path, s):
    name = path[-1].key
    if name == "var":
      return (rng.uniform(0.5, 2.0, s.shape)).astype(np.float32)
    return rng.normal(0, 1, s.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, abstract)


def _bn_numpy_eval(x, mean, var, scale, bias):
  return (x - mean) / np.sqrt(var + EPS) * scale + bias


def _bn_numpy_train(x, scale, bias):
  m, v = x.mean(axis=0), x.var(axis=0)  # biased batch variance normalises (PyTorch and Flax)
  return (x - m) / np.sqrt(v + EPS) * scale + bias, m, v


def test_partial_bn_freezes_all_but_the_kept_bn_numpy():
  """Frozen BN: y = (x - running_mean) / sqrt(running_var + eps) * scale + bias, statistics unchanged;
  kept BN: batch statistics and the running-average update mean <- 0.9 mean + 0.1 batch_mean."""
  v = _toy_variables()
  x = np.random.default_rng(1).normal(2.0, 3.0, (8, 5)).astype(np.float32)
  seen = {}

  def capture(next_fun, args, kwargs, context):  # outermost: sees the BN's input and final output
    y = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.BatchNorm):
      seen["/".join(context.module.path)] = (np.asarray(args[0], np.float64), np.asarray(y, np.float64))
    return y

  with nn.intercept_methods(capture), finetune.partial_bn(r"(^|/)bn_first/"):
    _, new = Toy().apply(v, x, train=True, mutable=["batch_stats"])
  p, s = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"]), v["batch_stats"]

  xin, y = seen["bn_first"]
  want, bm, bv = _bn_numpy_train(xin, p["bn_first"]["scale"], p["bn_first"]["bias"])
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(new["batch_stats"]["bn_first"]["mean"],
                             MOMENTUM * s["bn_first"]["mean"] + (1 - MOMENTUM) * bm, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(new["batch_stats"]["bn_first"]["var"],
                             MOMENTUM * s["bn_first"]["var"] + (1 - MOMENTUM) * bv, rtol=1e-5, atol=1e-5)

  xin, y = seen["block/bn"]
  b, st = p["block"]["bn"], s["block"]["bn"]
  np.testing.assert_allclose(y, _bn_numpy_eval(xin, st["mean"], st["var"], b["scale"], b["bias"]),
                             rtol=1e-5, atol=1e-5)
  for k in ("mean", "var"):
    np.testing.assert_array_equal(new["batch_stats"]["block"]["bn"][k], st[k])

  # control: without the interceptor the same BN normalises with batch statistics and updates them
  _, plain = Toy().apply(v, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(plain["batch_stats"]["block"]["bn"]["mean"], st["mean"])


def test_partial_bn_inside_jit_and_grad():
  """How step.py runs it: the interceptor active while jit(value_and_grad) traces the apply."""
  v = _toy_variables()
  x = np.random.default_rng(1).normal(2.0, 3.0, (8, 5)).astype(np.float32)

  def loss(params):
    with finetune.partial_bn(r"(^|/)bn_first/"):
      out, new = Toy().apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])
    return jnp.sum(out), new["batch_stats"]

  (_, stats), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(v["params"])
  for k in ("mean", "var"):
    np.testing.assert_array_equal(stats["block"]["bn"][k], v["batch_stats"]["block"]["bn"][k])
    assert not np.array_equal(stats["bn_first"][k], v["batch_stats"]["bn_first"][k])
  assert np.all(np.isfinite(np.asarray(grads["dense"]["kernel"])))


def test_partial_bn_in_a_tiny_tsm_resnet_with_remat():
  """Through nn.remat residual blocks: every BatchNorm's statistics but stem/bn1's come back unchanged
  from a train-mode apply of a tiny TSM-ResNet (17 BNs)."""
  c = tiny_config(**{"model.remat": True})
  model = registry.build(c.model)
  shape = config_utils.input_shape(c, batch=2)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  rng = np.random.default_rng(0)
  v = jax.tree_util.tree_map_with_path(
      lambda p, s: (rng.uniform(0.5, 1.5, s.shape) if p[-1].key in ("var", "scale") else
                    rng.normal(0, 0.1, s.shape)).astype(np.float32), abstract)
  x = rng.normal(0, 1, shape).astype(np.float32)
  with finetune.partial_bn(r"(^|/)stem/bn1/"):  # jit: one compile instead of op-by-op dispatch
    _, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
  flat_old = convert._flatten(v["batch_stats"])
  flat_new = convert._flatten(jax.tree.map(np.asarray, new["batch_stats"]))
  assert flat_new.keys() == flat_old.keys() and len(flat_old) == 34
  for path, old in flat_old.items():
    if path[:2] == ("stem", "bn1"):
      assert not np.array_equal(flat_new[path], old), path
    else:
      np.testing.assert_array_equal(flat_new[path], old, err_msg=str(path))


def test_config_keep_regex_is_the_first_bn_of_bqn():
  """configs/bqn_ucf101.py's partial_bn_keep selects exactly the first BN the BQN calls: the Quiet stem's
  bn1, the first BatchNorm2d the reference registers (src/bqn_resnet_reverse.py)."""
  c = bqn_ucf101.get_config()
  c.model.width, c.model.stage_sizes, c.model.num_classes, c.model.quiet_size = 0.0625, (1, 1, 1, 1), 5, 40
  c.data.crop_size, c.data.num_segments = 64, 2
  paths = finetune.batch_norm_paths(registry.build(c.model), jnp.zeros(config_utils.input_shape(c, 1)),
                                    train=True)
  assert c.train.partial_bn
  assert paths[0] == "quiet_stem/bn1/"
  import re
  assert [p for p in paths if re.search(c.train.partial_bn_keep, p)] == ["quiet_stem/bn1/"]
  assert any("/lc/" in p for p in paths)  # lateral-connection BNs exist and are frozen


# ------------------------------------------------------------------------------- mask + optimizer
def _opt_config(lr=0.1, wd=1e-2, clip=1.0):
  from configs import default
  c = default.get_config()
  c.optim.lr, c.optim.weight_decay, c.optim.momentum, c.optim.grad_clip = lr, wd, 0.9, clip
  c.optim.epochs, c.optim.warmup_epochs = 100, 0.0
  # every group decays: weight decay must not move a frozen parameter either
  c.optim.param_groups = ("bn: .* | bn | 1 | 1", "rest: .* | * | 2 | 1")
  return c


def test_frozen_bn_mask():
  v = _toy_variables()
  mask = finetune.frozen_bn_mask(v["params"], r"(^|/)bn_first/", v["batch_stats"])
  frozen = sorted("/".join(p) for p, m in convert._flatten(mask).items() if m)
  assert frozen == ["block/bn/bias", "block/bn/scale"]  # not bn_first (kept), not dense, not the LayerNorm
  no_stats = finetune.frozen_bn_mask(v["params"], r"(^|/)bn_first/")  # every norm layer's scale/bias
  assert sorted("/".join(p) for p, m in convert._flatten(no_stats).items() if m) == [
      "block/bn/bias", "block/bn/scale", "ln/bias", "ln/scale"]
  with pytest.raises(ValueError, match="partial_bn_keep"):
    finetune.frozen_bn_mask(v["params"], r"(^|/)quiet_stem/bn1/", v["batch_stats"])


def test_freeze_keeps_frozen_params_bit_identical_sgd_numpy():
  """Frozen leaves never change (momentum, weight decay, 3 steps); the others follow torch SGD
  (REFERENCE.md section 10) with clip_grad_norm_ over the trainable gradients only."""
  c = _opt_config()
  params = _toy_variables()["params"]
  stats = _toy_variables()["batch_stats"]
  mask = finetune.frozen_bn_mask(params, r"(^|/)bn_first/", stats)
  tx = finetune.freeze(optim.make_optimizer(c, params, steps_per_epoch=1), mask)
  state = tx.init(params)
  rng = np.random.default_rng(3)
  p = params
  for i in range(3):
    g = jax.tree.map(lambda a: rng.normal(0, 1, a.shape).astype(np.float32), params)
    g["block"]["bn"] = jax.tree.map(lambda a: 1e3 * a, g["block"]["bn"])  # would dominate the norm
    u, state = jax.jit(tx.update)(g, state, p)
    p_new = jax.tree.map(lambda a, b: a + b, p, u)
    if i == 0:  # step 0: lr(0) = base lr; buf = d
      flat_g, flat_p, flat_m = (convert._flatten(t) for t in (g, p, mask))
      norm = np.sqrt(sum(np.sum(np.float64(flat_g[k]) ** 2) for k in flat_g if not flat_m[k]))
      scale = min(1.0, c.optim.grad_clip / norm)  # optax.clip_by_global_norm
      for k, new in convert._flatten(p_new).items():
        if flat_m[k]:
          continue
        mult = 2.0 if k[0] == "dense" else 1.0  # groups 'rest' (lr x2) and 'bn' (lr x1)
        want = flat_p[k] - c.optim.lr * mult * (flat_g[k] * scale + c.optim.weight_decay * flat_p[k])
        np.testing.assert_allclose(np.asarray(new), want, rtol=1e-4, atol=1e-6, err_msg=str(k))
    p = p_new
  for k, m in convert._flatten(mask).items():
    old, new = convert._flatten(params)[k], np.asarray(convert._flatten(p)[k])
    if m:
      np.testing.assert_array_equal(new, old, err_msg=str(k))
    else:
      assert not np.array_equal(new, old), k


# ----------------------------------------------------------------------------- init checkpoints
def _random_variables(config, seed):
  model = registry.build(config.model)
  shape = config_utils.input_shape(config, batch=1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), convert.jax_to_dict(abstract))


@pytest.fixture(scope="module")
def k8_workdir(tmp_path_factory):
  """A vidjax workdir holding a tiny TSM-ResNet trained for 8 classes (the 'Kinetics' model)."""
  c = tiny_config(**{"model.num_classes": 8})
  v = _random_variables(c, seed=0)
  wd = str(tmp_path_factory.mktemp("k8"))
  convert.write_checkpoint(v, c, wd)
  return wd, v


def _check_finetuned(out, source, target):
  flat_o, flat_s, flat_t = (convert._flatten(t) for t in (out, source, target))
  assert flat_o.keys() == flat_t.keys()
  for k, val in flat_o.items():
    want = flat_t[k] if k[-2] == "fc" else flat_s[k]  # classifier from the new model, the rest loaded
    np.testing.assert_array_equal(np.asarray(val), want, err_msg=str(k))


def test_load_vidjax_workdir_reinitialises_fc(k8_workdir):
  wd, source = k8_workdir
  c = tiny_config(**{"model.num_classes": 5})
  target = _random_variables(c, seed=1)
  out, report = finetune.load_init_checkpoint(wd, target, c)
  _check_finetuned(out, source, target)
  n = len(convert._flatten(target))
  assert report["format"] == "vidjax" and report["step"] == 0
  assert report["loaded"] == n - 2 and report["total"] == n
  assert report["reinitialised"] == ["params/head/fc/bias", "params/head/fc/kernel"]
  assert f"{n - 2} of {n} arrays loaded" in finetune.format_report(report)
  for alt in (os.path.join(wd, "checkpoints"), os.path.join(wd, "checkpoints", "0")):
    out2, _ = finetune.load_init_checkpoint(alt, target, c)
    _check_finetuned(out2, source, target)
  with pytest.raises(finetune.InitCheckpointError, match="init_head=init"):
    finetune.load_init_checkpoint(wd, target, c, head="keep")  # 8 classes into 5


def test_load_checkpoint_of_another_model_is_a_clear_error(k8_workdir, tmp_path):
  c_other = tiny_config(**{"model.width": 0.125})
  wd = str(tmp_path / "wide")
  convert.write_checkpoint(_random_variables(c_other, seed=2), c_other, wd)
  c = tiny_config(**{"model.num_classes": 5})
  target = _random_variables(c, seed=1)
  with pytest.raises(finetune.InitCheckpointError) as e:
    finetune.load_init_checkpoint(wd, target, c)
  msg = str(e.value)
  assert wd in msg and "wrong shape" in msg and "params/layer1_0/bn1/bias: checkpoint (8,) vs model (4,)" in msg
  assert "another model" in msg and "--config.model" in msg and "model.width" in msg
  missing = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="train.init_checkpoint") as e:
    finetune.load_init_checkpoint(missing, target, c)
  assert missing in str(e.value)


def _tsn_state_dict(variables):
  """The author's TSN/TSM names (REFERENCE.md section 2) for a vidjax tsm_resnet, PyTorch layouts."""
  sd = {}
  for (col, *mods, leaf), a in convert._flatten(variables).items():
    a = np.asarray(a)
    if mods[0] == "head":
      name = "new_fc"
    elif mods[0] == "stem":
      name = "base_model." + mods[1]
    else:
      s, b = mods[0][len("layer"):].split("_")
      sub = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1",
             "conv1": "conv1.net"}.get(mods[1], mods[1])
      name = f"base_model.layer{s}.{b}.{sub}"
    if leaf == "kernel":
      a = a.T if a.ndim == 2 else a.transpose((3, 2, 0, 1))
      leaf = "weight"
    else:
      leaf = {"scale": "weight", "mean": "running_mean", "var": "running_var"}.get(leaf, leaf)
    sd[f"{name}.{leaf}"] = a
  return sd


def test_load_pytorch_npz_reinitialises_fc(k8_workdir, tmp_path):
  _, source = k8_workdir
  path = str(tmp_path / "tsm_k8.npz")
  np.savez(path, **_tsn_state_dict(source))
  c = tiny_config(**{"model.num_classes": 5})
  target = _random_variables(c, seed=1)
  out, report = finetune.load_init_checkpoint(path, target, c)
  _check_finetuned(out, source, target)
  assert report["format"] == "pytorch" and report["source"] == "tsn"
  assert report["reinitialised"] == ["params/head/fc/bias", "params/head/fc/kernel"]
  assert sorted(report["dropped"]) == ["new_fc.bias", "new_fc.weight"]
  with pytest.raises(finetune.InitCheckpointError, match="another model"):
    finetune.load_init_checkpoint(path, _random_variables(tiny_config(**{"model.width": 0.125}), 3),
                                  tiny_config(**{"model.width": 0.125}))
