"""The training loop: resumable, sharded, logged; evaluates at the end.

``train_and_evaluate(config, workdir)``:

1. builds the sources, the model (``registry.build``), the mesh and the optimiser;
2. restores the latest checkpoint of ``WORKDIR/checkpoints`` if there is one (after checking that it
   belongs to the same model), otherwise initialises;
3. runs the jitted step from there: batches and dropout keys are functions of the step number, so a
   run killed at any point and started again with the same command ends with the same parameters as
   an uninterrupted one;
4. saves every ``train.checkpoint_every`` steps, on SIGTERM/SIGINT (then exits), and at the end;
5. evaluates on the validation split and writes ``WORKDIR/results.json``.
"""
from __future__ import annotations

import logging
import os
import signal
import time

import jax
import numpy as np

from input_pipeline import pipeline
from vidjax import config_utils
from vidjax.models import registry
from vidjax.train import checkpoint, finetune, metrics as metrics_lib, optim, sharding, state as state_lib
from vidjax.train import step as step_lib

_log = logging.getLogger("vidjax")


class _StopRequest:
  """Turns SIGTERM/SIGINT into a request to checkpoint and stop after the current step."""

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:  # a second signal: stop now
      raise KeyboardInterrupt
    self.signal = signum
    _log.warning("received signal %d: saving a checkpoint and stopping after this step", signum)

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def total_steps(config, steps_per_epoch: int) -> int:
  if config.train.total_steps and config.train.total_steps > 0:
    return int(config.train.total_steps)
  return int(round(config.optim.epochs * steps_per_epoch))


def setup(config, workdir: str):
  """Everything the loop needs, without running a step (also used by tests and benchmarks)."""
  jax.config.update("jax_threefry_partitionable", bool(config.get("jax_threefry_partitionable", False)))
  train_source = pipeline.build_source(config, "train")
  spe = pipeline.steps_per_epoch(config, train_source)
  steps = total_steps(config, spe)
  mesh = sharding.make_mesh(config)
  model = registry.build(config.model, dtype=config_utils.compute_dtype(config),
                         remat=config.train.get("remat", False))
  shape = config_utils.input_shape(config, batch=1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(shape, np.float32), train=False))
  tx = optim.make_optimizer(config, abstract["params"], spe)
  if config.train.get("partial_bn", False) and not config.train.get("partial_bn_keep", ""):
    raise ValueError("config.train.partial_bn=True needs config.train.partial_bn_keep, the regex of the BN that "
                     "keeps training (the first one: '(^|/)stem/bn1/' for TSM-ResNet, '(^|/)quiet_stem/bn1/' "
                     "for BQN)")
  if config.train.get("partial_bn", False):  # TSN partial BN: every BN but the first frozen (finetune.py)
    tx = finetune.freeze(tx, finetune.frozen_bn_mask(abstract["params"], config.train.partial_bn_keep,
                                                    abstract.get("batch_stats")))
  make_state = lambda: state_lib.create(model, tx, shape, config.seed)  # noqa: E731
  state_sharding = sharding.state_shardings(jax.eval_shape(make_state), mesh, config)
  init = jax.jit(make_state, out_shardings=state_sharding)
  return dict(train_source=train_source, steps_per_epoch=spe, total_steps=steps, mesh=mesh, model=model,
              tx=tx, init=init, state_sharding=state_sharding)


def train_and_evaluate(config, workdir: str, stop_after: int | None = None) -> dict:
  """Trains (resuming if possible) and evaluates. ``stop_after`` ends early at that step (tests)."""
  os.makedirs(workdir, exist_ok=True)
  s = setup(config, workdir)
  mesh, model, tx = s["mesh"], s["model"], s["tx"]
  steps = s["total_steps"]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as fh:
      fh.write(config.to_json_best_effort(indent=2))

  mgr = checkpoint.manager(workdir, config)
  abstract_state = jax.eval_shape(s["init"])
  latest = mgr.latest_step()
  if latest is not None:
    checkpoint.check_compatible(mgr, latest, config, workdir)
    target = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                          abstract_state, s["state_sharding"])
    state = checkpoint.restore_state(mgr, latest, target, workdir)
    _log.info("resumed from %s at step %d", mgr.directory, latest)
  else:
    state = s["init"]()
    if config.train.get("init_checkpoint", ""):  # fine-tuning: start from another run's / PyTorch weights
      v, report = finetune.load_init_checkpoint(config.train.init_checkpoint, state.variables, config)
      _log.info(finetune.format_report(report))
      state = jax.device_put(state.replace(params=v["params"], batch_stats=v.get("batch_stats", {})),
                             s["state_sharding"])
  start = int(state.step)
  _log.info("model %s: %s parameters; %d steps (%d per epoch), global batch %d on %d devices",
            config.model.name, f"{sum(x.size for x in jax.tree.leaves(state.params)):,}", steps,
            s["steps_per_epoch"], config.optim.batch_size, mesh.size)

  train_step = step_lib.jit_train_step(model, tx, config, s["state_sharding"], sharding.data_sharded(mesh),
                                       total_steps=steps)
  writer = metrics_lib.MetricWriter(os.path.join(workdir, "tensorboard"), steps)
  schedule = optim.lr_schedule(config.optim.lr, s["steps_per_epoch"], config.optim.epochs,
                               config.optim.warmup_epochs)
  end = steps if stop_after is None else min(steps, stop_after)
  log_every = max(1, int(config.train.log_every))
  eval_every = int(config.train.get("eval_every", -1))
  stopped = False
  pending, t_last, s_last = [], time.time(), start
  with _StopRequest() as stop:
    batches = pipeline.train_batches(config, s["train_source"], start, end)
    for step in range(start, end):
      batch = sharding.to_global(next(batches), mesh)
      state, m = train_step(state, batch)
      done = step + 1
      if step == start:  # the first step compiles: keep it out of clips/s
        jax.block_until_ready(m)
        _log.info("step %d/%d | loss %.4g | first step of this run, compilation included: %.1fs",
                  done, steps, float(m["loss"]), time.time() - t_last)
        t_last, s_last = time.time(), done
      else:
        pending.append(m)
      if pending and (done % log_every == 0 or done == end):
        vals = {k: float(np.mean([jax.device_get(p[k]) for p in pending])) for k in pending[0]}
        vals["lr"] = float(schedule(step))
        dt = time.time() - t_last
        n = done - s_last
        writer.write_scalars(done, vals, "train/")
        writer.write_scalars(done, {"clips_per_s": n * config.optim.batch_size / dt}, "perf/")
        writer.progress(done, vals, n * config.optim.batch_size / dt, dt / n)
        pending, t_last, s_last = [], time.time(), done
      if done % max(1, int(config.train.checkpoint_every)) == 0 or done == end:
        checkpoint.save(mgr, done, state, config, force=True)
      if eval_every > 0 and done % eval_every == 0 and done != end:
        from vidjax.evaluate import evaluate
        r = evaluate(config, workdir, variables=state.variables, step=done, mesh=mesh)
        writer.write_scalars(done, {k: r[k] for k in ("top1", "top5", "mean_class_accuracy")}, "val/")
      if stop.signal is not None:
        checkpoint.save(mgr, done, state, config, force=True)
        stopped = True
        break
  mgr.wait_until_finished()
  mgr.close()
  summary = {"step": int(state.step), "stopped_by_signal": stopped, "bad_videos": pipeline.BAD_VIDEOS.count}
  if stopped:
    _log.warning("stopped at step %d; run the same command again to resume", int(state.step))
  elif int(state.step) >= steps and config.train.eval_at_end:
    from vidjax.evaluate import evaluate
    summary.update(evaluate(config, workdir, variables=state.variables, step=int(state.step), mesh=mesh))
    writer.write_scalars(int(state.step), {k: summary[k] for k in ("top1", "top5", "mean_class_accuracy")}, "val/")
  writer.close()
  summary["state"] = state
  return summary
