"""Run by test_sharding.py in a fresh process with 8 simulated CPU devices (XLA_FLAGS set there).

``python tests/sharded_step_check.py MODEL [MESH ...]``: trains the tiny MODEL (tests/scale_models.py)
for 3 steps on a 1-device mesh, then runs each of those steps on each MESH (``data x fsdp``, e.g. ``8x1``
or ``4x2``; FSDP shards every state array of >= 64 elements) from the same state on the same batch, and
prints the largest difference of the parameters and BN statistics per mesh over the 3 steps, relative to
the largest magnitude of the array it occurs in (at least 1): BN variances of random clips reach 1e4-1e5
in BQN's MBPM stem.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tests import scale_models  # noqa: E402
from vidjax.train import sharding  # noqa: E402


def trajectory(name: str):
  """The 1-device run: the host copies of the states before and after each of the 3 steps."""
  c = scale_models.config(name)
  c.mesh.data, c.mesh.fsdp = 1, 1
  mesh = sharding.make_mesh(c)
  init, step = scale_models.build(c, mesh)
  state = init()
  states = [jax.tree.map(np.asarray, state)]
  for batch in scale_models.batches(c, 3):
    state, m = step(state, sharding.to_global(batch, mesh))
    states.append(jax.tree.map(np.asarray, state))
  return states


def run(name: str, data: int, fsdp: int, states):
  """Each step on the ``data x fsdp`` mesh from the 1-device state before it; the largest difference
  of its parameters and BN statistics from the 1-device state after it (one step at a time, so that a
  rounding difference is not amplified over steps: a max-pool or ReLU decision that flips on a 1e-7
  difference would otherwise move the next steps by far more than the step's own rounding)."""
  c = scale_models.config(name)
  c.mesh.data, c.mesh.fsdp, c.mesh.fsdp_min_size = data, fsdp, 64
  mesh = sharding.make_mesh(c)
  init, step = scale_models.build(c, mesh)
  placed = jax.tree.map(lambda a: a.sharding, init())
  diff, sharded = 0.0, 0
  for k, batch in enumerate(scale_models.batches(c, 3)):
    out, _ = step(jax.device_put(states[k], placed), sharding.to_global(batch, mesh))
    sharded = sum(1 for s in jax.tree.leaves(out.params) if not s.sharding.is_fully_replicated)
    want = (states[k + 1].params, states[k + 1].batch_stats)
    got = jax.tree.map(np.asarray, (out.params, out.batch_stats))
    diff = max([diff] + [float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(a))))
                         for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got))])
  return diff, sharded


assert jax.device_count() == 8, jax.devices()
name, meshes = sys.argv[1], sys.argv[2:] or ["8x1"]
states = trajectory(name)
scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves((states[-1].params, states[-1].batch_stats)))
for spec in meshes:
  d, f = (int(v) for v in spec.split("x"))
  diff, sharded = run(name, d, f, states)
  print(f"MAXDIFF {name} {spec} {diff:.3e} SCALE {scale:.3e} SHARDED_PARAMS {sharded}", flush=True)
