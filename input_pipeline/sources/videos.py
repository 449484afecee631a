"""Video files (mp4, avi, webm, mkv ...) decoded with PyAV, and a ``path label`` list file."""
from __future__ import annotations

import os

import numpy as np

from input_pipeline.sources.base import BadVideoError, read_list_file


def decode_video(path: str) -> np.ndarray:
  """All frames of a video as uint8 ``(F, H, W, 3)``; a clear error for missing/corrupt files."""
  import av
  if not os.path.isfile(path):
    raise BadVideoError(path, "video file is missing", "check config.data.root and the list file")
  frames = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise BadVideoError(path, "has no video stream")
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      for frame in container.decode(stream):
        frames.append(frame.to_ndarray(format="rgb24"))
  except BadVideoError:
    raise
  except Exception as e:  # av.error.* for truncated or corrupt containers
    if not frames:
      raise BadVideoError(path, f"cannot be decoded ({e.__class__.__name__}: {e})",
                          "re-encode or remove it from the list") from None
    # A truncated file: keep the frames decoded before the damage.
  if not frames:
    raise BadVideoError(path, "decoded to zero frames", "re-encode or remove it from the list")
  return np.stack(frames)


class VideoFiles:
  """A ClipSource over video files listed as ``path label`` (relative to ``root``)."""

  def __init__(self, root: str, list_file: str, class_names=None):
    if not os.path.isdir(root):
      raise FileNotFoundError(f"video root {root!r} is not a directory (set config.data.root to the "
                              f"folder the list file's paths are relative to)")
    self.root = root
    self.records = []
    for n, parts in enumerate(read_list_file(list_file, 2, "path label"), 1):
      try:
        self.records.append((parts[0], int(parts[-1])))
      except ValueError:
        raise ValueError(f"{list_file}: entry {n} {' '.join(parts)!r}: label must be an integer "
                         f"('path label')") from None
    self.class_names = class_names

  def __len__(self):
    return len(self.records)

  def label(self, index):
    return self.records[index][1]

  def video_id(self, index):
    return self.records[index][0]

  def load_clip(self, index, index_fn):
    video = decode_video(os.path.join(self.root, self.records[index][0]))
    return video[np.asarray(index_fn(len(video)))]
