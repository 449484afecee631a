"""Multi-view evaluation: logits averaged over crops x clips per video; top-1/5, mean class accuracy.

``python -m vidjax.evaluate --config=configs/X.py --workdir=DIR`` restores the latest checkpoint and
writes ``DIR/results.json`` (``step, top1, top5, mean_class_accuracy, num_videos, views``, and the
bad-input counts ``bad_videos, bad_video_counts, unreadable_videos, videos_listed``) and the per-video
scores ``DIR/val_scores.npz`` (``ids, labels, logits, class_names``). Logits are averaged over the
``test_crops x test_clips`` views of each video inside the eval step (per video, not per device);
videos that cannot be read are left out of the metrics and counted.
"""
from __future__ import annotations

import json
import logging
import os
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from input_pipeline import pipeline
from vidjax import config_utils
from vidjax.models import registry
from vidjax.train import sharding, step as step_lib

_log = logging.getLogger("vidjax")


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Top-1, top-5 and mean class accuracy (the UCF101/HMDB51 convention) of video-level logits."""
  order = np.argsort(-logits, axis=1)
  top1 = order[:, 0] == labels
  top5 = np.any(order[:, :min(5, num_classes)] == labels[:, None], axis=1)
  present = np.unique(labels)
  per_class = [top1[labels == c].mean() for c in present]
  return {"top1": float(top1.mean()), "top5": float(top5.mean()),
          "mean_class_accuracy": float(np.mean(per_class)), "num_videos": int(len(labels))}


def evaluate(config, workdir: str, variables=None, step=None, mesh=None, source=None) -> dict:
  """Evaluates ``variables`` (or the latest checkpoint of ``workdir``) on the validation split."""
  from vidjax.train import checkpoint
  if variables is None:
    variables, step = checkpoint.restore_variables(workdir, step)
  variables = {k: v for k, v in variables.items() if v}
  mesh = mesh or sharding.make_mesh(config)
  model = registry.build(config.model, dtype=config_utils.compute_dtype(config))
  source = source or pipeline.build_source(config, "val")
  views = config.data.test_crops * config.data.test_clips
  batch_size = int(config.get("eval", {}).get("batch_size", 0) or max(1, config.optim.batch_size // views))
  batch_size = max(mesh.size, batch_size - batch_size % mesh.size)
  # replicate (gathers FSDP shards; works for host numpy and for global arrays of several processes)
  variables = jax.jit(lambda v: v, out_shardings=sharding.replicated(mesh))(variables)
  from vidjax.train import compiler
  fn = jax.jit(lambda v, b: step_lib.eval_step(v, b, model=model, config=config),
               compiler_options=compiler.step_options(config))
  all_logits, all_labels, all_index, all_mask = [], [], [], []
  t0 = time.time()
  for batch in pipeline.eval_batches(config, source, batch_size):
    meta = {k: batch.pop(k) for k in ("label", "index", "mask")}
    logits = fn(variables, sharding.to_global({"video": batch["video"]}, mesh))
    logits = multihost_utils.process_allgather(logits, tiled=True) if jax.process_count() > 1 else logits
    all_logits.append(np.asarray(logits))
    for k, store in (("label", all_labels), ("index", all_index), ("mask", all_mask)):
      v = meta[k]
      store.append(multihost_utils.process_allgather(v, tiled=True) if jax.process_count() > 1 else v)
  logits = np.concatenate(all_logits)
  keep = np.concatenate(all_mask).astype(bool)
  unreadable = int(np.sum(~keep & (np.concatenate(all_index) >= 0)))  # listed videos that could not be read
  labels, index = np.concatenate(all_labels)[keep], np.concatenate(all_index)[keep]
  logits = logits[keep]
  results = {"step": int(step) if step is not None else None}
  results.update(metrics_from_logits(logits, labels, config.model.num_classes))
  results["views"] = int(views)
  results["bad_videos"] = pipeline.BAD_VIDEOS.count
  # problem files of this process by kind (skipped / padded / short / unknown_label / missing, see
  # input_pipeline/sources/base.py); the evaluated videos are num_videos of the split's len(source).
  results["bad_video_counts"] = pipeline.BAD_VIDEOS.counts()
  results["unreadable_videos"] = unreadable
  results["videos_listed"] = int(len(source))
  _log.info("evaluation at step %s: top1 %.4f top5 %.4f mean class acc %.4f on %d videos (%d views) in %.0fs",
            results["step"], results["top1"], results["top5"], results["mean_class_accuracy"],
            results["num_videos"], views, time.time() - t0)
  if jax.process_index() == 0 and workdir:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as fh:
      json.dump(results, fh, indent=2)
    ids = np.asarray([source.video_id(int(i)) for i in index])
    names = np.asarray(getattr(source, "class_names", None) or [str(k) for k in range(logits.shape[1])])
    np.savez(os.path.join(workdir, "val_scores.npz"), ids=ids, labels=labels, logits=logits, class_names=names)
  return results
