"""``config.data.crop_resize='step'``: the step's crop resize equals PIL's, bit for bit (issue 6, point 8).

The reference resizes each multi-scale crop with ``PIL.Image.resize(BILINEAR)`` and then flips it
(``GroupMultiScaleCrop``, ``GroupRandomHorizontalFlip``, REFERENCE.md section 10); the independent
check here is Pillow itself on the same pixels.
"""
import numpy as np
import pytest
from PIL import Image

from vidjax.ops import resize


def _pil(box: np.ndarray, size: int, mirror: bool) -> np.ndarray:
  """PIL on each frame (band by band for channel counts PIL has no mode for)."""
  def frame(f):
    if f.shape[-1] == 3:
      out = np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR))
    else:
      out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f[..., c])).resize((size, size), Image.BILINEAR))
                      for c in range(f.shape[-1])], -1)
    return out[:, ::-1] if mirror else out
  return np.stack([frame(f) for f in box])


@pytest.mark.parametrize("size,canvas,boxes", [
    (16, 24, [(24, 24), (21, 18), (16, 16), (13, 10), (7, 24)]),  # shrink (antialiased), identity, enlarge
    (20, 20, [(20, 20), (17, 20), (13, 13), (11, 17)]),
])
def test_crop_resize_flip_equals_pil(size, canvas, boxes):
  rng = np.random.default_rng(0)
  b, f = len(boxes), 2
  clips = rng.integers(0, 256, (b, f, canvas, canvas, 3), dtype=np.uint8)
  flips = np.array([k % 2 for k in range(b)], bool)
  out = np.asarray(resize.crop_resize_flip(clips, np.array(boxes), flips, size))
  assert out.shape == (b, f, size, size, 3) and out.dtype == np.uint8
  for k, (h, w) in enumerate(boxes):
    want = _pil(clips[k, :, :h, :w], size, flips[k])
    np.testing.assert_array_equal(out[k], want, err_msg=f"box {h}x{w} -> {size}, flip {flips[k]}")


def test_real_sizes_and_flow_channels():
  """The sizes of the K400 recipe (short side 256, crops 256/224/192/168 -> 224) and 5 channels (RGB+flow)."""
  rng = np.random.default_rng(1)
  boxes = [(256, 224), (168, 192), (224, 224), (192, 168)]
  # a smooth image: the rounding of neighbouring taps matters more than on noise
  yy, xx = np.mgrid[0:256, 0:256]
  base = ((np.sin(yy / 7.0) + np.cos(xx / 5.0)) * 60 + 128).astype(np.uint8)
  clips = np.stack([np.stack([base, base.T, 255 - base, rng.integers(0, 256, base.shape, dtype=np.uint8), base], -1)
                    for _ in boxes])[:, None]
  out = np.asarray(resize.crop_resize_flip(clips, np.array(boxes), np.array([0, 1, 0, 1]), 224))
  for k, (h, w) in enumerate(boxes):
    np.testing.assert_array_equal(out[k], _pil(clips[k, :, :h, :w], 224, bool(k % 2)))


def test_coefficients_follow_pillow_formula():
  """Spot values of Pillow's precompute_coeffs: enlarging 2 -> 4 puts output 0 on input 0 (weight 1:
  the tap at -0.25 is outside) and output 1 at 0.75 * x0 + 0.25 * x1; shrinking 4 -> 2 widens the
  triangle to half-width 2: output 0 (centre 1.0) has taps 0, 1, 2 with weights 0.75, 0.75, 0.25 / 1.75."""
  idx, w = resize.pil_bilinear_coeffs(2, 4)
  one = 1 << resize.PRECISION_BITS
  assert list(idx[0][w[0] > 0]) == [0] and w[0][w[0] > 0][0] == one
  np.testing.assert_array_equal(w[1][:2], [round(0.75 * one), round(0.25 * one)])
  idx, w = resize.pil_bilinear_coeffs(4, 2)
  # output 0 centred at 1.0, filter scale 2: taps 0, 1, 2 at distances 0.5, 0.5, 1.5 -> 0.75, 0.75, 0.25
  np.testing.assert_array_equal(idx[0][:3], [0, 1, 2])
  np.testing.assert_array_equal(w[0][:3], [round(0.75 / 1.75 * one), round(0.75 / 1.75 * one), round(0.25 / 1.75 * one)])


def test_training_with_the_resize_in_the_step_equals_the_loader(tmp_path):
  """Three steps through train.py's loop with ``crop_resize='step'`` (boxes of 40 x 48 frames resized to
  24^2 in the step) end where ``'host'`` (PIL in the loader) ends: the batches hold the same pixels."""
  import jax

  from input_pipeline import pipeline
  from tests.tiny import tiny_config
  from vidjax.train import loop

  ends = {}
  for where in ("host", "step"):
    c = tiny_config(**{"data.crop_resize": where, "train.eval_at_end": False, "train.total_steps": 3})
    c.data.synthetic.height, c.data.synthetic.width = 40, 48
    c.data.crop_size, c.data.scale_size = 24, 40
    batch = next(pipeline.train_batches(c, pipeline.build_source(c, "train"), 0, 1))
    assert ("box" in batch) == (where == "step")
    if where == "step":
      assert batch["video"].shape[2:4] == (40, 40) and (batch["box"] != 24).any()
    ends[where] = loop.train_and_evaluate(c, str(tmp_path / where))["state"].params
  for a, b in zip(jax.tree.leaves(ends["host"]), jax.tree.leaves(ends["step"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_pass_order_follows_pillow_version():
  """Pillow 13.0 runs the vertical pass first when the height shrinks more than twice as much as the
  width (Resample.c ``horizontal_first``); older Pillow never does. A 21 x 18 box -> 16 is such a case:
  the two orders give different pixels, and the default is the installed Pillow's."""
  import PIL
  rng = np.random.default_rng(3)
  clip = rng.integers(0, 256, (1, 1, 24, 24, 3), dtype=np.uint8)
  args = (clip, np.array([[21, 18]]), np.array([0]), 16)
  newer = np.asarray(resize.crop_resize_flip(*args, pillow_orders_passes=True))
  older = np.asarray(resize.crop_resize_flip(*args, pillow_orders_passes=False))
  assert (newer != older).any() and np.abs(newer.astype(int) - older).max() <= 1
  expected = newer if int(PIL.__version__.split(".")[0]) >= 13 else older
  np.testing.assert_array_equal(np.asarray(resize.crop_resize_flip(*args)), expected)
  np.testing.assert_array_equal(expected[0], _pil(clip[0, :, :21, :18], 16, False))
