"""``config.train.cpu_library_fusion`` (vidjax/train/compiler.py): which ops XLA:CPU hands to YNNPACK
(dots and reductions; convolutions stay with XLA) changes the speed of the step (bench/RESULTS.md), not
its result."""
import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import scale_models
from tests.tiny import tiny_config
from vidjax import config_utils
from vidjax.models import registry
from vidjax.train import compiler, optim, sharding, state as state_lib, step as step_lib


def _one_step(c):
  model = registry.build(c.model, dtype=config_utils.compute_dtype(c))
  shape = config_utils.input_shape(c, batch=1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(shape, np.float32), train=False))
  tx = optim.make_optimizer(c, abstract["params"], 10)
  state = jax.jit(lambda: state_lib.create(model, tx, shape, c.seed))()
  mesh = sharding.make_mesh(c)
  shardings = sharding.state_shardings(jax.eval_shape(lambda: state), mesh, c)
  step = step_lib.jit_train_step(model, tx, c, shardings, sharding.data_sharded(mesh), total_steps=10)
  batch = sharding.to_global(next(scale_models.batches(c, 1, 0)), mesh)
  new, metrics = step(state, batch)
  return new, metrics, step


def _ynn_ops(step, state, c):
  batch = sharding.to_global(next(scale_models.batches(c, 1, 0)), sharding.make_mesh(c))
  ops = collections.Counter()
  for line in step.lower(state, batch).compile().as_text().splitlines():
    if "__ynn_fusion" in line:
      m = re.search(r'op_name="([^"]*)"', line)
      ops[m.group(1).split("/")[-1] if m else "?"] += 1
  return ops


def test_library_fusion_gives_the_same_step():
  c = tiny_config()
  c.train.cpu_library_fusion = ""
  assert compiler.step_options(c) is None
  plain, m_plain, _ = _one_step(c)
  c.train.cpu_library_fusion = "dot,reduce"
  options = compiler.step_options(c)
  if jax.default_backend() == "cpu":
    assert options == {compiler.YNN_OPTION: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  fused, m_fused, step = _one_step(c)
  if options:  # the option reached XLA: YNNPACK runs dots and reductions, no convolution
    assert _ynn_ops(step, fused, c)["conv_general_dilated"] == 0
    assert _ynn_ops(step, fused, c)["reduce_sum"] > 0
  np.testing.assert_allclose(float(m_fused["loss"]), float(m_plain["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(fused.params)):
    scale = float(jnp.max(jnp.abs(a))) + 1e-12
    assert float(jnp.max(jnp.abs(a - b))) / scale < 1e-5
  for a, b in zip(jax.tree.leaves(plain.batch_stats), jax.tree.leaves(fused.batch_stats)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_unknown_kind_is_a_clear_error():
  c = tiny_config()
  c.train.cpu_library_fusion = "dot,conv"
  if jax.default_backend() != "cpu":
    pytest.skip("the option is only used on CPU")
  with pytest.raises(ValueError, match="cpu_library_fusion.*'conv'.*dot, eltwise, reduce"):
    compiler.step_options(c)
