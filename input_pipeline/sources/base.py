"""The interface every clip source implements, and the error raised for unusable files.

A source is a random-access collection of labelled videos::

    len(source)                          number of videos
    source.label(i) -> int               class index
    source.video_id(i) -> str            a name for logs and per-video scores
    source.load_clip(i, index_fn)        decodes video i and returns frames[index_fn(num_frames)],
                                         uint8 (..., H, W, 3): index_fn maps the video's frame count
                                         to an index array of any shape (one clip or several views)
    source.class_names -> tuple[str]     (optional) names for predictions
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

IndexFn = Callable[[int], np.ndarray]


class BadVideoError(RuntimeError):
  """A video that cannot be used (missing, corrupt, empty). The message names the file and the fix."""

  def __init__(self, path: str, problem: str, fix: str = ""):
    self.path = path
    super().__init__(f"{path}: {problem}" + (f" ({fix})" if fix else ""))


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
