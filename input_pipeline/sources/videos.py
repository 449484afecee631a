"""Video files (mp4, avi, webm, mkv ...) decoded with PyAV, and a ``path label`` list file.

``read_video_clip`` decodes only what a clip needs: frames are decoded in order up to the last index
the sampler asks for (for a dense clip near the start of a 10 s Kinetics video that is a fraction of
the file) and only the requested ones are converted to RGB (optionally straight to ``short_side`` by
libswscale). The frame count comes from the container; when the stream ends (or breaks) earlier, the
missing frames repeat the last decoded one and the file is logged once as ``padded`` (sources/base.py).
"""
from __future__ import annotations

import os
import threading
from typing import Optional

import numpy as np

from input_pipeline.sources.base import (BAD_VIDEOS, BadVideoError, BadVideoLog, check_label,
                                         read_list_file)
from input_pipeline.transforms import stack_frames

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv")


_REFORMATTERS = threading.local()


def _reformatter():
  """This thread's libswscale converter. ``frame.to_ndarray(format=...)`` sets up a new one for every
  frame; one per thread keeps its context, the same pixels in half the time (0.2 instead of 0.45 ms a
  256 x 340 frame in a one-off measurement; bench/input_pipeline.py records the reader's speed)."""
  r = getattr(_REFORMATTERS, "reformatter", None)
  if r is None:
    from av.video.reformatter import VideoReformatter
    r = _REFORMATTERS.reformatter = VideoReformatter()
  return r


def _to_rgb(frame, short_side: int, frame_fn=None) -> np.ndarray:
  kw = {}
  if short_side and min(frame.width, frame.height) != short_side:
    from input_pipeline.sources.rawframes import short_side_size
    w, h = short_side_size(frame.width, frame.height, short_side)
    kw = dict(width=w, height=h, interpolation="BILINEAR")
  rgb = _reformatter().reformat(frame, format="rgb24", **kw).to_ndarray()
  if frame_fn is None:
    return rgb
  if getattr(frame_fn, "box_of", None) is not None:  # ClipAugment: the box straight from the array
    x, y, w, h = frame_fn.box_of(rgb.shape[1], rgb.shape[0])
    if x + w <= rgb.shape[1] and y + h <= rgb.shape[0]:
      return frame_fn.from_region(rgb[y:y + h, x:x + w])
  from PIL import Image
  return frame_fn(Image.fromarray(rgb))


def _open(path: str, frame_threads: bool = False):
  """``(container, video stream)``; ``frame_threads``: FFmpeg decodes several frames at once (lower
  latency for one whole video). The loader's workers decode one clip each without it: on 2 cores,
  frame threading made the 64-frame H.264 clips of bench/input_pipeline.py 1.2x slower per worker
  (154-162 ms instead of 129-136 ms to decode a video, a one-off measurement), threads contending with
  the other workers; bench/input_pipeline.py records the reader's speed."""
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


class _NoFrameIndex(Exception):
  """A decoded frame whose timestamp does not give its index: decode the clip again by counting."""


def _pts_to_index(stream):
  """``pts -> frame index`` for a stream whose timestamps advance by a whole number of time-base
  units per frame (constant frame rate, as video files of the benchmarks are), else None."""
  from fractions import Fraction
  rate, tb = stream.average_rate, stream.time_base
  if not rate or not tb:
    return None
  step = 1 / (Fraction(rate) * Fraction(tb))
  if step <= 0 or step.denominator != 1:
    return None
  step, start = int(step), int(stream.start_time or 0)

  def index(pts):
    if pts is None or (pts - start) % step:
      return None
    return (pts - start) // step
  return index


class _Decoded:
  """What a clip's decoding has produced so far (kept when the data turn out corrupt half-way)."""

  def __init__(self):
    self.frames, self.decoded, self.last = {}, 0, None

  def add(self, k: int, frame, need: set, convert) -> None:
    self.decoded, self.last = k + 1, frame
    if k in need:
      self.frames[k] = convert(frame)


def _decode_needed(container, stream, index, need: set, stop: int, convert, out: _Decoded) -> None:
  """Frames ``0..stop`` in order, asking the decoder to drop the non-reference frames (B frames no
  other frame is predicted from) that are not in ``need``: those never have to be reconstructed.
  Frames are identified by their timestamps; :class:`_NoFrameIndex` when a timestamp does not give the
  index counting would (no timestamp, off the frame grid, out of order, or a gap in the timestamps
  that is not a dropped frame, as in a variable-frame-rate file). ``index``: :func:`_pts_to_index`."""
  ctx = stream.codec_context
  droppable = set()  # frames whose packet went to the decoder with skip_frame NONREF
  for packet in container.demux(stream):
    k = index(packet.pts) if packet.pts is not None else None
    drop = k is not None and k not in need and k < stop
    ctx.skip_frame = "NONREF" if drop else "DEFAULT"
    if drop:
      droppable.add(k)
    for frame in packet.decode():
      k = index(frame.pts)
      # the index must be what counting gives: frames in between only those the decoder may drop
      if k is None or k < out.decoded or any(j not in droppable for j in range(out.decoded, k)):
        raise _NoFrameIndex()
      out.add(k, frame, need, convert)
      if k >= stop:
        return
  if any(k not in out.frames for k in need if k < out.decoded):
    raise _NoFrameIndex()


def _decode_counting(container, stream, need: set, stop: int, convert, out: _Decoded) -> None:
  """Frames ``0..stop`` in decoding order, every one decoded, identified by counting."""
  for k, frame in enumerate(container.decode(stream)):
    out.add(k, frame, need, convert)
    if k >= stop:
      return


def read_video_clip(path: str, index_fn, short_side: int = 0, log: BadVideoLog = BAD_VIDEOS,
                    frame_fn=None, skip_unneeded: bool = True) -> np.ndarray:
  """``frames[index_fn(num_frames)]`` decoding frames ``0..max(index)`` only (``frame_fn``: see
  rawframes.decode_image). ``skip_unneeded``: the decoder drops the non-reference frames the clip does
  not sample (timestamps identify the frames; a stream whose timestamps do not is decoded by counting
  frames, from the start again if it was already read part-way, so the pixels are the same either way)."""
  convert = lambda frame: _to_rgb(frame, short_side, frame_fn)  # noqa: E731
  container, stream = _open(path)
  out, error = _Decoded(), None
  try:
    n = int(stream.frames or 0)
    if n > 0:
      idx = np.asarray(index_fn(n))
      need = set(int(k) for k in np.unique(idx))
      stop = max(need)
      index = _pts_to_index(stream) if skip_unneeded else None
      try:
        counting = index is None
        if not counting:
          try:
            _decode_needed(container, stream, index, need, stop, convert, out)
          except _NoFrameIndex:  # the stream has been read part-way: start again, counting
            container.close()
            container, stream = _open(path)
            out, counting = _Decoded(), True
        if counting:
          _decode_counting(container, stream, need, stop, convert, out)
      except Exception as e:  # truncated/corrupt data: keep what was decoded
        error = e
    else:  # no frame count in the container (some webm/mkv): decode everything, then sample
      kept = []
      try:
        for frame in container.decode(stream):
          kept.append(frame)
      except Exception as e:
        error = e
      n = len(kept)
      if n:
        idx = np.asarray(index_fn(n))
        need = set(int(k) for k in np.unique(idx))
        for k, frame in enumerate(kept):
          out.add(k, frame, need, convert)
  finally:
    container.close()
  frames, decoded, last = out.frames, out.decoded, out.last
  if decoded == 0:
    why = f" ({error.__class__.__name__}: {error})" if error is not None else ""
    raise BadVideoError(path, f"cannot be decoded{why}", "re-encode or remove it from the list")
  if int(idx.max()) >= decoded:
    log.note(path, f"{path}: only {decoded} of {n} frames could be decoded"
             + (f" ({error.__class__.__name__})" if error is not None else "")
             + ": the clip repeats the last one", "padded")
    idx = np.minimum(idx, decoded - 1)
    if decoded - 1 not in frames:
      frames[decoded - 1] = convert(last)
  elif error is not None:
    log.note(path, f"{path}: decoding stopped at frame {decoded} ({error.__class__.__name__}); "
             "the frames before it are used", "padded")
  return stack_frames([frames[int(k)] for k in idx.reshape(-1)], idx.shape, frame_fn)


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
