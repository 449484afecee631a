"""JPEG frames decoded only where the clip's crop box is: ``decode_box``.

A training clip keeps one multi-scale crop box of every frame (``transforms.multi_scale_crop_box``: 66-100 %
of the short side, 36-100 % of the frame's area on 256 x 340 frames), yet Pillow can only decode whole
frames. The native module ``input_pipeline._jpeg_box`` (``_jpeg_box.c``, built by ``pip install`` against
the system's libjpeg-turbo) decodes the box alone with libjpeg-turbo's partial decompression and gives
the same pixels as Pillow's full decode cut to the box, bit for bit (tests/test_jpeg_box.py).

Where it cannot (the module was not built, a PNG frame, a CMYK JPEG, a grey box wanted of a colour JPEG,
a frame over Pillow's decompression-bomb limit, or anything libjpeg rejects), ``decode_box`` returns
``None`` and the caller decodes with Pillow as before, so a frame decodes whenever Pillow decodes it, to
the same pixels either way. A file that does not end with the JPEG end-of-image marker (cut short) is
also left to Pillow, which reports it, although the box might lie above the missing part. Setting the
environment variable ``VIDJAX_NATIVE_JPEG=0`` turns the native path off.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

try:
  from input_pipeline import _jpeg_box
except ImportError:  # not built (no libjpeg headers at install time): Pillow decodes whole frames
  _jpeg_box = None

# libjpeg's J_COLOR_SPACE values of the colour spaces whose RGB / grey output is Pillow's
JCS_GRAYSCALE, JCS_RGB, JCS_YCBCR = 1, 2, 3


def available() -> bool:
  """Whether boxes are decoded natively (the module is built and ``VIDJAX_NATIVE_JPEG`` is not 0)."""
  return _jpeg_box is not None and os.environ.get("VIDJAX_NATIVE_JPEG", "1") != "0"


def image_info(data: bytes) -> Optional[tuple[int, int, int]]:
  """``(width, height, components)`` of a JPEG the native decoder handles like Pillow, else ``None``
  (not a JPEG, CMYK/YCCK, a header libjpeg rejects, or no native decoder)."""
  if not available() or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
    return None  # not a JPEG, or one cut short: Pillow decodes it (and reports the truncation)
  try:
    w, h, comps, space = _jpeg_box.info(data)
  except ValueError:
    return None
  if (comps, space) not in ((1, JCS_GRAYSCALE), (3, JCS_YCBCR), (3, JCS_RGB)):
    return None
  from PIL import Image
  if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:  # Pillow's decompression-bomb check decides
    return None
  return w, h, comps


def decode_box(data: bytes, box: tuple[int, int, int, int], channels: int = 3,
               info: Optional[tuple[int, int, int]] = None) -> Optional[np.ndarray]:
  """Pixels ``[y:y + h, x:x + w]`` of the decoded JPEG ``data`` (``box = (x, y, w, h)``): uint8
  ``(h, w, 3)`` RGB for ``channels=3`` (a grey JPEG's value in all three, as Pillow's ``convert('RGB')``)
  or ``(h, w)`` for ``channels=1`` (grey JPEGs only). ``None`` when the native decoder cannot give
  Pillow's pixels (see the module docstring); ``info`` is ``image_info(data)`` if already read."""
  info = info or image_info(data)
  if info is None or (channels == 1 and info[2] != 1):
    return None
  x, y, w, h = (int(v) for v in box)
  if x < 0 or y < 0 or w < 1 or h < 1 or x + w > info[0] or y + h > info[1]:
    return None  # a box past the frame's edge: Pillow's crop fills the outside with zeros
  out = np.empty((h, w, 3) if channels == 3 else (h, w), np.uint8)
  try:
    _jpeg_box.decode_box(data, x, y, w, h, out)
  except ValueError:  # corrupt or truncated: Pillow decides (and names the problem)
    return None
  return out
