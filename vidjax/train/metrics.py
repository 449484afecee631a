"""Progress lines on stdout and TensorBoard event files under the workdir (process 0 only)."""
from __future__ import annotations

import logging

import jax

_log = logging.getLogger("vidjax")


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class MetricWriter:
  """Scalars to ``WORKDIR/tensorboard`` (tensorboardX event files) and progress lines to the log."""

  def __init__(self, logdir: str, total_steps: int):
    self.total_steps = total_steps
    self.enabled = jax.process_index() == 0
    self._writer = None
    if self.enabled:
      from tensorboardX import SummaryWriter
      import os
      # a resumed run started within the same second must not overwrite the previous file
      self._writer = SummaryWriter(logdir, filename_suffix=f".{os.getpid()}")

  def write_scalars(self, step: int, scalars: dict, prefix: str = "") -> None:
    if self._writer is None:
      return
    for k, v in scalars.items():
      self._writer.add_scalar(f"{prefix}{k}", float(v), step)
    self._writer.flush()

  def progress(self, step: int, scalars: dict, clips_per_s: float, seconds_per_step: float) -> str:
    eta = format_duration((self.total_steps - step) * seconds_per_step)
    parts = [f"step {step}/{self.total_steps}"] + [f"{k} {float(v):.4g}" for k, v in scalars.items()]
    line = " | ".join(parts + [f"{clips_per_s:.1f} clips/s", f"ETA {eta}"])
    if self.enabled:
      _log.info(line)
    return line

  def close(self):
    if self._writer is not None:
      self._writer.close()


def setup_logging(level=logging.INFO) -> None:
  """Plain ``HH:MM:SS message`` lines on stdout; library chatter (absl, orbax, jax) only from WARNING."""
  import sys
  root = logging.getLogger()
  for h in list(root.handlers):
    root.removeHandler(h)
  handler = logging.StreamHandler(sys.stdout)
  handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  root.addHandler(handler)
  root.setLevel(level)
  for name in ("absl", "jax", "orbax"):
    logging.getLogger(name).setLevel(logging.ERROR if name == "absl" else logging.WARNING)
