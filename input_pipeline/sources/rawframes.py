"""TSN / MMAction "rawframes": one folder of JPEG frames per video and a list file.

List lines are ``path num_frames label`` with ``path`` relative to ``root`` (absolute paths work too);
frame k (0-based) of a video is ``root/path/template.format(k + 1)``, ``img_{:05d}.jpg`` by default
(Something-Something V1 uses ``{:05d}.jpg``, the two-stream UCF101/HMDB51 ``jpegs_256`` release
``frame{:06d}.jpg``); ``template=None`` detects it per folder from ``FRAME_TEMPLATES``.

Bad input (sources/base.py): a missing or empty folder raises ``BadVideoError`` (the loader skips the
video); a folder with fewer frames than its list entry says is padded with its last frame (the clip is
sampled from the list's count, as the reference does, and indices past the real end are clamped).

Optical flow (thesis section 3.2.3, Fig. 3.4, the temporal stream of the two-stream TeSNet): TV-L1 flow
stored TSN-style as two grey JPEGs per frame pair in the video's frame folder, next to ``img_00001.jpg``.
``flow_template`` has two fields, the axis (``x`` / ``y``) and the 1-based pair number, as the
TSN/TSM/MMAction loaders format it (``template.format('x', k)``): ``flow_{}_{:05d}.jpg`` (TSN, TSM,
denseflow: ``flow_x_00001.jpg``) or ``{}_{:05d}.jpg`` (mmaction2: ``x_00001.jpg``); ``None`` detects
one of ``FLOW_TEMPLATES`` per folder. A value of 128 is zero motion (the extractor maps
``[-bound, bound]`` pixels to ``[0, 255]``).

Index convention: flow pair ``k`` (0-based; files ``flow_x_{k+1:05d}.jpg`` / ``flow_y_...``) is the motion
from frame ``k`` to frame ``k + 1``, so a folder of N frames has N - 1 pairs. ``FlowFrames`` reads

* ``modality='rgb+flow'``: the clip's RGB frame indices are sampled from the N frames as for RGB, and
  the flow of frame ``i`` is pair ``min(i, N - 2)`` (the last frame has no successor; it takes the last
  pair), so every channel of a frame comes from the same moment;
* ``modality='flow'``: indices are sampled from the N - 1 pairs, as the author's loader does (its list
  count is the RGB count and ``Flow`` uses ``num_frames - 1``; busy-quiet-net ``ops/dataset.py``).

A list count that already counts pairs (mmaction2 flow lists) only costs the last pair. A folder with
fewer pairs than that repeats its last pair (``padded``, as for RGB frames); a folder without flow, or
with a hole, raises ``BadVideoError`` naming the folder and the expected files (the loader skips it).
"""
from __future__ import annotations

import io
import os
from typing import Optional

import numpy as np
from PIL import Image

from input_pipeline import jpeg
from input_pipeline.sources.base import (BAD_VIDEOS, BadVideoError, BadVideoLog, check_label,
                                         read_list_file)
from input_pipeline.transforms import stack_frames

FRAME_TEMPLATES = ("img_{:05d}.jpg", "{:05d}.jpg", "image_{:05d}.jpg", "frame{:06d}.jpg", "frame_{:05d}.jpg",
                   "img_{:06d}.jpg", "{:06d}.jpg", "img_{:05d}.png", "{:05d}.png")
FLOW_TEMPLATES = ("flow_{}_{:05d}.jpg", "{}_{:05d}.jpg", "flow_{}_{:06d}.jpg", "{}_{:06d}.jpg")
FLOW_AXES = ("x", "y")
# Input channels of each ``config.data.modality``: RGB, the flow x/y pair, or both (RGB first).
MODALITY_CHANNELS = {"rgb": 3, "flow": 2, "rgb+flow": 5}


def short_side_size(w: int, h: int, short: int) -> tuple[int, int]:
  """``(w, h)`` with the short side scaled to ``short`` (rounded, as transforms.resize_short_side)."""
  if h <= w:
    return int(round(w * short / h)), short
  return short, int(round(h * short / w))


def decode_image(fp, short_side: int = 0, frame_fn=None, mode: str = "RGB") -> np.ndarray:
  """A uint8 frame from a JPEG/PNG path, file object or bytes, optionally rescaled to ``short_side``.

  ``mode``: ``'RGB'`` (``(H, W, 3)``) or ``'L'`` (grey ``(H, W)``, the flow JPEGs). When the stored frame
  is at least twice the requested size, libjpeg's DCT scaling (``draft``) decodes it at 1/2, 1/4 or 1/8
  size first, which is several times faster than a full decode. ``frame_fn`` (e.g.
  ``transforms.ClipAugment``) maps the decoded PIL image to the returned array; one with ``box_of`` /
  ``from_region`` gets only its box, which a JPEG at its stored size decodes alone
  (``input_pipeline/jpeg.py``, the same pixels as Pillow's full decode). Everything else is Pillow's.
  """
  if jpeg.available() and (frame_fn is None or getattr(frame_fn, "box_of", None) is not None):
    data = _read_bytes(fp)
    out = _decode_box(data, short_side, frame_fn, mode)
    if out is not None:
      return out
    fp = io.BytesIO(data)
  elif isinstance(fp, (bytes, bytearray, memoryview)):
    fp = io.BytesIO(fp)
  with Image.open(fp) as im:
    if short_side and min(im.size) != short_side:
      size = short_side_size(im.size[0], im.size[1], short_side)
      im.draft(mode, size)
      im = im.convert(mode)
      if im.size != size:
        im = im.resize(size, Image.BILINEAR)
    else:
      im.load()
      if im.mode != mode:
        im = im.convert(mode)
    return frame_fn(im) if frame_fn is not None else np.asarray(im)


def _read_bytes(fp) -> bytes:
  if isinstance(fp, (bytes, bytearray, memoryview)):
    return bytes(fp)
  if isinstance(fp, io.BytesIO):
    return fp.getvalue()
  if hasattr(fp, "read"):
    return fp.read()
  with open(fp, "rb") as fh:
    return fh.read()


def _decode_box(data: bytes, short_side: int, frame_fn, mode: str):
  """``decode_image`` by ``jpeg.decode_box`` (the whole frame when there is no ``frame_fn``); ``None``
  where Pillow must decode: not a JPEG the native decoder reads like Pillow, or a rescaled frame."""
  info = jpeg.image_info(data)
  if info is None or (short_side and min(info[:2]) != short_side):
    return None
  box = frame_fn.box_of(info[0], info[1]) if frame_fn is not None else (0, 0, info[0], info[1])
  region = jpeg.decode_box(data, box, 3 if mode == "RGB" else 1, info)  # None for grey of a colour JPEG
  if region is None:
    return None
  return frame_fn.from_region(region) if frame_fn is not None else region


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
    return stack_frames([cache[int(k)] for k in idx.reshape(-1)], idx.shape, frame_fn)


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

  def frame_folder(self, index: int) -> tuple[str, int]:
    """``(folder, listed frame count)`` of video ``index`` (used by ``FlowFrames``)."""
    return os.path.join(self.root, self.records[index][0]), self.records[index][1]

  def load_clip(self, index, index_fn, frame_fn=None):
    path, num_frames, _ = self.records[index]
    folder = os.path.join(self.root, path)
    if num_frames < 1:
      raise BadVideoError(folder, f"the list says it has {num_frames} frames")
    return self.reader.load(folder, index_fn, num_frames, frame_fn)


def check_flow_template(template: str) -> str:
  """``template`` formats an axis and a pair number into two different file names, or ValueError."""
  try:
    x, y = (template.format(a, 1) for a in FLOW_AXES)
  except (IndexError, KeyError, ValueError) as e:
    raise ValueError(f"config.data.flow_template {template!r} must have two fields, the axis and the 1-based "
                     f"pair number, e.g. 'flow_{{}}_{{:05d}}.jpg' or '{{}}_{{:05d}}.jpg' ({e})") from None
  if x == y or template.format("x", 1) == template.format("x", 2):
    raise ValueError(f"config.data.flow_template {template!r} must name the axis first and the pair number "
                     f"second, e.g. 'flow_{{}}_{{:05d}}.jpg' (flow_x_00001.jpg)")
  return template


def _flow_names(template: str, k: int) -> tuple[str, str]:
  """File names of the x and y images of 0-based flow pair ``k``."""
  return template.format("x", k + 1), template.format("y", k + 1)


def _expected(template: str) -> str:
  x, y = _flow_names(template, 0)
  return f"{x} + {y}, {_flow_names(template, 1)[0]} + ..."


class FlowFolderReader:
  """Reads optical-flow pairs (x and y grey JPEGs) of frame folders: ``(..., H, W, 2)`` uint8 (x, y)."""

  def __init__(self, template: Optional[str] = None, short_side: int = 0, log: BadVideoLog = BAD_VIDEOS):
    self.template = check_flow_template(template) if template else None
    self.short_side, self.log = short_side, log
    self._detected: Optional[str] = None
    self._actual: dict[str, int] = {}  # folders found with fewer pairs than expected (or counted)

  def template_of(self, folder: str) -> str:
    if self.template:
      return self.template
    t = self._detected
    if t is None or not all(os.path.isfile(os.path.join(folder, n)) for n in _flow_names(t, 0)):
      t = next((c for c in FLOW_TEMPLATES
                if all(os.path.isfile(os.path.join(folder, n)) for n in _flow_names(c, 0))), None)
      if t is None:
        raise BadVideoError(folder, "no optical-flow frames: expected x/y JPEG pairs named like "
                            f"{' or '.join(_expected(c) for c in FLOW_TEMPLATES[:2])} next to the RGB frames",
                            "extract TV-L1 flow into the frame folder (denseflow, mmaction2 extract_frames), "
                            "set config.data.flow_template, or remove the video from the list")
      self._detected = t
    return t

  def count(self, folder: str, template: Optional[str] = None) -> tuple[int, int]:
    """Consecutive x and y images ``1..n`` present in ``folder``."""
    template = template or self.template_of(folder)
    try:
      names = set(os.listdir(folder))
    except OSError:
      return 0, 0
    counts = []
    for a in FLOW_AXES:
      n = 0
      while template.format(a, n + 1) in names:
        n += 1
      counts.append(n)
    return counts[0], counts[1]

  def num_pairs(self, folder: str) -> int:
    """Pairs with both images present (counted once per folder)."""
    if folder not in self._actual:
      self._actual[folder] = min(self.count(folder))
    return self._actual[folder]

  def load(self, folder: str, idx, num_pairs: int, frame_fn=None) -> np.ndarray:
    """Flow pairs ``idx`` (clamped to ``num_pairs - 1``, then to the folder's real count): ``idx.shape +
    (H, W, 2)``. ``frame_fn`` maps each decoded grey PIL image to an ``(h, w)`` array."""
    if not os.path.isdir(folder):
      raise BadVideoError(folder, "frame folder is missing", "extract its frames or remove it from the list")
    template = self.template_of(folder)
    idx = np.minimum(np.asarray(idx), max(num_pairs, 1) - 1)
    real = self._actual.get(folder)
    if real is not None and 0 < real < max(num_pairs, 1):
      idx = np.minimum(idx, real - 1)
    cache = {}
    for k in np.unique(idx):
      k = int(k)
      planes = []
      for name in _flow_names(template, k):
        fp = os.path.join(folder, name)
        try:
          planes.append(decode_image(fp, self.short_side, frame_fn, mode="L"))
        except FileNotFoundError:
          cx, cy = self.count(folder, template)
          if min(cx, cy) < 1:
            raise BadVideoError(folder, f"no optical-flow frames: expected {_expected(template)} (flow template "
                                f"{template!r}, N - 1 pairs for N frames)",
                                "extract TV-L1 flow into the frame folder or set config.data.flow_template"
                                ) from None
          if k < max(cx, cy):
            raise BadVideoError(fp, f"flow image is missing, but the folder's {'xy'[cy > cx]} images go on to "
                                f"{template.format('xy'[cy > cx], max(cx, cy))}",
                                "re-extract the flow or remove the video from the list") from None
          self._actual[folder] = min(cx, cy)
          self.log.note(folder, f"{folder}: {num_pairs} flow pairs expected ({template!r}; frames - 1), the "
                        f"folder has {min(cx, cy)}: pairs past {min(cx, cy)} repeat the last one", "padded")
          return self.load(folder, np.minimum(idx, min(cx, cy) - 1), num_pairs, frame_fn)
        except (OSError, ValueError) as e:
          raise BadVideoError(fp, f"cannot read flow image ({e.__class__.__name__}: {e})",
                              "re-extract the flow or remove the video from the list") from None
      cache[k] = np.stack(planes, axis=-1)
    return stack_frames([cache[int(k)] for k in idx.reshape(-1)], idx.shape, frame_fn)


class _SameSize:
  """The per-frame function of one clip, checking that RGB and flow frames have one size (a shared crop
  box needs it); without ``fn`` it returns the frame as an array. Like ``fn`` it takes whole PIL frames
  or, through ``box_of`` / ``from_region``, only the box (``decode_image``)."""

  def __init__(self, fn, folder: str):
    self.fn, self.folder, self.size = fn, folder, None
    if fn is not None and getattr(fn, "box_of", None) is None:
      self.box_of = None  # fn takes whole PIL frames only

  def _check(self, size):
    if self.size is None:
      self.size = size
    elif size != self.size:
      raise BadVideoError(self.folder, f"its RGB and flow frames differ in size ({self.size[0]}x{self.size[1]} "
                          f"vs {size[0]}x{size[1]}); a clip needs one crop for both",
                          "extract both at one size, or set config.data.short_side to rescale them")

  def __call__(self, im):
    self._check(im.size)
    return self.fn(im) if self.fn is not None else np.asarray(im)

  def box_of(self, width: int, height: int):
    self._check((width, height))
    if self.fn is None:
      return 0, 0, width, height
    return self.fn.box_of(width, height)

  def from_region(self, region):
    return self.fn.from_region(region) if self.fn is not None else region

  def stack(self, frames):
    stack = getattr(self.fn, "stack", None)
    return stack(frames) if stack is not None else np.stack(frames)


class FlowFrames:
  """A ClipSource of flow (``modality='flow'``, ``(..., H, W, 2)``) or RGB + flow (``'rgb+flow'``,
  ``(..., H, W, 5)``: R, G, B, flow x, flow y) clips over a source of frame folders.

  ``source``: ``RawFrames`` or a named benchmark's ``layout.EntrySource`` of frame folders (any source
  with ``frame_folder(i) -> (folder, listed count)`` or ``entries[i].path / .num_frames``). RGB frames
  are read by ``source``; flow indices follow the module docstring's convention. One ``frame_fn`` (the
  clip's ``transforms.ClipAugment``) serves both, so RGB and flow share the crop box and the flip; the
  pipeline inverts flow x of flipped clips (``transforms.invert_flow_x``).
  """

  fused_frames = True  # load_clip takes a frame_fn (pipeline.train_example)

  def __init__(self, source, modality: str, template: Optional[str] = None, log: BadVideoLog = BAD_VIDEOS):
    if modality not in ("flow", "rgb+flow"):
      raise ValueError(f"FlowFrames reads modality 'flow' or 'rgb+flow', got {modality!r}")
    self.source, self.modality = source, modality
    reader = getattr(source, "reader", None) or getattr(source, "frames", None)
    short = getattr(reader, "short_side", getattr(source, "short_side", 0))
    self.flow = FlowFolderReader(template, short, log)

  def __len__(self):
    return len(self.source)

  def __getattr__(self, name):  # label, video_id, class_names, ... of the wrapped source
    if name in ("source", "__getstate__", "__setstate__"):
      raise AttributeError(name)
    return getattr(self.source, name)

  def __repr__(self):
    return f"FlowFrames({self.modality}, {self.source!r})"

  def frame_folder(self, index: int) -> tuple[str, int]:
    s = self.source
    if hasattr(s, "frame_folder"):
      return s.frame_folder(index)
    if hasattr(s, "entries"):
      e = s.entries[index]
      return e.path, e.num_frames
    raise TypeError(f"{s!r} has no frame folders; optical flow is read from rawframes folders "
                    f"(config.data.dataset 'rawframes' or a benchmark with extracted frames)")

  def load_clip(self, index, index_fn, frame_fn=None):
    folder, listed = self.frame_folder(index)
    if not os.path.isdir(folder):
      problem = "is a video file: optical flow is read from frame folders" if os.path.exists(folder) else \
          "frame folder is missing"
      raise BadVideoError(folder, problem, f"extract its frames and flow ({_expected(FLOW_TEMPLATES[0])}) "
                          "or remove it from the list")
    fn = _SameSize(frame_fn, folder)
    if self.modality == "flow":
      pairs = listed - 1 if listed > 0 else self.flow.num_pairs(folder)
      if pairs < 1:
        raise BadVideoError(folder, f"{'the list gives it one frame' if listed > 0 else 'no flow pairs'}: "
                            f"no optical flow ({_expected(self.flow.template_of(folder))})",
                            "remove it from the list")
      return self.flow.load(folder, np.asarray(index_fn(pairs)), pairs, fn)
    got = []

    def rgb_index_fn(n):
      idx = np.asarray(index_fn(n))
      got.append((n, idx))
      return idx

    rgb = self.source.load_clip(index, rgb_index_fn, fn)
    n, idx = got[0]
    flow = self.flow.load(folder, idx, n - 1, fn)
    return np.concatenate([rgb, flow], axis=-1)
