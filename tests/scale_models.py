"""Tiny configs of the models the scale tests run (BQN, RNL-TSM, DAN with MGDA, TSM), and a
self-contained way to build their sharded train state and step without a dataset (random clips)."""
from __future__ import annotations

import jax
import numpy as np

from configs import bqn_ssv1, dan_tsm_ssv1, rnl_tsm_k400
from tests.tiny import tiny_config
from vidjax import config_utils
from vidjax.models import registry
from vidjax.train import optim, sharding, state as state_lib, step as step_lib


def _shrink(c, classes=5):
  c.model.num_classes = classes
  c.model.dropout = 0.0
  c.optim.batch_size = 8
  c.optim.lr = 0.05
  c.optim.warmup_epochs = 0.0
  c.data.dataset = "synthetic"
  return c


def config(name: str):
  if name == "tsm":
    c = tiny_config(**{"model.dropout": 0.0})
  elif name == "bqn":
    c = _shrink(bqn_ssv1.get_config())
    c.model.width, c.model.stage_sizes, c.model.quiet_size = 0.0625, (1, 1, 1, 1), 16
    c.model.lc_kernel_sizes = (3, 3, 3, 3)
    c.data.num_segments, c.data.frames_per_segment, c.data.crop_size = 2, 3, 32
  elif name == "rnl_tsm":
    c = _shrink(rnl_tsm_k400.get_config())
    c.model.width, c.model.stage_sizes = 0.125, (1, 1, 2, 1)
    c.model.attention.positions = ((2, 0), (3, 1))
    c.data.num_segments, c.data.crop_size = 4, 32
  elif name == "dan_mgda":
    c = _shrink(dan_tsm_ssv1.get_config(), classes=4)
    c.model.width, c.model.stage_sizes = 0.0625, (1, 1, 1, 1)
    c.model.num_segments = c.data.num_segments = 2
    c.model.pwtp.conv_setting = None
    c.model.pwtp.update(dict(kernel_size=3, stride=2, channels=4))
    c.data.frames_per_segment, c.data.crop_size = 3, 16
    c.joint.strategy = "mgda"
  else:
    raise ValueError(name)
  return c


def build(c, mesh):
  """(jitted init, jitted step, mesh) for config ``c`` on ``mesh``, as ``loop.setup`` builds them."""
  model = registry.build(c.model, dtype=config_utils.compute_dtype(c), remat=c.train.remat)
  shape = config_utils.input_shape(c, batch=1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(shape, np.float32), train=False))
  tx = optim.make_optimizer(c, abstract["params"], 10)
  make = lambda: state_lib.create(model, tx, shape, c.seed)  # noqa: E731
  shardings = sharding.state_shardings(jax.eval_shape(make), mesh, c)
  init = jax.jit(make, out_shardings=shardings)
  step = step_lib.jit_train_step(model, tx, c, shardings, sharding.data_sharded(mesh), total_steps=10)
  return init, step


def batches(c, n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  shape = config_utils.input_shape(c, batch=c.optim.batch_size)
  for _ in range(n):
    yield {"video": rng.integers(0, 256, shape, dtype=np.uint8),
           "label": rng.integers(0, c.model.num_classes, (c.optim.batch_size,)).astype(np.int32)}
