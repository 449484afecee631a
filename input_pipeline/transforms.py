"""Clip augmentation on uint8 ``(F, H, W, C)`` arrays, the same for every frame of a clip.

``C`` is 3 (RGB), 2 (optical flow x, y) or 5 (RGB + flow, ``sources/rawframes.FlowFrames``): crop,
resize and flip treat every channel alike, so RGB and flow of a clip share one crop box and one flip.

Mirrors the reference's TSN transforms (REFERENCE.md section 10):

* ``multi_scale_crop_box``: ``GroupMultiScaleCrop`` — crop side ``int(short * s)`` for s in
  ``scales`` (snapped to the output size when within 3 px), width/height scale indices differing by at
  most ``max_distort``, offset drawn from the 13 fixed positions (corners, centre, edge centres, quarter
  points) on a grid of ``(W - w) // 4``.
* ``resize``: PIL bilinear, as the reference resizes the crop to ``crop_size``.
* ``three_crop_boxes``: ``GroupFullResSample`` — left, right, centre crops of the rescaled frame.
* ``invert_flow_x``: ``GroupRandomHorizontalFlip(is_flow=True)`` — a mirrored flow x image is inverted,
  ``255 - x`` (the horizontal motion changes sign; 128 is zero motion, so 128 becomes 127, as in TSN).
Mean/std normalisation happens on the device inside the jitted step, not here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image


def fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
  """The 13 ``(x, y)`` offsets of ``fix_crop + more_fix_crop``."""
  ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
  grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
          (1, 1), (3, 1), (1, 3), (3, 3)]
  return [(i * ws, j * hs) for i, j in grid]


def multi_scale_crop_box(image_w: int, image_h: int, crop_size: int, rng: np.random.Generator,
                         scales: Sequence[float] = (1, .875, .75, .66), max_distort: int = 1):
  """Random ``(x, y, w, h)`` crop box of the reference's multi-scale crop."""
  base = min(image_w, image_h)
  sizes = [int(base * s) for s in scales]
  sizes = [crop_size if abs(s - crop_size) < 3 else s for s in sizes]
  pairs = [(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
  w, h = pairs[int(rng.integers(len(pairs)))]
  offsets = fixed_offsets(image_w, image_h, w, h)
  x, y = offsets[int(rng.integers(len(offsets)))]
  return x, y, w, h


def _resize_frame(f: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  if f.ndim == 2 or f.shape[-1] == 3:
    return np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR))
  # other channel counts (flow x/y, RGB + flow): band by band, the same pixels as PIL's RGB resize
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f[..., c])).resize(size, Image.BILINEAR))
                   for c in range(f.shape[-1])], axis=-1)


def resize(frames: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
  """PIL bilinear resize of every frame (any number of channels)."""
  if frames.shape[1] == out_h and frames.shape[2] == out_w:
    return frames
  return np.stack([_resize_frame(f, (out_w, out_h)) for f in frames])


def resize_short_side(frames: np.ndarray, short: int) -> np.ndarray:
  h, w = frames.shape[1:3]
  if min(h, w) == short:
    return frames
  if h <= w:
    return resize(frames, int(round(w * short / h)), short)
  return resize(frames, short, int(round(h * short / w)))


def crop(frames: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
  return frames[:, y:y + h, x:x + w]


def centre_crop_box(image_w: int, image_h: int, size: int):
  return (image_w - size) // 2, (image_h - size) // 2, size, size


def three_crop_boxes(image_w: int, image_h: int, size: int):
  """Left, right and centre crops (``GroupFullResSample``)."""
  ws, hs = (image_w - size) // 4, (image_h - size) // 4
  return [(0, 2 * hs, size, size), (4 * ws, 2 * hs, size, size), (2 * ws, 2 * hs, size, size)]


def invert_flow_x(video: np.ndarray, channel: int, box_hw=None) -> np.ndarray:
  """``video`` with channel ``channel`` (flow x) replaced by ``255 - x``: the flow of a mirrored clip.
  ``box_hw``: only the ``(h, w)`` top-left box of each frame (a clip on a canvas: its padding stays 0)."""
  video = np.array(video, copy=True)
  h, w = box_hw if box_hw is not None else video.shape[-3:-1]
  video[..., :h, :w, channel] = 255 - video[..., :h, :w, channel]
  return video


def on_canvas(frames, canvas: int) -> np.ndarray:
  """Frames ``(h, w, ...)`` (a list or an array of them) in the top-left corner of a zeroed
  ``(F, canvas, canvas, ...)`` array: one shape for every clip of a batch."""
  h, w = frames[0].shape[:2]
  out = np.zeros((len(frames), canvas, canvas) + frames[0].shape[2:], np.uint8)
  for i, f in enumerate(frames):
    out[i, :h, :w] = f
  return out


def train_augment(frames: np.ndarray, crop_size: int, rng: np.random.Generator,
                  scales=(1, .875, .75, .66), max_distort: int = 1, flip: bool = True,
                  flow_x: int | None = None) -> np.ndarray:
  """Multi-scale crop -> resize to ``crop_size`` -> random horizontal flip (one draw per clip).

  ``flow_x``: the channel of the flow x component, if any; a flipped clip gets ``invert_flow_x``.
  """
  boxes, mirror = _draw_box_and_flip(frames, crop_size, rng, scales, max_distort, flip)
  return np.ascontiguousarray(_finish(boxes, crop_size, mirror, flow_x))


def _draw_box_and_flip(frames, crop_size, rng, scales, max_distort, flip):
  """The clip's random draws, in the reference's order (crop box, then flip): the cut-out boxes
  ``(F, h, w, C)`` and whether to mirror."""
  h, w = frames.shape[1:3]
  x, y, cw, ch = multi_scale_crop_box(w, h, crop_size, rng, scales, max_distort)
  return crop(frames, x, y, cw, ch), bool(flip and rng.random() < 0.5)


def _finish(boxes, crop_size, mirror, flow_x):
  """Resize the boxes to ``crop_size``, then mirror (flow x inverted) when drawn."""
  out = resize(boxes, crop_size, crop_size)
  if mirror:
    out = out[:, :, ::-1]
    if flow_x is not None:
      out = invert_flow_x(out, flow_x)
  return out


class ClipAugment:
  """``train_augment`` applied frame by frame to PIL images as they are decoded (one clip).

  With ``canvas > 0`` (``config.data.crop_resize`` 'step') a box that fits a ``canvas^2`` array is only
  cut out (``on_device``): the step resizes and flips it (``device_clip``). A larger box (frames stored
  bigger than the canvas) is finished here as before.

  The first frame fixes the crop box and the flip (drawn from ``rng`` in the order ``train_augment``
  draws them), so ``np.stack([aug(f) for f in frames]) == train_augment(frames, ...)`` exactly. Sources
  that accept a ``frame_fn`` call it on each decoded frame: a frame is then converted to an array once,
  at crop size, instead of decoded -> array -> PIL -> cropped and resized -> array. Grey images (flow)
  give ``(h, w)`` arrays; ``mirror`` tells the caller to invert their x component (``invert_flow_x``).
  """

  def __init__(self, crop_size: int, rng: np.random.Generator, scales=(1, .875, .75, .66),
               max_distort: int = 1, flip: bool = True, canvas: int = 0):
    self.crop_size, self.rng, self.scales, self.max_distort, self.flip = crop_size, rng, scales, max_distort, flip
    self.canvas = canvas
    self.box = None
    self.mirror = False
    self.on_device = False

  def box_of(self, width: int, height: int) -> tuple[int, int, int, int]:
    """The ``(x, y, w, h)`` box this clip keeps of a ``width x height`` frame; the first frame draws
    it (and the flip). A source that can decode just the box (``input_pipeline/jpeg.py``) hands its
    pixels to ``from_region`` instead of calling the augmentation on the whole frame."""
    if self.box is None:
      self.box = multi_scale_crop_box(width, height, self.crop_size, self.rng, self.scales, self.max_distort)
      self.mirror = bool(self.flip and self.rng.random() < 0.5)
      self.on_device = bool(self.canvas) and max(self.box[2:]) <= self.canvas
    return self.box

  def __call__(self, im: Image.Image) -> np.ndarray:
    x, y, w, h = self.box_of(*im.size)
    if self.on_device:  # resize and flip happen in the step (vidjax/ops/resize.py): only the box here
      return np.asarray(im)[y:y + h, x:x + w]
    if (x, y, w, h) != (0, 0) + im.size:
      im = im.crop((x, y, x + w, y + h))
    return self._finish(im)

  def from_region(self, region: np.ndarray) -> np.ndarray:
    """What ``__call__`` returns for a frame, given only its ``box_of`` box: uint8 ``(h, w, C)`` or
    ``(h, w)``."""
    if self.on_device:
      return region
    return self._finish(Image.fromarray(region))

  def stack(self, frames: list) -> np.ndarray:
    """``np.stack(frames)`` of this clip's frames; boxes the step finishes (``on_device``) go straight
    into the top-left corner of the zeroed ``(F, canvas, canvas, ...)`` array ``device_clip`` would
    make, saving a copy of the clip."""
    return on_canvas(frames, self.canvas) if self.on_device else np.stack(frames)

  def _finish(self, im: Image.Image) -> np.ndarray:
    if im.size != (self.crop_size, self.crop_size):
      im = im.resize((self.crop_size, self.crop_size), Image.BILINEAR)
    if self.mirror:
      im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(im)


def stack_frames(frames: list, shape: tuple, frame_fn=None) -> np.ndarray:
  """The readers' ``np.stack(frames).reshape(shape + frame shape)`` (``shape``: the sampled indices'),
  through ``frame_fn.stack`` when it has one (``ClipAugment.stack``: boxes placed on the canvas)."""
  stack = getattr(frame_fn, "stack", None)
  out = stack(frames) if stack is not None else np.stack(frames)
  return out.reshape(tuple(shape) + out.shape[1:])


def device_clip(video: np.ndarray, canvas: int, crop_size: int, on_device: bool, mirror: bool,
                box_hw=None):
  """The host half of a clip whose resize and flip run in the step (``config.data.crop_resize`` 'step').

  ``video``: the cut-out boxes ``(F, h, w, C)`` (``on_device``) or an already finished clip ``(F, crop,
  crop, C)``. Returns ``(canvas_clip, box_hw, flip)``: the frames in the top-left corner of a zeroed
  ``(F, canvas, canvas, C)`` array (one shape for every clip of a batch), the box size, and whether the
  step mirrors the clip after resizing it (``vidjax.ops.resize.crop_resize_flip``).
  """
  f, h, w, c = video.shape
  if on_device and box_hw is not None and (h, w) == (canvas, canvas):  # already on the canvas
    return video, np.array(box_hw, np.int32), np.int32(bool(mirror))
  if not on_device and (h, w) != (crop_size, crop_size):
    raise ValueError(f"a clip finished on the host must be {crop_size}^2, got {h} x {w}")
  if h > canvas or w > canvas:
    raise ValueError(f"box {h} x {w} does not fit the {canvas}^2 canvas (config.data.canvas_size)")
  return on_canvas(video, canvas), np.array([h, w], np.int32), np.int32(bool(mirror and on_device))


def train_crop(frames: np.ndarray, crop_size: int, rng: np.random.Generator, canvas: int,
               scales=(1, .875, .75, .66), max_distort: int = 1, flip: bool = True, flow_x: int | None = None):
  """``train_augment`` for ``config.data.crop_resize='step'``: the same draws (box, then flip), the box
  cut out and placed on the canvas, ``(canvas_clip, box_hw, flip)`` as ``device_clip``; the step
  finishes the clip to exactly ``train_augment``'s pixels. A box larger than the canvas is finished
  here."""
  boxes, mirror = _draw_box_and_flip(frames, crop_size, rng, scales, max_distort, flip)
  if max(boxes.shape[1:3]) > canvas:
    return device_clip(_finish(boxes, crop_size, mirror, flow_x), canvas, crop_size, False, mirror)
  if mirror and flow_x is not None:
    boxes = invert_flow_x(boxes, flow_x)
  return device_clip(boxes, canvas, crop_size, True, mirror)


def val_views(frames: np.ndarray, crop_size: int, scale_size: int, num_crops: int = 1) -> np.ndarray:
  """Resize the short side to ``scale_size`` and take 1 (centre) or 3 (left/right/centre) crops.

  Returns ``(num_crops, F, crop, crop, C)``.
  """
  frames = resize_short_side(frames, scale_size)
  h, w = frames.shape[1:3]
  if num_crops == 1:
    boxes = [centre_crop_box(w, h, crop_size)]
  elif num_crops == 3:
    boxes = three_crop_boxes(w, h, crop_size)
  else:
    raise ValueError(f"test_crops must be 1 or 3, got {num_crops}")
  return np.stack([crop(frames, *b) for b in boxes])
