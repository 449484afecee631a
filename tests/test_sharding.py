"""One jitted step for every scale (issue 7): 8 simulated CPU devices give the 1-device result for
TSM, BQN, RNL-TSM and DAN with MGDA, with replicated (8x1) and FSDP-sharded (4x2) parameters
(relative to each array's largest magnitude, at least 1)."""
import os
import subprocess
import sys

import jax
import pytest
from jax.sharding import PartitionSpec as P

from tests.tiny import tiny_config
from vidjax.train import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("model,meshes", [("tsm", ["8x1", "4x2"]), ("bqn", ["8x1"]),
                                          ("rnl_tsm", ["8x1"]), ("dan_mgda", ["4x2"])])
def test_8_devices_equal_1_device(model, meshes):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sharded_step_check.py"), model, *meshes],
                     cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert r.returncode == 0, r.stdout + r.stderr
  lines = [l.split() for l in r.stdout.splitlines() if l.startswith("MAXDIFF")]
  assert [l[2] for l in lines] == meshes, r.stdout
  for l in lines:
    # global-batch BN and a global gradient: the same update up to float rounding
    assert float(l[3]) < 1e-5, l
    if l[2].endswith("x1"):
      assert int(l[-1]) == 0, l  # replicated parameters
    else:
      assert int(l[-1]) > 0, l  # FSDP: some parameters really are split


def test_fsdp_rule_splits_the_largest_divisible_dimension():
  assert sharding.leaf_spec((3, 3, 64, 256), 4, 1000) == P(None, None, None, "fsdp")
  assert sharding.leaf_spec((3, 3, 64, 254), 4, 1000) == P(None, None, "fsdp", None)
  assert sharding.leaf_spec((3, 3, 64, 256), 4, 10 ** 6) == P()  # too small: replicated
  assert sharding.leaf_spec((7, 5), 4, 1) == P()  # nothing divisible
  assert sharding.leaf_spec((), 4, 0) == P()
  assert sharding.leaf_spec((64, 64), 1, 0) == P()  # no fsdp axis


def test_mesh_from_config_and_clear_errors():
  c = tiny_config()
  mesh = sharding.make_mesh(c)
  assert mesh.axis_names == ("data", "fsdp") and mesh.shape["data"] == jax.device_count()
  c.mesh.fsdp = jax.device_count() + 1
  with pytest.raises(ValueError, match="mesh.fsdp"):
    sharding.make_mesh(c)
  c.mesh.fsdp, c.mesh.data = 1, jax.device_count() + 1
  with pytest.raises(ValueError, match="mesh.data"):
    sharding.make_mesh(c)
