"""Run by test_multihost.py: one process of a multi-process (or the single-process reference) run.

``python tests/multihost_check.py WORKDIR OUT.npz DEVICES [COORDINATOR NUM_PROCESSES PROCESS_ID]``
trains the tiny TSM (tests/tiny.py) for 4 steps through the real loop (``train_and_evaluate``: global
batches from per-process parts, orbax saving from every process, evaluation gathered from all), with
DEVICES simulated CPU devices in this process, and writes the final parameters to OUT.npz.
"""
import os
import sys

workdir, out, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tests.tiny import tiny_config  # noqa: E402
from vidjax.train import distributed, loop  # noqa: E402
from vidjax.train.metrics import setup_logging  # noqa: E402

setup_logging()
if len(sys.argv) > 4:
  distributed.initialize(sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
c = tiny_config(**{"model.dropout": 0.0, "train.total_steps": 4, "train.checkpoint_every": 2})
summary = loop.train_and_evaluate(c, workdir)
params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), summary["state"].params)
flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
        for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
np.savez(out, **flat)
print(f"PROCESS {jax.process_index()} of {jax.process_count()} devices {jax.device_count()} "
      f"step {summary['step']} top1 {summary.get('top1')}", flush=True)
