"""The interface every clip source implements, the error for unusable files, and the bad-input log.

A source is a random-access collection of labelled videos::

    len(source)                          number of videos
    source.label(i) -> int               class index
    source.video_id(i) -> str            a name for logs and per-video scores
    source.load_clip(i, index_fn)        decodes video i and returns frames[index_fn(num_frames)],
                                         uint8 (..., H, W, 3): index_fn maps the video's frame count
                                         to an index array of any shape (one clip or several views)
    source.class_names -> tuple[str]     (optional) names for predictions

Bad input (issue 6) never stops an epoch. Every problem is recorded in ``BAD_VIDEOS`` once per file,
with its file name and one of these kinds, and the counts go into the run's summary:

* ``skipped``: the video cannot be used (missing, corrupt, empty folder); the loader takes the next one.
* ``padded``: part of the video is unreadable (a truncated file, a frame folder with fewer frames than
  its list entry says): the clip repeats the last readable frame, as the reference loader does.
* ``short``: the video has fewer frames than a clip needs; the clip repeats frames (sampling.py).
* ``unknown_label``: an annotation names a class outside the label map; the entry is left out.
* ``missing``: an annotation entry whose file is not in the dataset directory; the entry is left out.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

import numpy as np

IndexFn = Callable[[int], np.ndarray]
_log = logging.getLogger("input_pipeline")


class BadVideoError(RuntimeError):
  """A video that cannot be used (missing, corrupt, empty). The message names the file and the fix."""

  def __init__(self, path: str, problem: str, fix: str = ""):
    self.path = path
    super().__init__(f"{path}: {problem}" + (f" ({fix})" if fix else ""))


class DatasetLayoutError(FileNotFoundError):
  """A dataset directory or annotation set that does not look like the expected layout."""


class BadVideoLog:
  """Counts problem files by kind; each file is logged once (the first ``max_warnings`` per kind as
  warnings, the rest at debug level so that a dataset with thousands of missing videos stays readable)."""

  KINDS = ("skipped", "padded", "short", "unknown_label", "missing")

  def __init__(self, max_warnings: int = 20):
    self._lock = threading.Lock()
    self.max_warnings = max_warnings
    self.seen: dict[str, str] = {}
    self.kinds: dict[str, str] = {}

  def report(self, err: BadVideoError, kind: str = "skipped") -> None:
    self.note(err.path, str(err), kind)

  def note(self, path: str, message: str, kind: str) -> bool:
    """Records ``path`` once; returns True the first time."""
    if kind not in self.KINDS:
      raise ValueError(f"unknown bad-input kind {kind!r}; one of {self.KINDS}")
    with self._lock:
      if path in self.seen:
        return False
      self.seen[path] = message
      self.kinds[path] = kind
      n = sum(1 for k in self.kinds.values() if k == kind)
    verb = {"skipped": "skipping unusable video", "padded": "padding with the last readable frame",
            "short": "short video, frames repeat", "unknown_label": "leaving out entry with an unknown label",
            "missing": "leaving out entry without a file"}[kind]
    if n <= self.max_warnings:
      _log.warning("%s: %s", verb, message)
      if n == self.max_warnings:
        _log.warning("further '%s' problems are logged at debug level and counted in the summary", kind)
    else:
      _log.debug("%s: %s", verb, message)
    return True

  def __getstate__(self):  # a copy travels to worker processes (prepare.py); the lock does not
    state = dict(self.__dict__)
    del state["_lock"]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  @property
  def count(self) -> int:
    return len(self.seen)

  def counts(self) -> dict[str, int]:
    with self._lock:
      kinds = list(self.kinds.values())
    return {k: kinds.count(k) for k in self.KINDS}

  def files(self, kind: str) -> list[str]:
    with self._lock:
      return [p for p, k in self.kinds.items() if k == kind]

  def clear(self) -> None:
    with self._lock:
      self.seen.clear()
      self.kinds.clear()


BAD_VIDEOS = BadVideoLog()


class ClipSource(Protocol):

  def __len__(self) -> int:
    ...

  def label(self, index: int) -> int:
    ...

  def video_id(self, index: int) -> str:
    ...

  def load_clip(self, index: int, index_fn: IndexFn) -> np.ndarray:
    ...


def read_list_file(path: str, min_fields: int, what: str) -> list[list[str]]:
  """Rows of a whitespace-separated list file, with a clear error for a missing or malformed file."""
  import os
  if not os.path.isfile(path):
    raise FileNotFoundError(f"list file {path!r} does not exist (set config.data.train_list/val_list "
                            f"to a file of lines '{what}')")
  rows = []
  with open(path) as fh:
    for n, line in enumerate(fh, 1):
      if not line.strip() or line.lstrip().startswith("#"):
        continue
      parts = line.split()
      if len(parts) < min_fields:
        raise ValueError(f"{path}:{n}: expected '{what}', got {line.strip()!r}")
      rows.append(parts)
  if not rows:
    raise ValueError(f"list file {path!r} is empty: expected lines '{what}'")
  return rows


def check_label(label: int, num_classes, where: str, log: BadVideoLog = BAD_VIDEOS) -> bool:
  """False (and a logged 'unknown_label' entry) when ``label`` is outside ``[0, num_classes)``."""
  if num_classes is None or 0 <= label < num_classes:
    return True
  log.note(where, f"label {label} is outside the {num_classes} classes of the label map", "unknown_label")
  return False
