"""Orbax checkpoints under ``WORKDIR/checkpoints``.

Each step directory holds three items:

* ``state``: the whole ``TrainState`` (step, params, BN statistics, optimiser state) for resuming;
* ``params``: ``{'params', 'batch_stats'}`` alone, restorable without a target onto a CPU (notebooks,
  ``predict.py``);
* ``model``: the JSON of ``config.model`` and the input geometry, checked on resume so that a workdir
  holding another model's checkpoint stops with a clear message instead of a shape error.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from vidjax import config_utils

ITEMS = ("state", "params", "model")


class CheckpointMismatchError(RuntimeError):
  pass


def model_signature(config) -> dict:
  """What must agree between a checkpoint and the config that restores it."""
  return {"model": json.loads(config.model.to_json()),
          "input_shape": list(config_utils.input_shape(config)[1:])}


def manager(workdir: str, config=None, read_only: bool = False) -> ocp.CheckpointManager:
  every = int(config.train.checkpoint_every) if config is not None else 1
  keep = int(config.train.keep_checkpoints) if config is not None else None
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=max(1, every),
                                         create=not read_only, read_only=read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options,
                               item_names=ITEMS)


def save(mgr: ocp.CheckpointManager, step: int, state, config, force: bool = False) -> bool:
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return mgr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      params=ocp.args.StandardSave(variables),
      model=ocp.args.JsonSave(model_signature(config))), force=force)


def check_compatible(mgr: ocp.CheckpointManager, step: int, config, workdir: str) -> None:
  saved = mgr.restore(step, args=ocp.args.Composite(model=ocp.args.JsonRestore()))["model"]
  want = model_signature(config)
  if saved != want:
    diffs = []
    for k in sorted(set(saved.get("model", {})) | set(want["model"])):
      a, b = saved.get("model", {}).get(k, "<absent>"), want["model"].get(k, "<absent>")
      if a != b:
        diffs.append(f"model.{k}: checkpoint {a!r} vs config {b!r}")
    if saved.get("input_shape") != want["input_shape"]:
      diffs.append(f"input: checkpoint {saved.get('input_shape')} vs config {want['input_shape']}")
    raise CheckpointMismatchError(
        f"{workdir} holds a checkpoint (step {step}) of another model: " + "; ".join(diffs) +
        ". Use a new --workdir, or the config that trained it.")


def restore_state(mgr: ocp.CheckpointManager, step: int, target, workdir: str):
  """Restores the full state onto the shardings of ``target`` (abstract or concrete)."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointMismatchError(
        f"{workdir}: checkpoint step {step} does not fit the model of this config ({e}). "
        f"Use a new --workdir, or the config that trained it.") from None


def restore_variables(workdir: str, step: Optional[int] = None) -> tuple[dict[str, Any], int]:
  """``{'params', 'batch_stats'}`` of the latest (or given) step as host numpy arrays, without a target."""
  path = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no checkpoints in {path}: train first (python train.py --workdir={workdir})")
  mgr = manager(workdir, read_only=True)
  step = mgr.latest_step() if step is None else step
  mgr.close()
  if step is None:
    raise FileNotFoundError(f"{path} holds no finished checkpoint")
  item = os.path.join(path, str(step), "params")
  ckptr = ocp.PyTreeCheckpointer()
  meta = ckptr.metadata(item)
  tree = getattr(meta, "item_metadata", meta)
  tree = getattr(tree, "tree", tree)
  # numpy on the host: no device, mesh or sharding of the training run is needed to read it
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  out = ckptr.restore(item, args=ocp.args.PyTreeRestore(restore_args=restore_args))
  return out, step
