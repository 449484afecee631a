"""Run by test_sharding.py in a fresh process with 8 simulated CPU devices (XLA_FLAGS set there).

Trains the tiny model for 3 steps on a 1-device mesh and on an 8-device 'data' mesh from the same
initial state and batches, and prints the largest parameter difference.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from input_pipeline import pipeline  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402
from vidjax.train import loop, sharding, step as step_lib  # noqa: E402


def run(devices: int):
  c = tiny_config(**{"mesh.data": devices, "model.dropout": 0.0})
  s = loop.setup(c, "")
  state = s["init"]()
  fn = step_lib.jit_train_step(s["model"], s["tx"], c, s["state_sharding"], sharding.data_sharded(s["mesh"]))
  for batch in pipeline.train_batches(c, s["train_source"], 0, 3):
    state, m = fn(state, sharding.to_global(batch, s["mesh"]))
  return jax.tree.map(np.asarray, state.params), jax.tree.map(np.asarray, state.batch_stats)


assert jax.device_count() == 8, jax.devices()
p1, b1 = run(1)
p8, b8 = run(8)
diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves((p1, b1)), jax.tree.leaves((p8, b8))))
scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(p1))
print(f"MAXDIFF {diff:.3e} SCALE {scale:.3e}")
