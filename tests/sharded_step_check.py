"""Run by test_sharding.py in a fresh process with 8 simulated CPU devices (XLA_FLAGS set there).

``python tests/sharded_step_check.py MODEL [MESH ...]``: trains the tiny MODEL (tests/scale_models.py)
for 3 steps from the same initial state on the same batches on a 1-device mesh and on each MESH
(``data x fsdp``, e.g. ``8x1`` or ``4x2``; FSDP shards every state array of >= 64 elements), and prints
the largest difference of the parameters and BN statistics per mesh, relative to the largest magnitude of
the array it occurs in (at least 1): BN variances of random clips reach 1e4-1e5 in BQN's MBPM stem.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tests import scale_models  # noqa: E402
from vidjax.train import sharding  # noqa: E402


def run(name: str, data: int, fsdp: int):
  c = scale_models.config(name)
  c.mesh.data, c.mesh.fsdp, c.mesh.fsdp_min_size = data, fsdp, 64
  mesh = sharding.make_mesh(c)
  init, step = scale_models.build(c, mesh)
  state = init()
  for batch in scale_models.batches(c, 3):
    state, m = step(state, sharding.to_global(batch, mesh))
  sharded = sum(1 for s in jax.tree.leaves(state.params) if not s.sharding.is_fully_replicated)
  return jax.tree.map(np.asarray, (state.params, state.batch_stats)), sharded


assert jax.device_count() == 8, jax.devices()
name, meshes = sys.argv[1], sys.argv[2:] or ["8x1"]
ref, _ = run(name, 1, 1)
scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(ref))
for spec in meshes:
  d, f = (int(v) for v in spec.split("x"))
  out, sharded = run(name, d, f)
  diff = max(float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(a))))
             for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)))
  print(f"MAXDIFF {name} {spec} {diff:.3e} SCALE {scale:.3e} SHARDED_PARAMS {sharded}", flush=True)
