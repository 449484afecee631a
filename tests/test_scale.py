"""Mixed precision, rematerialisation and gradient accumulation (issue 7, point 4).

Checked against the plain float32 / no-remat / whole-batch step of the same code path, since each of
them must not change the update (bf16: up to bf16 rounding)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import scale_models
from tests.tiny import tiny_config
from vidjax import config_utils
from vidjax.models import registry
from vidjax.train import optim, state as state_lib, step as step_lib


def _setup(c, model=None):
  model = model or registry.build(c.model, dtype=config_utils.compute_dtype(c), remat=c.train.remat)
  shape = config_utils.input_shape(c, batch=1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(shape, np.float32), train=False))
  tx = optim.make_optimizer(c, abstract["params"], 10)
  state = jax.jit(lambda: state_lib.create(model, tx, shape, c.seed))()
  step = jax.jit(lambda s, b: step_lib.train_step(s, b, model=model, tx=tx, config=c, total_steps=10))
  return model, state, step


def _batch(c, seed=0):
  return next(scale_models.batches(c, 1, seed))


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class NoBatchNorm(nn.Module):
  """Conv -> ReLU -> mean -> Dense: no coupling between the clips of a batch."""
  num_classes: int

  @nn.compact
  def __call__(self, video, train=False):
    n, t, h, w, c = video.shape
    x = nn.relu(nn.Conv(8, (3, 3), strides=2, name="conv")(video.reshape(n * t, h, w, c)))
    x = x.reshape(n, t, -1).mean(axis=1)
    return nn.Dense(self.num_classes, name="fc")(x)


def test_grad_accumulation_equals_one_large_batch():
  c = tiny_config()
  c.optim.batch_size = 8
  batch = _batch(c)
  model = NoBatchNorm(c.model.num_classes)
  _, s0, step1 = _setup(c, model)
  c.optim.grad_accum_steps = 4
  _, _, step4 = _setup(c, model)
  a, ma = step1(s0, batch)
  b, mb = step4(s0, batch)
  assert _max_diff(a.params, b.params) < 1e-6  # same SGD update (weight decay, momentum, clipping included)
  assert _max_diff(a.opt_state, b.opt_state) < 1e-6
  np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-6)
  np.testing.assert_allclose(float(ma["top1"]), float(mb["top1"]))  # logits back in batch order


def test_grad_accumulation_with_batchnorm_and_joint_training_runs():
  c = scale_models.config("dan_mgda")
  c.optim.grad_accum_steps = 2
  _, s0, step = _setup(c)
  s1, m = step(s0, _batch(c))
  assert np.isfinite(float(m["loss"])) and 0 <= float(m["alpha"]) <= 1
  assert _max_diff(s0.batch_stats, s1.batch_stats) > 0  # statistics updated from the micro-batches
  with pytest.raises(ValueError, match="grad_accum_steps"):
    c.optim.grad_accum_steps = 3
    _setup(c)[2](s0, _batch(c))


def test_bfloat16_computes_in_bf16_with_float32_parameters_statistics_and_loss():
  c = tiny_config(**{"model.dropout": 0.0})
  batch = _batch(c)
  _, s32, step32 = _setup(c)
  c.dtype = "bfloat16"
  model16, s16, step16 = _setup(c)
  floats = [x for x in jax.tree.leaves((s16.params, s16.batch_stats, s16.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)]  # (optax step counts are int32)
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  jaxpr = str(jax.make_jaxpr(step16)(s16, batch))
  assert "conv_general_dilated" in jaxpr and "bf16" in jaxpr
  convs = [l for l in jaxpr.splitlines() if "conv_general_dilated[" in l or "= conv_general_dilated" in l]
  assert convs and all("bf16" in l for l in convs), convs[:3]
  a, ma = step32(s32, batch)
  b, mb = step16(s16, batch)
  assert mb["loss"].dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((b.params, b.batch_stats)))
  np.testing.assert_allclose(float(mb["loss"]), float(ma["loss"]), rtol=2e-2)


@pytest.mark.parametrize("name", ["tsm"])
def test_remat_keeps_parameters_and_update(name):
  c = scale_models.config(name)
  batch = _batch(c)
  _, s0, step = _setup(c)
  c.train.remat = True
  model_r, s0r, step_r = _setup(c)
  assert jax.tree.structure(s0.params) == jax.tree.structure(s0r.params)
  assert "remat" in str(jax.make_jaxpr(step_r)(s0r, batch)) or "checkpoint" in str(jax.make_jaxpr(step_r)(s0r, batch))
  a, _ = step(s0, batch)
  b, _ = step_r(s0, batch)
  assert _max_diff(a.params, b.params) < 1e-5


def test_remat_refused_where_there_are_no_blocks():
  c = tiny_config()
  c.model.name = "mobilenet_v2_tsm"
  with pytest.raises(ValueError, match="remat"):
    registry.build(c.model, remat=True)
