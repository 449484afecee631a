"""Multi-host training (issue 7): two processes on 127.0.0.1 (CPU, 2 devices each) train through the
real loop and end with identical parameters, equal to a 1-process run on 4 devices."""
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "multihost_check.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  addr = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen([sys.executable, SCRIPT, str(tmp_path / "multi"), str(tmp_path / f"p{i}.npz"), "2",
                             addr, "2", str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, o in zip(procs, outs):
    assert p.returncode == 0, o
  single = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "single"), str(tmp_path / "s.npz"), "4"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stdout + single.stderr
  assert "PROCESS 0 of 2 devices 4 step 4" in outs[0] and "PROCESS 1 of 2 devices 4 step 4" in outs[1]
  assert "PROCESS 0 of 1 devices 4 step 4" in single.stdout
  # only process 0 logs progress and writes results.json / TensorBoard; both saved the checkpoints
  assert "step 2/4" in outs[0] and "step 2/4" not in outs[1]
  assert (tmp_path / "multi" / "results.json").exists()
  assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == sorted(
      os.listdir(tmp_path / "single" / "checkpoints"))
  p0, p1, s = (np.load(tmp_path / f) for f in ("p0.npz", "p1.npz", "s.npz"))
  assert sorted(p0.files) == sorted(s.files) and len(s.files) > 10
  for k in s.files:
    np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)  # the processes agree exactly
    np.testing.assert_allclose(p0[k], s[k], rtol=1e-5, atol=1e-6, err_msg=k)  # and equal 1 process x 4 devices
