"""Classify video files with a trained or converted checkpoint.

    python predict.py --config=configs/X.py --workdir=DIR VIDEO [VIDEO | FOLDER ...] [--json] [--top=5]

* Videos (mp4, avi, webm, mkv, ...; folders are searched recursively for those extensions) are decoded
  with ``input_pipeline.sources.videos.decode_video`` (at ``config.data.short_side`` when set) and turned
  into the test views exactly as evaluation does (``input_pipeline.pipeline.eval_example``: the
  ``config.data.sampling`` clips of ``num_segments x frames_per_segment`` frames, ``test_clips`` of them,
  short side ``scale_size``, ``test_crops`` crops). The logits of the views are averaged
  (``vidjax.train.step.eval_step``) and the softmax of the average gives the probabilities. Override
  the views like any config field, e.g. ``--config.data.test_crops=1 --config.data.test_clips=1``.
* The latest checkpoint of ``DIR/checkpoints`` (or ``--step``) is restored with its ``params`` item on
  the CPU/accelerator at hand; its ``model`` item must match ``config.model`` (a clear error otherwise).
* Class names: ``--labels=FILE`` (one per line), else the label map of ``config.data.dataset`` shipped in
  ``input_pipeline/labels/`` (Kinetics-400, UCF101, HMDB51, Something-Something V1), the
  synthetic dataset's class names, or ``class <k>``.
* Output: per video the top-``k`` class names with probabilities; ``--json`` prints one JSON list with an
  entry per input (``path``, ``top`` = ``[{"label", "index", "probability"}]``, ``views``) or, for a file
  that could not be read, ``path`` and ``error``. Each unreadable or corrupt file gets a one-line error on
  stderr and the other files are still classified; the exit status is 1 when any file failed.

The same functions serve notebooks: ``Predictor(config, workdir).classify(path)``.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
LABELS_DIR = os.path.join(ROOT, "input_pipeline", "labels")
# config.data.dataset -> label-map file names tried in input_pipeline/labels/
LABEL_FILES = {
    "kinetics400": ("kinetics400.txt", "kinetics_400.txt"),
    "sthv1": ("something_v1.txt", "sthv1.txt", "something_something_v1.txt", "something-something-v1.txt",
              "ssv1.txt"),
    "ucf101": ("ucf101.txt",),
    "hmdb51": ("hmdb51.txt",),
}


def load_config(spec: Optional[str] = None, workdir: Optional[str] = None, overrides: Optional[dict] = None):
  """A config from ``configs/x.py[:arg]`` or, without one, the ``config.json`` a training run wrote.

  ``overrides``: ``{'data.test_crops': 1, ...}`` applied on top (dotted paths of existing fields).
  """
  import ml_collections
  from vidjax import config_utils
  if spec:
    config = config_utils.load_config_file(spec)
  elif workdir and os.path.isfile(os.path.join(workdir, "config.json")):
    with open(os.path.join(workdir, "config.json")) as fh:
      config = ml_collections.ConfigDict(json.load(fh))
  else:
    raise FileNotFoundError("give a config file, or a workdir holding the config.json of its training run")
  for key, value in (overrides or {}).items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"config has no field {key!r}")
    node[leaf] = value
  return config


def class_names(config, labels_file: str = "") -> tuple[str, ...]:
  """Names of ``config.model.num_classes`` classes (see the module docstring for the search order)."""
  k = int(config.model.num_classes)
  names = None
  if labels_file:
    with open(labels_file) as fh:
      names = tuple(line.strip() for line in fh if line.strip())
    where = labels_file
  else:
    dataset = config.data.get("dataset", "")
    for fname in LABEL_FILES.get(dataset, (f"{dataset}.txt",)):
      path = os.path.join(LABELS_DIR, fname)
      if dataset and os.path.isfile(path):
        with open(path) as fh:
          names = tuple(line.strip() for line in fh if line.strip())
        where = path
        break
    if names is None and dataset == "synthetic":
      from input_pipeline.sources.synthetic import CLASS_NAMES
      names, where = tuple(CLASS_NAMES[:k]), "the synthetic dataset"
  if names is None:
    return tuple(f"class {i}" for i in range(k))
  if len(names) != k:
    raise ValueError(f"{where} has {len(names)} class names, the model {k} classes; pass --labels=FILE")
  return names


def find_videos(paths: Sequence[str]) -> list[str]:
  """Files as given; folders expanded (recursively, sorted) to their video files."""
  from input_pipeline.sources.videos import VIDEO_EXTS
  out = []
  for p in paths:
    if os.path.isdir(p):
      found = []
      for dirpath, _, files in os.walk(p):
        found += [os.path.join(dirpath, f) for f in files if f.lower().endswith(VIDEO_EXTS)]
      out += sorted(found)
    else:
      out.append(p)
  return out


class _DecodedVideo:
  """A one-video clip source over decoded frames, so that ``eval_example`` samples it."""

  def __init__(self, path: str, frames: np.ndarray):
    self.path, self.frames = path, frames

  def __len__(self):
    return 1

  def label(self, index):
    return -1

  def video_id(self, index):
    return self.path

  def load_clip(self, index, index_fn, frame_fn=None):
    return self.frames[np.asarray(index_fn(len(self.frames)))]


class Predictor:
  """A model with restored variables that classifies decoded videos or files."""

  def __init__(self, config, workdir: Optional[str] = None, variables=None, step: Optional[int] = None,
               labels_file: str = ""):
    import jax
    from vidjax import config_utils
    from vidjax.models import registry
    from vidjax.train import checkpoint, step as step_lib
    self.config = config
    if variables is None:
      if not workdir:
        raise ValueError("Predictor needs a workdir with checkpoints or variables")
      variables, step = checkpoint.restore_variables(workdir, step)
      mgr = checkpoint.manager(workdir, read_only=True)
      try:
        checkpoint.check_compatible(mgr, step, config, workdir)
      finally:
        mgr.close()
    self.step = step
    self.variables = {k: v for k, v in variables.items() if v}
    self.model = registry.build(config.model, dtype=config_utils.compute_dtype(config))
    self.names = class_names(config, labels_file)
    from vidjax.train import compiler
    self._eval = jax.jit(lambda v, b: step_lib.eval_step(v, b, model=self.model, config=config),
                         compiler_options=compiler.step_options(config))

  def views(self, frames: np.ndarray, path: str = "<clip>") -> np.ndarray:
    """The evaluation views ``(V, F, crop, crop, 3)`` uint8 of decoded frames ``(T, H, W, 3)``."""
    from input_pipeline import pipeline
    from input_pipeline.sources.base import BadVideoLog
    ex = pipeline.eval_example(_DecodedVideo(path, np.asarray(frames)), self.config, 0, BadVideoLog())
    return ex["video"]

  def logits(self, views: np.ndarray) -> np.ndarray:
    """Logits averaged over the views ``(V, F, H, W, 3)`` -> ``(K,)``."""
    return np.asarray(self._eval(self.variables, {"video": np.asarray(views)[None]}))[0]

  def top(self, logits: np.ndarray, k: int = 5) -> list[dict]:
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:k]
    return [{"label": self.names[i], "index": int(i), "probability": float(p[i])} for i in order]

  def classify_frames(self, frames: np.ndarray, k: int = 5, path: str = "<clip>") -> dict:
    views = self.views(frames, path)
    return {"path": path, "top": self.top(self.logits(views), k), "views": int(views.shape[0])}

  def classify(self, path: str, k: int = 5) -> dict:
    """Decodes ``path`` and classifies it; raises ``BadVideoError`` for unreadable files."""
    from input_pipeline.sources.videos import decode_video
    frames = decode_video(path, int(self.config.data.get("short_side", 0) or 0))
    return self.classify_frames(frames, k, path)


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).split()) or e.__class__.__name__


def run(config, workdir: str, paths: Sequence[str], top: int = 5, as_json: bool = False, step=None,
        labels_file: str = "", out=sys.stdout, err=sys.stderr) -> int:
  """Classifies ``paths`` (files or folders) and prints the results; returns the exit status."""
  from input_pipeline.sources.base import BadVideoError
  videos = find_videos(paths)
  if not videos:
    print("error: no video files given (or none in the folders)", file=err)
    return 2
  predictor = Predictor(config, workdir, step=step, labels_file=labels_file)
  results, failed = [], 0
  for path in videos:
    try:
      r = predictor.classify(path, top)
    except (BadVideoError, OSError, ValueError, RuntimeError) as e:  # corrupt/unreadable: one line each
      msg = _one_line(e)
      if not msg.startswith(path):
        msg = f"{path}: {msg}"
      print(f"error: {msg}", file=err)
      results.append({"path": path, "error": msg})
      failed += 1
      continue
    results.append(r)
    if not as_json:
      print(path, file=out)
      for rank, t in enumerate(r["top"], 1):
        print(f"  {rank}. {t['probability']:7.2%}  {t['label']}", file=out)
  if as_json:
    print(json.dumps(results, indent=1), file=out)
  return 1 if failed else 0


def main(argv):
  from absl import flags
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's restore chatter; our errors are one line each
  f = flags.FLAGS
  from vidjax.train import checkpoint
  try:
    code = run(f.config, f.workdir, argv[1:], f.top, f.json, f.step, f.labels)
  except (checkpoint.CheckpointMismatchError, FileNotFoundError, ValueError) as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    code = 2
  sys.exit(code)


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  from vidjax.config_utils import check_overrides
  check_overrides(sys.argv)
  config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory holding checkpoints/ (train.py or vidjax.tools.convert).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_integer("top", 5, "How many classes to print per video.")
  flags.DEFINE_bool("json", False, "Print one JSON list instead of text.")
  flags.DEFINE_string("labels", "", "File of class names, one per line (default: the dataset's label map).")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
