"""TSN / MMAction "rawframes": one folder of JPEG frames per video and a list file.

List lines are ``path num_frames label`` with ``path`` relative to ``root`` (absolute paths work too);
frame k (0-based) of a video is ``root/path/template.format(k + 1)``, ``img_{:05d}.jpg`` by default
(Something-Something V1 uses ``{:05d}.jpg``, the two-stream UCF101/HMDB51 ``jpegs_256`` release
``frame{:06d}.jpg``); ``template=None`` detects it per folder from ``FRAME_TEMPLATES``.

Bad input (sources/base.py): a missing or empty folder raises ``BadVideoError`` (the loader skips the
video); a folder with fewer frames than its list entry says is padded with its last frame (the clip is
sampled from the list's count, as the reference does, and indices past the real end are clamped).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image

from input_pipeline.sources.base import (BAD_VIDEOS, BadVideoError, BadVideoLog, check_label,
                                         read_list_file)

FRAME_TEMPLATES = ("img_{:05d}.jpg", "{:05d}.jpg", "image_{:05d}.jpg", "frame{:06d}.jpg", "frame_{:05d}.jpg",
                   "img_{:06d}.jpg", "{:06d}.jpg", "img_{:05d}.png", "{:05d}.png")


def short_side_size(w: int, h: int, short: int) -> tuple[int, int]:
  """``(w, h)`` with the short side scaled to ``short`` (rounded, as transforms.resize_short_side)."""
  if h <= w:
    return int(round(w * short / h)), short
  return short, int(round(h * short / w))


def decode_image(fp, short_side: int = 0, frame_fn=None) -> np.ndarray:
  """An RGB uint8 frame from a JPEG/PNG path or file object, optionally rescaled to ``short_side``.

  When the stored frame is at least twice the requested size, libjpeg's DCT scaling (``draft``) decodes
  it at 1/2, 1/4 or 1/8 size first, which is several times faster than a full decode. ``frame_fn``
  (e.g. ``transforms.ClipAugment``) maps the decoded PIL image to the returned array.
  """
  with Image.open(fp) as im:
    if short_side and min(im.size) != short_side:
      size = short_side_size(im.size[0], im.size[1], short_side)
      im.draft("RGB", size)
      im = im.convert("RGB")
      if im.size != size:
        im = im.resize(size, Image.BILINEAR)
    else:
      im.load()
      if im.mode != "RGB":
        im = im.convert("RGB")
    return frame_fn(im) if frame_fn is not None else np.asarray(im)


def count_frames(folder: str, template: str) -> int:
  """Frames ``1..n`` of ``template`` present in ``folder`` (consecutive from the first)."""
  try:
    names = set(os.listdir(folder))
  except OSError:
    return 0
  n = 0
  while template.format(n + 1) in names:
    n += 1
  return n


def detect_template(folder: str, candidates=FRAME_TEMPLATES) -> Optional[str]:
  for t in candidates:
    if os.path.isfile(os.path.join(folder, t.format(1))):
      return t
  return None


class FrameFolderReader:
  """Reads frames of frame folders: template detection, true frame counts, padding, bad-input log."""

  def __init__(self, template: Optional[str] = None, short_side: int = 0, log: BadVideoLog = BAD_VIDEOS):
    self.template, self.short_side, self.log = template, short_side, log
    self._detected: Optional[str] = None
    self._actual: dict[str, int] = {}  # folders found shorter than their list entry (or uncounted)

  def template_of(self, folder: str) -> str:
    if self.template:
      return self.template
    t = self._detected
    if t is None or not os.path.isfile(os.path.join(folder, t.format(1))):
      t = detect_template(folder)
      if t is None:
        raise BadVideoError(folder, "frame folder is empty or has no frame named like "
                            f"{', '.join(FRAME_TEMPLATES[:4])}, ...",
                            "extract its frames, set config.data.frame_template, or remove it from the list")
      self._detected = t
    return t

  def num_frames(self, folder: str, listed: int = -1) -> int:
    """The list's count when given, else the folder's."""
    if listed > 0:
      return listed
    if folder not in self._actual:
      self._actual[folder] = count_frames(folder, self.template_of(folder))
    return self._actual[folder]

  def load(self, folder: str, index_fn, listed: int = -1, frame_fn=None) -> np.ndarray:
    if not os.path.isdir(folder):
      raise BadVideoError(folder, "frame folder is missing", "extract its frames or remove it from the list")
    template = self.template_of(folder)
    n = self.num_frames(folder, listed)
    if n < 1:
      raise BadVideoError(folder, "frame folder is empty", "extract its frames or remove it from the list")
    idx = np.asarray(index_fn(n))
    real = self._actual.get(folder)
    if real is not None and real < n:
      idx = np.minimum(idx, real - 1)
    cache = {}
    for k in np.unique(idx):
      k = int(k)
      fp = os.path.join(folder, template.format(k + 1))
      try:
        cache[k] = decode_image(fp, self.short_side, frame_fn)
      except FileNotFoundError:
        real = count_frames(folder, template)
        if real < 1:
          raise BadVideoError(folder, "frame folder is empty", "extract its frames or remove it from the list")
        if k < real:
          raise BadVideoError(fp, "frame is missing from the middle of the folder",
                              "re-extract the frames or remove the video from the list") from None
        self._actual[folder] = real
        self.log.note(folder, f"{folder}: the list says {n} frames, the folder has {real}: frames past "
                      f"{real} repeat the last one", "padded")
        return self.load(folder, lambda _: idx, listed, frame_fn)
      except (OSError, ValueError) as e:
        raise BadVideoError(fp, f"cannot read frame ({e.__class__.__name__}: {e})",
                            "re-extract the frames or remove the video from the list") from None
    first = cache[int(idx.flat[0])]
    return np.stack([cache[int(k)] for k in idx.reshape(-1)]).reshape(idx.shape + first.shape)


class RawFrames:
  """A ClipSource over a rawframes tree.

  ``num_classes`` (optional): entries with a label outside ``[0, num_classes)`` are left out and logged
  as ``unknown_label``. ``short_side`` > 0 rescales frames on reading (as prepare.py stores them).
  """

  def __init__(self, root: str, list_file: str, template: Optional[str] = "img_{:05d}.jpg",
               class_names=None, num_classes: Optional[int] = None, short_side: int = 0,
               log: BadVideoLog = BAD_VIDEOS):
    if not os.path.isdir(root):
      raise FileNotFoundError(f"rawframes root {root!r} is not a directory (set config.data.root to the "
                              f"folder holding one sub-folder of JPEG frames per video)")
    self.root, self.template = root, template
    self.reader = FrameFolderReader(template, short_side, log)
    self.records = []
    if class_names is not None and num_classes is None:
      num_classes = len(class_names)
    for n, parts in enumerate(read_list_file(list_file, 3, "path num_frames label"), 1):
      try:
        rec = (parts[0], int(parts[1]), int(parts[2]))
      except ValueError:
        raise ValueError(f"{list_file}: entry {n} {' '.join(parts)!r}: num_frames and label must be "
                         f"integers ('path num_frames label')") from None
      if check_label(rec[2], num_classes, os.path.join(root, rec[0]), log):
        self.records.append(rec)
    self.class_names = class_names

  def __len__(self):
    return len(self.records)

  def label(self, index):
    return self.records[index][2]

  def video_id(self, index):
    return self.records[index][0]

  def num_frames_of(self, index: int) -> int:
    return self.records[index][1]

  def frame_path(self, index: int, frame: int) -> str:
    folder = os.path.join(self.root, self.records[index][0])
    return os.path.join(folder, self.reader.template_of(folder).format(frame + 1))

  fused_frames = True  # load_clip takes a frame_fn (pipeline.train_example)

  def load_clip(self, index, index_fn, frame_fn=None):
    path, num_frames, _ = self.records[index]
    folder = os.path.join(self.root, path)
    if num_frames < 1:
      raise BadVideoError(folder, f"the list says it has {num_frames} frames")
    return self.reader.load(folder, index_fn, num_frames, frame_fn)
