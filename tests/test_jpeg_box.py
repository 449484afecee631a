"""The native JPEG box decoder (input_pipeline/jpeg.py, _jpeg_box.c) against Pillow's full decode.

The independent reference is Pillow: ``np.asarray(Image.open(f).convert(mode))[y:y + h, x:x + w]``. Every
box must be bit-identical to it (libjpeg-turbo's partial decompression plus one iMCU column of context
on each side for fancy chroma upsampling), over the subsamplings, progressive and restart-marker files,
grey and RGB-colour-space JPEGs, sizes that are not multiples of the iMCU, and boxes touching every edge.
Where the native decoder cannot give Pillow's pixels it returns None and the loader uses Pillow.
"""
import io
import os

import numpy as np
import pytest
from PIL import Image

from input_pipeline import jpeg, pipeline
from input_pipeline.sources.rawframes import decode_image
from input_pipeline.sources.synthetic import SyntheticMotion, write_rawframes
from input_pipeline.transforms import ClipAugment
from tests.tiny import tiny_config


def test_native_decoder_is_built():
  assert jpeg._jpeg_box is not None, (
      "input_pipeline._jpeg_box was not built: install libjpeg-turbo's headers (Debian/Ubuntu: apt install "
      "libjpeg62-turbo-dev or libjpeg-dev; conda: libjpeg-turbo) and run 'pip install -e .' again")


def _textured(h, w, seed=0, grey=False):
  """A frame with edges and colour everywhere (chroma upsampling differences would show)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([(xx * 7 + yy * 3) % 256, (xx * 2 - yy * 5) % 256, ((xx ^ yy) * 11) % 256], -1)
  img = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
  return img[..., 0] if grey else img


def _jpeg(img, **kw):
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, "JPEG", **kw)
  return buf.getvalue()


def _pillow(data, mode="RGB"):
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert(mode))


VARIANTS = {
    "420 q90": ((256, 340), dict(quality=90)),
    "420 odd size": ((97, 131), dict(quality=85)),
    "422": ((64, 90), dict(quality=90, subsampling=1)),
    "444": ((50, 77), dict(quality=95, subsampling=0)),
    "progressive": ((72, 100), dict(quality=80, progressive=True)),
    "optimized + restarts": ((80, 120), dict(quality=75, optimize=True, restart_marker_blocks=3)),
    "rgb colour space": ((48, 70), dict(quality=90, keep_rgb=True, subsampling=0)),
    "tiny": ((5, 7), dict(quality=90)),
}


def _boxes(h, w, rng, n=40):
  boxes = [(0, 0, w, h), (0, 0, 1, 1), (w - 1, h - 1, 1, 1), (0, h - 1, w, 1), (w - 1, 0, 1, h)]
  for _ in range(n):
    bw, bh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
    boxes.append((int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1)), bw, bh))
  return boxes


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_box_equals_pillow_full_decode_cut_to_the_box(variant):
  if not jpeg.available():
    pytest.skip("native decoder not built (test_native_decoder_is_built says how)")
  (h, w), kw = VARIANTS[variant]
  data = _jpeg(_textured(h, w, seed=len(variant)), **kw)
  full = _pillow(data)
  assert jpeg.image_info(data) == (w, h, 3)
  for x, y, bw, bh in _boxes(h, w, np.random.default_rng(1)):
    got = jpeg.decode_box(data, (x, y, bw, bh))
    np.testing.assert_array_equal(got, full[y:y + bh, x:x + bw], err_msg=f"{variant} box {(x, y, bw, bh)}")


def test_grey_jpegs_give_pillows_grey_and_rgb():
  """A one-component JPEG (the flow images): an (h, w) box equals Pillow's L, an RGB box its
  convert('RGB'); a grey box of a colour JPEG is left to Pillow (its L conversion is not libjpeg's Y)."""
  if not jpeg.available():
    pytest.skip("native decoder not built")
  data = _jpeg(_textured(45, 61, grey=True), quality=90)
  assert jpeg.image_info(data) == (61, 45, 1)
  for x, y, bw, bh in _boxes(45, 61, np.random.default_rng(2), 10):
    np.testing.assert_array_equal(jpeg.decode_box(data, (x, y, bw, bh), channels=1),
                                  _pillow(data, "L")[y:y + bh, x:x + bw])
    np.testing.assert_array_equal(jpeg.decode_box(data, (x, y, bw, bh)), _pillow(data)[y:y + bh, x:x + bw])
  colour = _jpeg(_textured(45, 61), quality=90)
  assert jpeg.decode_box(colour, (0, 0, 10, 10), channels=1) is None


def test_what_the_native_decoder_leaves_to_pillow(monkeypatch):
  """None (Pillow decodes) for PNG, CMYK, a corrupt or truncated JPEG, a box past the edge, and with
  VIDJAX_NATIVE_JPEG=0; decode_image then gives Pillow's result or Pillow's error."""
  if not jpeg.available():
    pytest.skip("native decoder not built")
  img = _textured(40, 56)
  good = _jpeg(img, quality=90)
  png = io.BytesIO()
  Image.fromarray(img).save(png, "PNG")
  cmyk = io.BytesIO()
  Image.fromarray(img).convert("CMYK").save(cmyk, "JPEG")
  assert jpeg.image_info(png.getvalue()) is None
  assert jpeg.image_info(cmyk.getvalue()) is None
  assert jpeg.image_info(b"\xff\xd8garbage") is None
  assert jpeg.decode_box(good, (50, 0, 10, 10)) is None  # past the right edge
  truncated = good[:len(good) // 2]
  assert jpeg.decode_box(truncated, (0, 0, 56, 40)) is None
  assert jpeg.decode_box(truncated, (0, 0, 8, 8)) is None  # even a box above the cut: Pillow reports it
  with pytest.raises(OSError, match="truncated"):
    decode_image(truncated)
  aug = ClipAugment(16, np.random.default_rng(0))
  with pytest.raises(OSError, match="truncated"):
    decode_image(truncated, frame_fn=aug)
  np.testing.assert_array_equal(decode_image(png.getvalue()), img)
  np.testing.assert_array_equal(decode_image(good), _pillow(good))
  monkeypatch.setenv("VIDJAX_NATIVE_JPEG", "0")
  assert not jpeg.available() and jpeg.decode_box(good, (0, 0, 8, 8)) is None


def test_damaged_files_never_crash_the_decoder():
  """Bytes flipped or cut anywhere (headers, tables, entropy data): the native decoder returns a box of
  the right shape or None (libjpeg's errors come back as exceptions, not exits), never crashes."""
  if not jpeg.available():
    pytest.skip("native decoder not built")
  good = _jpeg(_textured(40, 56), quality=90)
  rng = np.random.default_rng(3)
  outcomes = set()
  for _ in range(300):
    data = bytearray(good)
    if rng.random() < 0.3:
      data = data[:int(rng.integers(2, len(data)))]
    for _ in range(int(rng.integers(1, 6))):
      data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    out = jpeg.decode_box(bytes(data), (3, 5, 30, 20))
    assert out is None or out.shape == (20, 30, 3)
    outcomes.add(out is None)
  assert outcomes == {True, False}  # both kinds of damage were seen


class _Counting:
  """The native module, counting its decode_box calls."""

  def __init__(self, module):
    self.module, self.calls = module, 0

  def info(self, data):
    return self.module.info(data)

  def decode_box(self, *args):
    self.calls += 1
    return self.module.decode_box(*args)


@pytest.mark.parametrize("layout,modality", [("frames", "rgb"), ("prepared", "rgb"), ("frames", "rgb+flow"),
                                             ("frames", "flow")])
def test_training_clips_are_the_same_with_and_without_the_native_decoder(tmp_path, monkeypatch, layout,
                                                                         modality):
  """pipeline.train_example decoding only the boxes gives the clips Pillow's full decodes give, with the
  resize on the host and in the step (REFERENCE.md section 10 multi-scale crop + flip), for RGB, RGB +
  flow and flow (grey JPEGs, one box for both, issue 6 point 4), equal to augmenting the whole decoded
  clip; and the whole frames of the validation views are Pillow's too."""
  if not jpeg.available():
    pytest.skip("native decoder not built")
  c = tiny_config()
  c.data.crop_size, c.data.frames_per_segment, c.data.flip = 24, 2, True
  c.data.multi_scale = (1.0, 0.875, 0.75, 0.66)
  c.data.modality = modality
  if modality == "rgb":
    src = SyntheticMotion(num_videos=3, num_frames=9, height=40, width=54)
    c.model.num_classes = src.num_classes
    lst = write_rawframes(src, str(tmp_path / "f"), str(tmp_path / "l.txt"))
  else:
    from tests.test_flow_input import _write_tree
    os.makedirs(tmp_path / "f")
    lst = _write_tree(str(tmp_path / "f"), videos=("v0", "v1", "v2"), frames=9)
    c.model.num_classes = 3
  c.data.dataset, c.data.root, c.data.train_list, c.data.val_list = "rawframes", str(tmp_path / "f"), lst, lst
  if layout == "prepared":
    from input_pipeline import prepare
    names = tmp_path / "names.txt"
    names.write_text("\n".join(src.class_names) + "\n")
    prepare.main(["rawframes", f"--source={tmp_path / 'f'}", f"--train_list={lst}", f"--val_list={lst}",
                  f"--out={tmp_path / 'p'}", "--short_side=0", f"--class_names={names}", "--workers=1", "--quiet"])
    c.data.prepared = str(tmp_path / "p")
  spy = _Counting(jpeg._jpeg_box)
  monkeypatch.setattr(jpeg, "_jpeg_box", spy)
  train, val = pipeline.build_source(c, "train"), pipeline.build_source(c, "val")
  for seed in range(6):
    for where in ("host", "step"):
      c.data.crop_resize = where
      monkeypatch.setenv("VIDJAX_NATIVE_JPEG", "1")
      calls = spy.calls
      a = pipeline.train_example(train, c, seed % 3, np.random.default_rng(seed))
      assert spy.calls > calls
      monkeypatch.setenv("VIDJAX_NATIVE_JPEG", "0")
      calls = spy.calls
      b = pipeline.train_example(train, c, seed % 3, np.random.default_rng(seed))
      assert spy.calls == calls
      # and both are the clip decoded whole, then cropped (transforms.train_augment / train_crop)
      e = pipeline.train_example(train, c, seed % 3, np.random.default_rng(seed), fused=False)
      for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{layout} {where} seed {seed} {k}")
        np.testing.assert_array_equal(a[k], e[k], err_msg=f"{layout} {where} seed {seed} {k} unfused")
  monkeypatch.setenv("VIDJAX_NATIVE_JPEG", "1")
  a = pipeline.eval_example(val, c, 1)
  monkeypatch.setenv("VIDJAX_NATIVE_JPEG", "0")
  b = pipeline.eval_example(val, c, 1)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=f"{layout} eval {k}")


def test_a_box_is_asked_for_once_per_clip_and_shared():
  """decode_image hands ClipAugment the frame size; the box drawn on the first frame is the one every
  later frame is cut to (one crop per clip, issue 6 point 4)."""
  if not jpeg.available():
    pytest.skip("native decoder not built")
  frames = [_jpeg(_textured(48, 64, seed=s), quality=90) for s in range(3)]
  aug = ClipAugment(32, np.random.default_rng(5), canvas=64)
  boxes = [decode_image(f, frame_fn=aug) for f in frames]
  x, y, w, h = aug.box
  for f, b in zip(frames, boxes):
    np.testing.assert_array_equal(b, _pillow(f)[y:y + h, x:x + w])


def test_boxes_decoded_by_threads_are_right():
  """The decoder releases the GIL (the loader's threads decode side by side): boxes decoded by two
  threads at once are each Pillow's pixels."""
  if not jpeg.available():
    pytest.skip("native decoder not built")
  import concurrent.futures
  datas = [_jpeg(_textured(64, 96, seed=s), quality=90) for s in range(8)]
  want = [_pillow(d)[5:50, 7:80] for d in datas]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    got = list(pool.map(lambda d: jpeg.decode_box(d, (7, 5, 73, 45)), datas * 4))
  for i, g in enumerate(got):
    np.testing.assert_array_equal(g, want[i % 8])

