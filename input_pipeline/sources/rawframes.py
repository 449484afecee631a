"""TSN / MMAction "rawframes": one folder of JPEG frames per video and a list file.

List lines are ``path num_frames label`` with ``path`` relative to ``root`` (absolute paths work too);
frame k (0-based) of a video is ``root/path/template.format(k + 1)``, ``img_{:05d}.jpg`` by default
(Something-Something V1 uses ``{:05d}.jpg``).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from input_pipeline.sources.base import BadVideoError, read_list_file


class RawFrames:
  """A ClipSource over a rawframes tree."""

  def __init__(self, root: str, list_file: str, template: str = "img_{:05d}.jpg",
               class_names=None):
    if not os.path.isdir(root):
      raise FileNotFoundError(f"rawframes root {root!r} is not a directory (set config.data.root to the "
                              f"folder holding one sub-folder of JPEG frames per video)")
    self.root, self.template = root, template
    self.records = []
    for n, parts in enumerate(read_list_file(list_file, 3, "path num_frames label"), 1):
      try:
        self.records.append((parts[0], int(parts[1]), int(parts[2])))
      except ValueError:
        raise ValueError(f"{list_file}: entry {n} {' '.join(parts)!r}: num_frames and label must be "
                         f"integers ('path num_frames label')") from None
    self.class_names = class_names

  def __len__(self):
    return len(self.records)

  def label(self, index):
    return self.records[index][2]

  def video_id(self, index):
    return self.records[index][0]

  def frame_path(self, index: int, frame: int) -> str:
    return os.path.join(self.root, self.records[index][0], self.template.format(frame + 1))

  def load_clip(self, index, index_fn):
    path, num_frames, _ = self.records[index]
    folder = os.path.join(self.root, path)
    if not os.path.isdir(folder):
      raise BadVideoError(folder, "frame folder is missing", "extract its frames or remove it from the list")
    if num_frames < 1:
      raise BadVideoError(folder, f"the list says it has {num_frames} frames")
    idx = np.asarray(index_fn(num_frames))
    cache = {}
    for k in np.unique(idx):
      fp = self.frame_path(index, int(k))
      try:
        with Image.open(fp) as im:
          cache[int(k)] = np.asarray(im.convert("RGB"))
      except (OSError, ValueError) as e:
        raise BadVideoError(fp, f"cannot read frame ({e.__class__.__name__}: {e})",
                            "re-extract the frames or fix num_frames in the list") from None
    return np.stack([cache[int(k)] for k in idx.reshape(-1)]).reshape(idx.shape + cache[int(idx.flat[0])].shape)
