"""Optimiser of REFERENCE.md section 10: schedule, parameter groups and the SGD update."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from vidjax.backbones.resnet import TSMResNet
from vidjax.train import optim


def reference_lr(epoch_float, lr, epochs, warmup):
  """main.py adjust_learning_rate, 'cos' with warm-up, written out."""
  if epoch_float < warmup:
    base = lr / 10
    return epoch_float / warmup * (lr - base) + base
  return 0.5 * lr * (1 + math.cos(math.pi * (epoch_float - warmup) / (epochs - warmup)))


@pytest.mark.parametrize("warmup", [0.0, 7.0])
def test_schedule_matches_reference(warmup):
  spe, epochs, lr = 13, 50, 0.08
  sched = optim.lr_schedule(lr, spe, epochs, warmup)
  for step in [0, 1, 12, 13, 90, 91, 92, 300, 649]:
    assert float(sched(step)) == pytest.approx(reference_lr(step / spe, lr, epochs, warmup), rel=1e-5, abs=1e-8)


def small_params():
  m = TSMResNet(num_classes=3, width=0.125, stage_sizes=(1, 1, 1, 1))
  return m.init(jax.random.key(0), jnp.zeros((1, 2, 32, 32, 3)))["params"]


def test_tsn_groups():
  labels = optim.group_labels(small_params(), default.get_config().optim.param_groups)
  flat = {"/".join(p.key for p in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(labels)[0]}
  assert flat["head/fc/kernel"] == "fc_weight"
  assert flat["head/fc/bias"] == "fc_bias"
  assert flat["stem/bn1/scale"] == "bn" and flat["stem/bn1/bias"] == "bn"
  assert flat["stem/conv1/kernel"] == "weight"
  assert flat["layer2_0/downsample_bn/bias"] == "bn"
  assert flat["layer1_0/conv2/kernel"] == "weight"


def test_bad_rule_is_a_clear_error():
  with pytest.raises(ValueError, match="param_groups"):
    optim.parse_rules(["no separators here"])


def test_update_equals_torch_sgd_written_out():
  """p -= lr * m_lr * buf, buf = 0.9 buf + (clip(g) + wd * m_wd * p), per group (torch.optim.SGD)."""
  c = default.get_config()
  c.optim.lr, c.optim.weight_decay, c.optim.grad_clip = 0.1, 1e-2, 1.0
  c.optim.epochs, c.optim.warmup_epochs = 10, 2
  params = {"conv": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))},
            "bn": {"scale": jnp.ones((2,)), "bias": jnp.ones((2,))},
            "fc": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}}
  mult = {"conv/kernel": (1, 1), "conv/bias": (2, 0), "bn/scale": (1, 0), "bn/bias": (1, 0),
          "fc/kernel": (5, 1), "fc/bias": (10, 0)}
  spe = 4
  tx = optim.make_optimizer(c, params, spe)
  state = tx.init(params)
  rng = np.random.default_rng(0)
  p_np = {k: np.ones(v.shape) for k, v in
          {"conv/kernel": params["conv"]["kernel"], "conv/bias": params["conv"]["bias"],
           "bn/scale": params["bn"]["scale"], "bn/bias": params["bn"]["bias"],
           "fc/kernel": params["fc"]["kernel"], "fc/bias": params["fc"]["bias"]}.items()}
  buf = {k: np.zeros_like(v) for k, v in p_np.items()}
  p = params
  for step in range(6):
    g_np = {k: rng.normal(size=v.shape) for k, v in p_np.items()}
    norm = math.sqrt(sum((g ** 2).sum() for g in g_np.values()))
    scale = min(1.0, 1.0 / norm)
    lr = reference_lr(step / spe, 0.1, 10, 2)
    for k in p_np:
      d = g_np[k] * scale + 1e-2 * mult[k][1] * p_np[k]
      buf[k] = 0.9 * buf[k] + d
      p_np[k] = p_np[k] - lr * mult[k][0] * buf[k]
    g = {"conv": {"kernel": g_np["conv/kernel"], "bias": g_np["conv/bias"]},
         "bn": {"scale": g_np["bn/scale"], "bias": g_np["bn/bias"]},
         "fc": {"kernel": g_np["fc/kernel"], "bias": g_np["fc/bias"]}}
    g = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), g)
    upd, state = tx.update(g, state, p)
    p = jax.tree.map(lambda a, u: a + u, p, upd)
  for k, v in p_np.items():
    a, b = k.split("/")
    np.testing.assert_allclose(np.asarray(p[a][b]), v, rtol=1e-5, atol=1e-6)
