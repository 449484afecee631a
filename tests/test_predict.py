"""predict.py: real video files (mp4, avi, webm) -> evaluation views -> top-5 class names.

The checkpoint is the tiny synthetic TSM of tests/tiny.py written as a step-0 checkpoint (classifier
weights drawn larger than at init so that the probabilities differ). The expected probabilities are
recomputed here from the evaluation recipe (REFERENCE.md section 10 test views: segment-centre clips,
short side ``scale_size``, ``test_crops`` crops, logits averaged over the views, then softmax), with the
frames decoded by PyAV directly.
"""
import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import predict
from input_pipeline import sampling, transforms
from input_pipeline.sources.synthetic import CLASS_NAMES, SyntheticMotion, write_videos
from tests.tiny import tiny_config
from vidjax.models import registry
from vidjax.tools import convert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("predict")
  c = tiny_config()
  model = registry.build(c.model)
  variables = convert.initial_variables(model, c)
  fc = variables["params"]["head"]["fc"]
  fc["kernel"] = np.random.default_rng(0).normal(0, 1.0, fc["kernel"].shape).astype(np.float32)
  convert.write_checkpoint(variables, c, str(tmp / "run"))
  videos = tmp / "videos"
  src = SyntheticMotion(num_videos=3, num_frames=12, height=40, width=48, num_classes=8, split="test", seed=3)
  paths = []
  for ext in ("mp4", "avi", "webm"):
    write_videos(src, str(videos / ext), str(tmp / f"{ext}.txt"), ext=ext)
    paths.append(str(videos / ext / f"test_000000.{ext}"))
  return dict(config=c, workdir=str(tmp / "run"), videos=videos, paths=paths, tmp=tmp, model=model,
              variables=variables)


def _decode(path):
  import av
  with av.open(path) as container:
    return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _expected(config, model, variables, path):
  d = config.data
  frames = _decode(path)
  idx = sampling.test_clip_indices(len(frames), d.num_segments, d.frames_per_segment, d.sampling, d.test_clips)
  views = []
  for clip in idx:
    views += list(transforms.val_views(frames[clip], d.crop_size, d.scale_size, d.test_crops))
  x = (np.stack(views).astype(np.float32) / 255.0 - np.asarray(d.mean)) / np.asarray(d.std)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  logits = np.asarray(apply(variables, x.astype(np.float32)), np.float64).mean(0)
  p = np.exp(logits - logits.max())
  return p / p.sum(), len(views)


def test_probabilities_follow_the_evaluation_views(setup):
  """Top-5 names and probabilities = softmax of the view-averaged logits (3 crops x 2 clips)."""
  c = tiny_config(**{"data.test_crops": 3, "data.test_clips": 2, "data.scale_size": 36})
  pred = predict.Predictor(c, setup["workdir"])
  assert pred.step == 0
  for path in setup["paths"]:
    r = pred.classify(path, k=5)
    p, n_views = _expected(c, setup["model"], setup["variables"], path)
    assert r["views"] == n_views == 6
    order = np.argsort(-p)[:5]
    assert [t["index"] for t in r["top"]] == list(order)
    assert [t["label"] for t in r["top"]] == [CLASS_NAMES[i] for i in order]
    np.testing.assert_allclose([t["probability"] for t in r["top"]], p[order], rtol=1e-4, atol=1e-6)
    assert p[order[0]] > p[order[-1]]  # not a uniform prediction


def test_folder_json_and_one_line_errors(setup):
  """A folder of mp4/avi/webm plus corrupt, truncated and missing files: each bad file gets one error
  line (stderr and JSON), every good file is still classified, exit status 1."""
  bad = setup["tmp"] / "bad"
  bad.mkdir(exist_ok=True)
  (bad / "garbage.mp4").write_bytes(os.urandom(4000))
  (bad / "truncated.avi").write_bytes(open(setup["paths"][1], "rb").read()[:300])
  missing = str(setup["tmp"] / "nowhere.webm")
  out, err = io.StringIO(), io.StringIO()
  code = predict.run(setup["config"], setup["workdir"], [str(setup["videos"]), str(bad), missing],
                     as_json=True, out=out, err=err)
  assert code == 1
  results = json.loads(out.getvalue())
  good = [r for r in results if "top" in r]
  errors = [r for r in results if "error" in r]
  assert len(good) == 9  # 3 clips x (mp4, avi, webm)
  assert {os.path.splitext(r["path"])[1] for r in good} == {".mp4", ".avi", ".webm"}
  for r in good:
    probs = [t["probability"] for t in r["top"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert all(t["label"] in CLASS_NAMES for t in r["top"])
  assert sorted(os.path.basename(r["path"]) for r in errors) == ["garbage.mp4", "nowhere.webm", "truncated.avi"]
  lines = err.getvalue().strip().splitlines()
  assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
  for name in ("garbage.mp4", "nowhere.webm", "truncated.avi"):
    assert sum(name in line for line in lines) == 1


def test_command_line(setup):
  """``python predict.py --config=... --workdir=... VIDEO``: text output, top-5 lines with percentages."""
  args = ["--config.model.width=0.0625", "--config.model.stage_sizes=(1,1,1,1)", "--config.data.crop_size=32",
          "--config.data.scale_size=32", "--config.data.num_segments=4"]
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  proc = subprocess.run([sys.executable, "predict.py", "--config=configs/synthetic_tsm.py", *args,
                         f"--workdir={setup['workdir']}", setup["paths"][0]],
                        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[0] == setup["paths"][0] and len(lines) == 6
  assert all(line.strip()[0] in "12345" and "%" in line for line in lines[1:])
  # another model's config is refused with the differing field named
  proc = subprocess.run([sys.executable, "predict.py", "--config=configs/synthetic_tsm.py", *args,
                         "--config.model.width=0.125", f"--workdir={setup['workdir']}", setup["paths"][0]],
                        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 2 and "model.width" in proc.stderr


def test_label_maps():
  """Shipped label maps: Kinetics-400 (400 names, alphabetical), UCF101, HMDB51; a count mismatch is an
  error; unknown datasets fall back to 'class k'."""
  from configs import default
  c = default.get_config()
  for dataset, k, first in (("kinetics400", 400, "abseiling"), ("ucf101", 101, "ApplyEyeMakeup"),
                            ("hmdb51", 51, "brush_hair")):
    c.data.dataset, c.model.num_classes = dataset, k
    names = predict.class_names(c)
    assert len(names) == k and names[0] == first and len(set(names)) == k
  c.model.num_classes = 10
  with pytest.raises(ValueError, match="51 class names"):
    predict.class_names(c)
  c.data.dataset = "videos"
  assert predict.class_names(c)[:2] == ("class 0", "class 1")
