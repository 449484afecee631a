"""One jitted step for every scale: 8 simulated CPU devices give the 1-device result (DESIGN.md)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_8_devices_equal_1_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sharded_step_check.py")], cwd=ROOT,
                     capture_output=True, text=True, timeout=600, env=env)
  assert r.returncode == 0, r.stdout + r.stderr
  line = [l for l in r.stdout.splitlines() if l.startswith("MAXDIFF")][0]
  diff = float(line.split()[1])
  assert diff < 1e-5, line  # global-batch BN and a global gradient: same update up to float rounding
