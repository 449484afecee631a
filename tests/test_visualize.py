"""Pictures of vidjax/tools/visualize.py: each one is written as a PNG and shows what it should.

* MBPM (Figs. 5.6-5.9, Eq. 5.3): a static scene has no Busy response (the temporal filter [-1, 2, -1] / 3
  sums to zero) and is drawn white; a moving square gives colours only where it moved (within the LoG's
  radius of its path).
* Grad-CAM (Fig. 4.11, Selvaraju et al.): for global average pooling followed by a linear classifier
  and the mean over frames, d logit_c / d A_t = W[:, c] / (T h w), so the Grad-CAM of frame t is
  ReLU(A_t W[:, c]) / (T h w) (CAM), computed here from the model's features and fc weights.
* LoG kernels (Fig. 5.10, Eq. 5.2-5.3): the normalised kernel has a positive centre and a negative ring
  (REFERENCE.md section 6), drawn red and blue.
* PWTP dynamic appearance (Fig. 3.10), TSP squeezed images (Fig. 3.6), RNL attention maps (Figs. 4.1,
  4.9): the pictures are made, have the expected panels and are not blank.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.tiny import tiny_config
from vidjax.models import registry
from vidjax.tools import convert, visualize as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(path):
  im = np.asarray(Image.open(path).convert("RGB"))
  assert im.shape[0] > 40 and im.shape[1] > 80
  assert im.std() > 10, "blank picture"
  return im


def _moving_square(t=4, size=48, static=False):
  """3T frames: grey background, a bright square moving 2 px per frame to the right."""
  frames = np.full((3 * t, size, size, 3), 100, np.uint8)
  for i in range(3 * t):
    x0 = 8 + (0 if static else 2 * i)
    frames[i, 16:28, x0:x0 + 12] = (220, 180, 60)
  return frames


def test_mbpm_busy_colours_static_white_motion_coloured(tmp_path):
  moving, static = _moving_square(), _moving_square(static=True)
  busy_m, busy_s = V.mbpm_output(moving), V.mbpm_output(static)
  assert busy_m.shape == (4, 48, 48, 3)
  scale = float(np.sqrt((busy_m.astype(np.float64) ** 2).sum(-1)).max())
  white = np.all(V.busy_colours(busy_s, scale) == 255, axis=-1)
  assert white.all(), "a static clip must have no Busy response"
  col = V.busy_colours(busy_m, scale)
  coloured = ~np.all(col == 255, axis=-1)  # (T, H, W)
  assert coloured.any()
  # outside the square's path (rows 16-27, columns 8-45 over the 12 frames) widened by the LoG radius 4
  outside = np.ones((48, 48), bool)
  outside[16 - 4:28 + 4, 8 - 4:46 + 4] = False
  assert not coloured[:, outside].any()
  np.testing.assert_array_equal(V.busy_colours(np.zeros((2, 2, 3))), 255)  # zero response: white
  path = V.save_png(V.render_mbpm(moving, busy_m), str(tmp_path / "mbpm.png"))
  im = _png(path)
  assert (np.abs(im.astype(int) - 255).sum(-1) > 30).sum() > 50  # coloured Busy pixels in the file


def test_cli_mbpm_squeezed_dynamic_appearance_log_kernels(tmp_path):
  """The command line without a config: synthetic clip, modules at their initial values."""
  for kind in ("mbpm", "squeezed", "dynamic_appearance", "log_kernels"):
    out = str(tmp_path / f"{kind}.png")
    assert V.main([kind, f"--out={out}", "--synthetic=1", "--size=64"]) == out
    _png(out)
  clip, _ = V.synthetic_clip(2, frames=24, size=64)
  sq = V.squeezed_images(V.segments_view(clip, 1, 10, 64), 2)
  assert sq.shape == (2, 64, 64, 3) and np.isfinite(sq).all() and sq.std() > 0
  da = V.dynamic_appearance(V.segments_view(clip, 2, 8, 64), 2)
  assert da.shape == (2, 64, 64, 3) and np.isfinite(da).all() and da.std() > 0


def test_log_kernel_colours_and_trained_row():
  from vidjax.ops.filters import log_kernel
  k = log_kernel(1.1, 9)
  img = V.diverging(k / np.abs(k).max())
  r, g, b = (int(v) for v in img[4, 4])
  assert r > 150 and b < 100  # positive centre: red
  ring = img[np.unravel_index(np.argmin(k), k.shape)]
  assert ring[2] > ring[0]  # most negative entry: blue
  before = np.repeat(k[..., None], 3, -1)
  variables = {"params": {"busy_mbpm": {"log": {"kernel": (before * 0.8 + 0.05)[:, :, None, :]}}}}
  after = V.stem_log_kernels(variables)
  assert after.shape == (9, 9, 3)
  one, two = V.render_log_kernels(before), V.render_log_kernels(before, after)
  assert two.shape[0] > one.shape[0] + 100  # a second row of kernels


def _attention_config():
  from vidjax.models.attention_net import default_attention_config
  c = tiny_config(**{"model.name": "attention_tsm_resnet"})
  c.model.attention = default_attention_config()
  c.model.attention.positions = ((2, 0),)
  c.model.attention.rnl.impl = "dense"
  return c


def test_attention_maps_picture(tmp_path):
  """RNL after res3 block 0 (4 x 4 x 4 grid on 32^2 frames); F_theta taps enlarged so that the attention
  is peaked: two reference positions give two different rows."""
  c = _attention_config()
  model = registry.build(c.model)
  variables = convert.initial_variables(model, c)
  ft = variables["params"]["layer2_0_attn"]["rnl"]["f_theta"]
  ft["kernel"] = ft["kernel"] * 50
  clip, _ = V.synthetic_clip(0, frames=8, size=32)
  clip = clip[::2]
  x = jnp.asarray(V.normalise(clip, c.data.mean, c.data.std)[None])
  grid = V.attention_grid(model, variables, x, 2, 0)
  assert grid == (4, 4, 4)
  from vidjax.models.attention_net import attention_maps
  queries = [(1, 1, 1), (2, 3, 0)]
  maps = np.asarray(attention_maps(model, variables, x, 2, 0, queries))[0]
  img = V.render_attention(clip, maps, queries)
  rows = np.asarray(img)
  assert rows.shape[0] > 2 * 96  # two rows of enlarged frames
  assert np.abs(maps[0] / maps[0].max() - maps[1] / maps[1].max()).max() > 0.1
  _png(V.save_png(img, str(tmp_path / "attention.png")))


def test_grad_cam_is_cam_for_pooled_linear_head(tmp_path):
  c = tiny_config(**{"model.shift": False})
  model = registry.build(c.model)
  variables = convert.initial_variables(model, c)
  fc = variables["params"]["head"]["fc"]
  fc["kernel"] = np.random.default_rng(1).normal(0, 1, fc["kernel"].shape).astype(np.float32)
  clip, _ = V.synthetic_clip(3, frames=8, size=32)
  x = jnp.asarray(V.normalise(clip[::2], c.data.mean, c.data.std)[None])
  cams, raw, logits, cls = V.grad_cam(model, variables, x)
  want_logits, feats = model.apply(variables, x, train=False, return_features=True)
  feats = np.asarray(feats, np.float64)  # (T, h, w, C)
  t, h, w, _ = feats.shape
  np.testing.assert_allclose(logits, np.asarray(want_logits)[0], rtol=1e-5, atol=1e-6)
  assert cls == int(np.argmax(logits))
  want = np.maximum(feats @ np.asarray(fc["kernel"], np.float64)[:, cls], 0) / (t * h * w)
  assert raw.shape == (t, h, w) and want.max() > 0
  np.testing.assert_allclose(raw, want, rtol=1e-4, atol=1e-6 * want.max())
  assert cams.max() == pytest.approx(1.0)
  # the command line on the same tiny model at its initial value
  out = str(tmp_path / "gradcam.png")
  args = ["gradcam", f"--out={out}", "--config=configs/synthetic_tsm.py", "--config.model.width=0.0625",
          "--config.model.stage_sizes=(1,1,1,1)", "--config.data.crop_size=32", "--config.data.scale_size=32",
          "--config.data.num_segments=4", "--synthetic=3"]
  assert V.main(args) == out
  _png(out)
