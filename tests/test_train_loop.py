"""End to end on the tiny synthetic setup: train, checkpoint, resume, refuse other models, evaluate."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vidjax.evaluate import metrics_from_logits
from vidjax.train import checkpoint, loop
from tests.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(summary):
  return jax.tree.map(np.asarray, summary["state"].params)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
  c = tiny_config()  # 4 steps/epoch x 2 epochs = 8 steps, checkpoints every 3
  full = loop.train_and_evaluate(c, str(tmp_path / "full"))
  assert full["step"] == 8
  part = loop.train_and_evaluate(c, str(tmp_path / "resumed"), stop_after=5)  # checkpoint at 5 (end)
  assert part["step"] == 5 and "top1" not in part
  resumed = loop.train_and_evaluate(c, str(tmp_path / "resumed"))
  assert resumed["step"] == 8
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(full), _params(resumed))
  results = json.load(open(tmp_path / "resumed" / "results.json"))
  assert set(results) >= {"step", "top1", "top5", "mean_class_accuracy", "num_videos", "views"}
  assert results["step"] == 8 and results["num_videos"] == 16
  assert os.listdir(tmp_path / "full" / "tensorboard")  # TensorBoard event files
  variables, step = checkpoint.restore_variables(str(tmp_path / "full"))
  assert step == 8 and isinstance(jax.tree.leaves(variables)[0], np.ndarray)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), variables["params"], _params(full))


def test_another_models_checkpoint_is_refused(tmp_path):
  loop.train_and_evaluate(tiny_config(**{"train.total_steps": 2}), str(tmp_path))
  other = tiny_config(**{"train.total_steps": 4, "model.width": 0.125})
  with pytest.raises(checkpoint.CheckpointMismatchError, match="model.width"):
    loop.train_and_evaluate(other, str(tmp_path))


def test_fine_tuning_from_another_run_with_partial_bn(tmp_path):
  """Kinetics -> UCF101 in small (thesis section 5.5.1): another run's weights, a new 5-class fc, and
  every BatchNorm but the first frozen (statistics and affine), as the reference's partial BN."""
  loop.train_and_evaluate(tiny_config(**{"train.total_steps": 2}), str(tmp_path / "pre"))
  pre, _ = checkpoint.restore_variables(str(tmp_path / "pre"))
  c = tiny_config(**{"train.total_steps": 2, "model.num_classes": 5, "data.synthetic.num_classes": 5,
                     "train.init_checkpoint": str(tmp_path / "pre"), "train.partial_bn": True,
                     "train.partial_bn_keep": r"(^|/)stem/bn1/", "train.eval_at_end": False})
  ft = loop.train_and_evaluate(c, str(tmp_path / "ft"))
  params, stats = jax.device_get(ft["state"].params), jax.device_get(ft["state"].batch_stats)
  assert params["head"]["fc"]["kernel"].shape[-1] == 5
  # frozen BN: scale, bias and running statistics are still the pre-trained ones; the first BN moved
  np.testing.assert_array_equal(params["layer2_0"]["bn1"]["scale"], pre["params"]["layer2_0"]["bn1"]["scale"])
  np.testing.assert_array_equal(stats["layer2_0"]["bn1"]["mean"], pre["batch_stats"]["layer2_0"]["bn1"]["mean"])
  assert np.abs(stats["stem"]["bn1"]["mean"] - pre["batch_stats"]["stem"]["bn1"]["mean"]).max() > 0
  assert np.abs(params["layer2_0"]["conv1"]["kernel"] - pre["params"]["layer2_0"]["conv1"]["kernel"]).max() > 0
  c.train.partial_bn_keep = ""
  with pytest.raises(ValueError, match="partial_bn_keep"):
    loop.train_and_evaluate(c, str(tmp_path / "ft2"))


def _env():
  # share the compilation cache of conftest.py with the subprocesses
  env = dict(os.environ)
  env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  return env


def _train_cmd(workdir, *extra):
  return [sys.executable, "train.py", "--config=configs/synthetic_tsm.py", f"--workdir={workdir}",
          "--config.model.width=0.0625", "--config.model.stage_sizes=(1,1,1,1)",
          "--config.data.synthetic.num_train=32", "--config.data.synthetic.num_val=8",
          "--config.data.synthetic.num_frames=8", "--config.data.num_segments=4", "--config.optim.batch_size=8",
          *extra]


def test_unknown_config_key_is_a_clear_error(tmp_path):
  r = subprocess.run(_train_cmd(tmp_path, "--config.optim.learning_rate=0.1"), cwd=ROOT,
                     capture_output=True, text=True, timeout=120, env=_env())
  assert r.returncode != 0
  assert "learning_rate" in r.stderr and "lr" in r.stderr  # names the key and offers the right one


def test_sigterm_checkpoints_and_the_same_command_resumes(tmp_path):
  cmd = _train_cmd(tmp_path, "--config.optim.epochs=400", "--config.train.checkpoint_every=100000",
                   "--config.train.log_every=1")
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=_env())
  deadline = time.time() + 240
  for line in proc.stdout:
    if "step 3/" in line:
      break
    assert time.time() < deadline
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, out
  step = checkpoint.manager(str(tmp_path), read_only=True).latest_step()
  assert step is not None and step >= 3  # saved on SIGTERM although checkpoint_every is 100000
  r = subprocess.run(cmd + ["--config.train.total_steps=" + str(step + 1)], cwd=ROOT,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240, env=_env())
  assert "resumed from" in r.stdout and f"at step {step}" in r.stdout, r.stdout
  assert f"step {step + 1}/{step + 1}" in r.stdout  # progress line of the resumed run


def test_metrics_from_logits():
  logits = np.array([[3., 2, 1, 0, -1, -2], [0, 5, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
  labels = np.array([0, 0, 0, 1])
  r = metrics_from_logits(logits, labels, 6)
  assert r["top1"] == 0.25  # only video 0
  assert r["top5"] == 0.5  # videos 0 and 3; in videos 1 and 2 the label has the lowest logit
  assert r["mean_class_accuracy"] == pytest.approx((1 / 3 + 0) / 2)  # class 0: 1 of 3, class 1: 0 of 1
