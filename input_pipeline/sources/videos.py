"""Video files (mp4, avi, webm, mkv ...) decoded with PyAV, and a ``path label`` list file.

``read_video_clip`` decodes only what a clip needs: frames are decoded in order up to the last index
the sampler asks for (for a dense clip near the start of a 10 s Kinetics video that is a fraction of
the file) and only the requested ones are converted to RGB (optionally straight to ``short_side`` by
libswscale). The frame count comes from the container; when the stream ends (or breaks) earlier, the
missing frames repeat the last decoded one and the file is logged once as ``padded`` (sources/base.py).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from input_pipeline.sources.base import (BAD_VIDEOS, BadVideoError, BadVideoLog, check_label,
                                         read_list_file)

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv")


def _to_rgb(frame, short_side: int, frame_fn=None) -> np.ndarray:
  kw = {}
  if short_side and min(frame.width, frame.height) != short_side:
    from input_pipeline.sources.rawframes import short_side_size
    w, h = short_side_size(frame.width, frame.height, short_side)
    kw = dict(width=w, height=h, interpolation="BILINEAR")
  if frame_fn is not None:
    from PIL import Image
    return frame_fn(Image.fromarray(frame.to_ndarray(format="rgb24", **kw)))
  return frame.to_ndarray(format="rgb24", **kw)


def _open(path: str, frame_threads: bool = False):
  """``(container, video stream)``; ``frame_threads``: FFmpeg decodes several frames at once (lower
  latency for one whole video). The loader's workers decode one clip each without it: on 2 cores,
  frame threading made the 64-frame H.264 clips of bench/input_pipeline.py 1.2x slower per worker
  (154-162 ms instead of 129-136 ms to decode a video), threads contending with the other workers."""
  import av
  if not os.path.isfile(path):
    raise BadVideoError(path, "video file is missing", "check config.data.root and the annotation/list file")
  try:
    container = av.open(path)
  except Exception as e:  # av.error.InvalidDataError and friends
    raise BadVideoError(path, f"cannot be opened ({e.__class__.__name__}: {e})",
                        "re-encode or remove it from the list") from None
  if not container.streams.video:
    container.close()
    raise BadVideoError(path, "has no video stream", "re-encode or remove it from the list")
  stream = container.streams.video[0]
  if frame_threads:
    stream.thread_type = "AUTO"
  return container, stream


def decode_video(path: str, short_side: int = 0) -> np.ndarray:
  """All frames of a video as uint8 ``(F, H, W, 3)``; a clear error for missing/corrupt files."""
  container, stream = _open(path, frame_threads=True)
  frames = []
  with container:
    try:
      for frame in container.decode(stream):
        frames.append(_to_rgb(frame, short_side))
    except Exception as e:  # av.error.* for truncated or corrupt containers
      if not frames:
        raise BadVideoError(path, f"cannot be decoded ({e.__class__.__name__}: {e})",
                            "re-encode or remove it from the list") from None
      # A truncated file: keep the frames decoded before the damage.
  if not frames:
    raise BadVideoError(path, "decoded to zero frames", "re-encode or remove it from the list")
  return np.stack(frames)


def read_video_clip(path: str, index_fn, short_side: int = 0, log: BadVideoLog = BAD_VIDEOS,
                    frame_fn=None) -> np.ndarray:
  """``frames[index_fn(num_frames)]`` decoding frames ``0..max(index)`` only (``frame_fn``: see
  rawframes.decode_image)."""
  container, stream = _open(path)
  with container:
    n = int(stream.frames or 0)
    frames, last, decoded, error = {}, None, 0, None
    if n > 0:
      idx = np.asarray(index_fn(n))
      need = set(int(k) for k in np.unique(idx))
      stop = max(need)
      try:
        for k, frame in enumerate(container.decode(stream)):
          decoded, last = k + 1, frame
          if k in need:
            frames[k] = _to_rgb(frame, short_side, frame_fn)
          if k >= stop:
            break
      except Exception as e:  # truncated/corrupt data: keep what was decoded
        error = e
    else:  # no frame count in the container (some webm/mkv): decode everything, then sample
      kept = []
      try:
        for frame in container.decode(stream):
          kept.append(frame)
      except Exception as e:
        error = e
      decoded = n = len(kept)
      if n:
        idx = np.asarray(index_fn(n))
        frames = {int(k): _to_rgb(kept[int(k)], short_side, frame_fn) for k in np.unique(idx)}
        last = kept[-1]
  if decoded == 0:
    why = f" ({error.__class__.__name__}: {error})" if error is not None else ""
    raise BadVideoError(path, f"cannot be decoded{why}", "re-encode or remove it from the list")
  if int(idx.max()) >= decoded:
    log.note(path, f"{path}: only {decoded} of {n} frames could be decoded"
             + (f" ({error.__class__.__name__})" if error is not None else "")
             + ": the clip repeats the last one", "padded")
    idx = np.minimum(idx, decoded - 1)
    if decoded - 1 not in frames:
      frames[decoded - 1] = _to_rgb(last, short_side, frame_fn)
  elif error is not None:
    log.note(path, f"{path}: decoding stopped at frame {decoded} ({error.__class__.__name__}); "
             "the frames before it are used", "padded")
  first = frames[int(idx.flat[0])]
  return np.stack([frames[int(k)] for k in idx.reshape(-1)]).reshape(idx.shape + first.shape)


def count_video_frames(path: str) -> int:
  """Frames of a video (from the container, or by decoding when it does not say)."""
  container, stream = _open(path)
  with container:
    if stream.frames:
      return int(stream.frames)
    return sum(1 for _ in container.decode(stream))


class VideoFiles:
  """A ClipSource over video files listed as ``path label`` (relative to ``root``)."""

  def __init__(self, root: str, list_file: str, class_names=None, num_classes: Optional[int] = None,
               short_side: int = 0, log: BadVideoLog = BAD_VIDEOS):
    if not os.path.isdir(root):
      raise FileNotFoundError(f"video root {root!r} is not a directory (set config.data.root to the "
                              f"folder the list file's paths are relative to)")
    self.root, self.short_side, self.log = root, short_side, log
    if class_names is not None and num_classes is None:
      num_classes = len(class_names)
    self.records = []
    for n, parts in enumerate(read_list_file(list_file, 2, "path label"), 1):
      try:
        rec = (parts[0], int(parts[-1]))
      except ValueError:
        raise ValueError(f"{list_file}: entry {n} {' '.join(parts)!r}: label must be an integer "
                         f"('path label')") from None
      if check_label(rec[1], num_classes, os.path.join(root, rec[0]), log):
        self.records.append(rec)
    self.class_names = class_names

  def __len__(self):
    return len(self.records)

  def label(self, index):
    return self.records[index][1]

  def video_id(self, index):
    return self.records[index][0]

  fused_frames = True  # load_clip takes a frame_fn (pipeline.train_example)

  def load_clip(self, index, index_fn, frame_fn=None):
    return read_video_clip(os.path.join(self.root, self.records[index][0]), index_fn, self.short_side, self.log,
                           frame_fn)
