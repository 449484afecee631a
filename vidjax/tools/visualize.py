"""Pictures of what the thesis modules compute, written as PNG files (PIL only).

``python -m vidjax.tools.visualize KIND --out=FILE.png [--video=PATH | --synthetic=INDEX]
[--config=configs/X.py[:arg] [--config.a.b=value ...] [--workdir=DIR]] [options]``

Kinds (the thesis figure each one reproduces):

* ``mbpm`` (Figs. 5.6-5.9): the Busy frames the Motion Band-Pass Module selects. Top row: the middle frame
  of every 3-frame segment; bottom row: the MBPM output coloured with the optical-flow colour coding of
  Baker et al. that section 5.5 cites ([6]), extended to the three MBPM channels as the author's
  ``src/flow_vis.py`` does: the radius is the norm of the 3-channel response (divided by its maximum over
  the clip; white = no response), the hue index is ``(atan2(v, u) + atan2(u, w) + atan2(v, w)) / 3 pi``
  on the 55-colour Middlebury wheel (segments RY 15, YG 6, GC 4, CB 11, BM 13, MR 6). With a config
  whose model has a stem MBPM (``busy_tsm_resnet``, ``bqn_resnet``, ``bqn_x3d``) and ``--workdir``, the
  trained module; otherwise the MBPM at its initial value (LoG sigma 1.1, k 9 and ``[-1, 2, -1] / 3``).
* ``dynamic_appearance`` (Fig. 3.10): per segment the frame average (top) and the PWTP dynamic
  appearance (bottom, Eq. 3.12), from a DAN checkpoint or a PWTP at init (T = 8, D = 1).
* ``squeezed`` (Fig. 3.6): the K input frames (top) and the D squeezed images of TSP (bottom, Eq. 3.4),
  from a TeSNet / DAN(squeezed_image) checkpoint or a TSP at init (K = 10, D = 2 as Fig. 3.6).
* ``attention`` (Figs. 4.1, 4.9): for each reference position ``(t, h, w)`` of the feature grid after
  residual block ``(--stage, --block)``, the RNL / NL attention weights over the whole clip
  (``vidjax.models.attention_net.attention_maps``) upsampled onto the frames (jet colours), the reference
  position framed in white. Needs an ``attention_tsm_resnet`` config.
* ``gradcam`` (Fig. 4.11): Grad-CAM (Selvaraju et al. [109]) on the last convolutional block (the last
  ``Bottleneck`` / ``X3DBlock`` the model runs, or ``--layer=a/b``): per frame
  ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``d logit_c / d A_k``, ``c`` the
  predicted class (or ``--target``), normalised by the clip maximum, over the frames.
* ``log_kernels`` (Fig. 5.10): the stem MBPM's ``k x k`` channel-wise LoG kernels before training (the
  initial value of Eq. 5.2-5.3) and, with ``--workdir``, after (blue negative, red positive, each kernel
  scaled by its largest magnitude).

Input clips: ``--video`` (decoded and sampled as evaluation does, first view), or ``--synthetic=i`` (clip
``i`` of the built-in motion dataset). Without a config the picture uses ``--segments`` segments at
``--size`` pixels. The functions (``busy_colours``, ``mbpm_output``, ``grad_cam``, ``render_*``) return
uint8 images for notebooks.
"""
from __future__ import annotations

import argparse
import ast
import math
import os
import sys
from typing import Any, Callable, Optional, Sequence

import numpy as np

KINDS = ("mbpm", "dynamic_appearance", "squeezed", "attention", "gradcam", "log_kernels")


# =============================================================================================== colours
def middlebury_wheel() -> np.ndarray:
  """The 55-colour wheel of Baker et al. (ICCV 2007) as ``(55, 3)`` floats in [0, 1]."""
  segments = ((15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
              (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0)))
  rows = []
  for n, start, end in segments:
    f = np.floor(255 * np.arange(n) / n)[:, None] / 255.0
    rows.append(np.asarray(start, float) * (1 - f) + np.asarray(end, float) * f)
  return np.concatenate(rows)


def busy_colours(x: np.ndarray, scale: Optional[float] = None) -> np.ndarray:
  """MBPM responses ``(..., H, W, 3)`` -> uint8 colours (see the module docstring).

  ``scale``: the norm mapped to full saturation (default: the largest norm in ``x``).
  """
  x = np.asarray(x, np.float64)
  u, v, w = x[..., 0], x[..., 1], x[..., 2]
  rad = np.sqrt(u * u + v * v + w * w)
  scale = float(rad.max()) if scale is None else float(scale)
  rad = rad / (scale + 1e-5)
  rad = np.where(rad < 1e-6, 0.0, rad)  # float32 rounding noise (a static region's ~1e-8), not motion
  wheel = middlebury_wheel()
  n = len(wheel)
  a = (np.arctan2(v, u) + np.arctan2(u, w) + np.arctan2(v, w)) / (3 * np.pi)  # in [-1, 1]
  fk = (a + 1) / 2 * (n - 1)
  k0 = np.clip(np.floor(fk).astype(int), 0, n - 1)
  k1 = (k0 + 1) % n
  f = (fk - k0)[..., None]
  col = (1 - f) * wheel[k0] + f * wheel[k1]
  r = rad[..., None]
  col = np.where(r <= 1, 1 - r * (1 - col), col * 0.75)
  return np.floor(255 * np.clip(col, 0, 1)).astype(np.uint8)


def jet(x: np.ndarray) -> np.ndarray:
  """Values in [0, 1] -> uint8 RGB with the 'jet' map (dark blue, blue, cyan, yellow, red, dark red)."""
  x = np.clip(np.asarray(x, np.float64), 0, 1)
  pts = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
  out = np.stack([np.interp(x, pts, [0, 0, 0, 1, 1, 0.5]), np.interp(x, pts, [0, 0, 1, 1, 0, 0]),
                  np.interp(x, pts, [0.5, 1, 1, 0, 0, 0])], -1)
  return (255 * out).astype(np.uint8)


def diverging(x: np.ndarray) -> np.ndarray:
  """Values in [-1, 1] -> uint8 RGB: blue (negative), white (0), red (positive)."""
  x = np.clip(np.asarray(x, np.float64), -1, 1)[..., None]
  blue, white, red = np.array([0.13, 0.4, 0.8]), np.ones(3), np.array([0.8, 0.1, 0.1])
  col = np.where(x < 0, white + (-x) * (blue - white), white + x * (red - white))
  return (255 * col).astype(np.uint8)


def stretch(img: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
  """A float image -> uint8 by mapping its ``low``-``high`` percentiles to 0-255."""
  img = np.asarray(img, np.float64)
  lo, hi = np.percentile(img, [low, high])
  if hi - lo < 1e-12:
    return np.full(img.shape, 128, np.uint8)
  return (255 * np.clip((img - lo) / (hi - lo), 0, 1)).astype(np.uint8)


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """A 2D float map to ``(H, W)`` (bilinear)."""
  from PIL import Image
  return np.asarray(Image.fromarray(np.asarray(m, np.float32), mode="F").resize(size[::-1], Image.BILINEAR))


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """``frame`` uint8 (H, W, 3) blended with ``jet(heat)``, heat in [0, 1] of any size."""
  heat = resize_map(heat, frame.shape[:2]) if heat.shape != frame.shape[:2] else heat
  return ((1 - alpha) * frame + alpha * jet(heat)).astype(np.uint8)


# =============================================================================================== layout
def _text(img: np.ndarray, xy, text: str, fill=(0, 0, 0)) -> np.ndarray:
  from PIL import Image, ImageDraw
  im = Image.fromarray(img)
  ImageDraw.Draw(im).text(xy, text, fill=fill)
  return np.array(im)


def montage(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str] = (), pad: int = 4,
            min_cell: int = 96) -> np.ndarray:
  """Rows of uint8 images -> one white-background image, a caption line above each row.

  Images smaller than ``min_cell`` pixels are enlarged (nearest neighbour) so kernels stay visible.
  """
  from PIL import Image
  prepared = []
  for row in rows:
    out = []
    for im in row:
      im = np.asarray(im)
      if im.ndim == 2:
        im = np.repeat(im[..., None], 3, -1)
      f = max(1, int(math.ceil(min_cell / max(im.shape[:2]))))
      if f > 1:
        im = np.asarray(Image.fromarray(im).resize((im.shape[1] * f, im.shape[0] * f), Image.NEAREST))
      out.append(im)
    prepared.append(out)
  cap = 14 if captions else 0
  width = max(sum(im.shape[1] for im in row) + pad * (len(row) + 1) for row in prepared)
  height = sum(max(im.shape[0] for im in row) + cap + pad for row in prepared) + pad
  canvas = np.full((height, width, 3), 255, np.uint8)
  y = pad
  for i, row in enumerate(prepared):
    if captions and i < len(captions):
      canvas = _text(canvas, (pad, y), captions[i])
    y += cap
    x = pad
    for im in row:
      canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
      x += im.shape[1] + pad
    y += max(im.shape[0] for im in row) + pad
  return canvas


def save_png(img: np.ndarray, path: str) -> str:
  from PIL import Image
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  Image.fromarray(np.asarray(img, np.uint8)).save(path, format="PNG")
  return path


# ============================================================================================ model side
def load_model(config, workdir: Optional[str] = None, step: Optional[int] = None):
  """``(model, variables, trained)``: the checkpoint's variables, or the initial ones without a workdir."""
  from vidjax.models import registry
  from vidjax.tools import convert
  model = registry.build(config.model)
  if workdir:
    from vidjax.train import checkpoint
    variables, _ = checkpoint.restore_variables(workdir, step)
    return model, {k: v for k, v in variables.items() if v}, True
  return model, {k: v for k, v in convert.initial_variables(model, config).items() if v}, False


def normalise(clip: np.ndarray, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> np.ndarray:
  """uint8 ``(..., 3)`` -> float32 ``(x / 255 - mean) / std`` (vidjax.train.step.normalize)."""
  return ((np.asarray(clip, np.float32) / 255.0 - np.asarray(mean, np.float32)) /
          np.asarray(std, np.float32)).astype(np.float32)


def capture(model, variables, video, predicate: Callable[[Any], bool]) -> list:
  """``[(module path, output)]`` of the modules for which ``predicate(module)`` holds, in call order."""
  import flax.linen as nn
  import jax
  paths: list = []

  def run(v, x):
    outs = []
    del paths[:]

    def icpt(next_fun, args, kwargs, ctx):
      out = next_fun(*args, **kwargs)
      if ctx.method_name == "__call__" and predicate(ctx.module):
        paths.append(ctx.module.path)
        outs.append(out)
      return out
    with nn.intercept_methods(icpt):
      model.apply(v, x, train=False)
    return outs

  outs = jax.jit(run)(variables, video)
  return [(tuple(p), np.asarray(o) if hasattr(o, "shape") else o) for p, o in zip(paths, outs)]


def module_calls(model, variables, video) -> list:
  """``[(path, class name, output shape)]`` of every module call (shapes only, nothing runs)."""
  import flax.linen as nn
  import jax
  calls = []

  def run(v, x):
    def icpt(next_fun, args, kwargs, ctx):
      out = next_fun(*args, **kwargs)
      if ctx.method_name == "__call__":
        calls.append((tuple(ctx.module.path), type(ctx.module).__name__, getattr(out, "shape", None)))
      return out
    with nn.intercept_methods(icpt):
      return model.apply(v, x, train=False)

  jax.eval_shape(run, variables, video)
  return calls


# ================================================================================================ clips
def synthetic_clip(index: int = 0, frames: int = 24, size: int = 112, seed: int = 0) -> tuple[np.ndarray, str]:
  """Clip ``index`` of the built-in motion dataset, uint8 ``(frames, size, size, 3)``, and its class."""
  from input_pipeline.sources.synthetic import SyntheticMotion
  src = SyntheticMotion(num_videos=max(index + 1, 8), num_frames=frames, height=size, width=size,
                        num_classes=8, split="test", seed=seed)
  item = src[index]
  return item["video"], src.class_names[item["label"]]


class _Frames:
  def __init__(self, frames):
    self.frames = frames

  def __len__(self):
    return 1

  def label(self, i):
    return -1

  def video_id(self, i):
    return "<clip>"

  def load_clip(self, i, index_fn, frame_fn=None):
    return self.frames[np.asarray(index_fn(len(self.frames)))]


def config_view(frames: np.ndarray, config) -> np.ndarray:
  """The first evaluation view ``(F, crop, crop, 3)`` of decoded frames for ``config``'s model."""
  from input_pipeline import pipeline
  from input_pipeline.sources.base import BadVideoLog
  return pipeline.eval_example(_Frames(np.asarray(frames)), config, 0, BadVideoLog())["video"][0]


def segments_view(frames: np.ndarray, segments: int, length: int, size: int) -> np.ndarray:
  """``segments`` x ``length`` consecutive frames at the segment centres, short side ``size``, centre crop."""
  from input_pipeline import sampling, transforms
  idx = sampling.test_clip_indices(len(frames), segments, length, "segment", 1)[0]
  return transforms.val_views(np.asarray(frames)[idx], size, size, 1)[0]


# ============================================================================================== pictures
def _is_stem_mbpm(m) -> bool:
  from vidjax.modules.bandpass import MotionBandPass
  return isinstance(m, MotionBandPass) and m.three_steps


def mbpm_output(clip: np.ndarray, model=None, variables=None, config=None, sigma: float = 1.1,
                kernel_size: int = 9) -> np.ndarray:
  """Busy frames ``(T, H, W, 3)`` of a uint8 clip of ``3T`` frames: the model's stem MBPM, or an MBPM at
  its initial value (sigma 1.1, k 9) when no model is given."""
  import jax
  import jax.numpy as jnp
  mean, std = (config.data.mean, config.data.std) if config is not None else ((0.485, 0.456, 0.406),
                                                                              (0.229, 0.224, 0.225))
  x = jnp.asarray(normalise(clip, mean, std)[None])
  if model is not None:
    found = capture(model, variables, x, _is_stem_mbpm)
    if not found:
      raise ValueError(f"{type(model).__name__} has no stem MBPM (busy_tsm_resnet / bqn_resnet / bqn_x3d)")
    return np.asarray(found[0][1][0])
  from vidjax.modules.bandpass import MotionBandPass
  m = MotionBandPass(sigma, kernel_size, three_steps=True)
  v = m.init(jax.random.key(0), x)
  return np.asarray(jax.jit(m.apply)(v, x)[0])


def render_mbpm(clip: np.ndarray, busy: np.ndarray, title: str = "") -> np.ndarray:
  t = busy.shape[0]
  frames = [clip[3 * i + 1] for i in range(t)]
  colours = busy_colours(busy)
  return montage([frames, list(colours)], [f"input (middle frame of each segment) {title}".strip(),
                                            "MBPM output (Busy), flow colour coding"])


def dynamic_appearance(clip: np.ndarray, segments: int, model=None, variables=None, config=None) -> np.ndarray:
  """PWTP dynamic appearance ``(S, H, W, 3)`` of a uint8 clip of ``S x T`` frames."""
  import jax
  import jax.numpy as jnp
  from vidjax.modules.projection import PixelWiseTemporalProjection
  mean, std = (config.data.mean, config.data.std) if config is not None else ((0.485, 0.456, 0.406),
                                                                              (0.229, 0.224, 0.225))
  x = normalise(clip, mean, std)
  if model is not None:
    found = capture(model, variables, jnp.asarray(x[None]),
                    lambda m: isinstance(m, PixelWiseTemporalProjection))
    if not found:
      raise ValueError(f"{type(model).__name__} has no PWTP module (a DAN with representation='pwtp')")
    return np.asarray(found[0][1])
  f = x.shape[0]
  seg = jnp.asarray(x.reshape(segments, f // segments, *x.shape[1:]))
  m = PixelWiseTemporalProjection()
  v = m.init(jax.random.key(0), seg)
  return np.asarray(jax.jit(lambda v, s: m.apply(v, s, mutable=["losses"])[0])(v, seg))


def render_dynamic_appearance(clip: np.ndarray, da: np.ndarray) -> np.ndarray:
  s = da.shape[0]
  segs = np.asarray(clip, np.float64).reshape(s, -1, *clip.shape[1:])
  return montage([[segs[i].mean(0).astype(np.uint8) for i in range(s)], [stretch(d) for d in da]],
                 ["frame average of each segment", "dynamic appearance (PWTP, Eq. 3.12)"])


def squeezed_images(clip: np.ndarray, num_squeezed: int = 2, model=None, variables=None,
                    config=None) -> np.ndarray:
  """TSP squeezed images ``(D, H, W, 3)`` of a uint8 clip of K frames (the first TSP of the model)."""
  import jax
  import jax.numpy as jnp
  from vidjax.modules.projection import TemporalSqueezePooling
  mean, std = (config.data.mean, config.data.std) if config is not None else ((0.485, 0.456, 0.406),
                                                                              (0.229, 0.224, 0.225))
  x = jnp.asarray(normalise(clip, mean, std)[None])
  if model is not None:
    found = capture(model, variables, x, lambda m: isinstance(m, TemporalSqueezePooling))
    if not found:
      raise ValueError(f"{type(model).__name__} has no TSP layer (TeSNet, or DAN with 'squeezed_image')")
    return np.asarray(found[0][1][0])
  m = TemporalSqueezePooling(num_squeezed)
  v = m.init(jax.random.key(0), x)
  return np.asarray(jax.jit(lambda v, s: m.apply(v, s, mutable=["losses"])[0])(v, x)[0])


def render_squeezed(clip: np.ndarray, squeezed: np.ndarray) -> np.ndarray:
  return montage([list(clip), [stretch(s) for s in squeezed]],
                 [f"input clip (K = {len(clip)})", f"squeezed images (TSP, D = {len(squeezed)})"])


def attention_grid(model, variables, video, stage: int, block: int) -> tuple[int, int, int]:
  """``(T, h, w)`` of the features the attention block after ``(stage, block)`` sees."""
  for path, cls, shape in module_calls(model, variables, video):
    if path == (f"layer{stage}_{block}_attn",):
      h, w = shape[-3], shape[-2]
      return (video.shape[1] if len(shape) == 4 else shape[1]), h, w
  raise ValueError(f"no attention block after residual block ({stage}, {block})")


def render_attention(clip: np.ndarray, maps: np.ndarray, queries: Sequence[Sequence[int]],
                     kind: str = "RNL") -> np.ndarray:
  """``maps (Q, T, h, w)`` over the frames of ``clip (T, H, W, 3)``, one row per reference position."""
  from PIL import Image, ImageDraw
  t, hh, ww = maps.shape[1:]
  frames = np.asarray(clip)[:: max(1, len(clip) // t)][:t]
  rows, caps = [], []
  for q, m in zip(queries, maps):
    m = m / max(float(m.max()), 1e-12)
    row = []
    for i in range(t):
      im = overlay(frames[i], m[i])
      if i == q[0]:
        sy, sx = frames.shape[1] / hh, frames.shape[2] / ww
        pil = Image.fromarray(im)
        box = (q[2] * sx, q[1] * sy, (q[2] + 1) * sx - 1, (q[1] + 1) * sy - 1)
        ImageDraw.Draw(pil).rectangle(box, outline=(255, 255, 255), width=2)
        im = np.array(pil)
      row.append(im)
    rows.append(row)
    caps.append(f"{kind} attention, reference position (t, h, w) = {tuple(int(v) for v in q)}")
  return montage(rows, caps)


def last_block(model, variables, video) -> tuple:
  """Path of the last ``Bottleneck`` / ``X3DBlock`` the model runs (else the last conv)."""
  calls = module_calls(model, variables, video)
  blocks = [p for p, cls, shape in calls if cls in ("Bottleneck", "X3DBlock")]
  if blocks:
    return blocks[-1]
  convs = [p for p, cls, shape in calls if cls == "Conv" and shape is not None and len(shape) >= 4]
  if not convs:
    raise ValueError("no convolutional layer found; pass --layer")
  return convs[-1]


def grad_cam(model, variables, video, target: Optional[int] = None, layer: Optional[Sequence[str]] = None):
  """Grad-CAM of one clip ``video (1, F, H, W, 3)`` (normalised) on ``layer`` (default: last block).

  Returns ``(cams (T, h, w) in [0, 1], raw cams (T, h, w), logits (K,), target)``; ``raw`` is
  ``ReLU(sum_k alpha_k A_k)`` before normalising by its maximum.
  """
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  path = tuple(layer) if layer else last_block(model, variables, video)
  shape = [s for p, _, s in module_calls(model, variables, video) if p == path]
  if not shape:
    raise ValueError(f"no module {'/'.join(path)} in the model")

  def forward(delta, v, x, cls):
    feats = []

    def icpt(next_fun, args, kwargs, ctx):
      out = next_fun(*args, **kwargs)
      if ctx.method_name == "__call__" and tuple(ctx.module.path) == path and not feats:
        feats.append(out)
        out = out + delta
      return out
    with nn.intercept_methods(icpt):
      logits = model.apply(v, x, train=False)
    return logits[0, cls], (logits[0], feats[0])

  zero = jnp.zeros(shape[0], jnp.float32)
  logits = np.asarray(jax.jit(lambda v, x: forward(zero, v, x, 0)[1][0])(variables, video))
  cls = int(np.argmax(logits)) if target is None else int(target)
  grads, (_, feats) = jax.jit(jax.grad(forward, has_aux=True), static_argnums=3)(zero, variables, video, cls)
  a, g = np.asarray(feats, np.float64), np.asarray(grads, np.float64)
  if a.ndim == 5:  # (N, T, h, w, C): one clip
    a, g = a[0], g[0]
  alpha = g.mean(axis=(1, 2))  # (T, C): one weight per channel and frame
  raw = np.maximum(np.einsum("thwc,tc->thw", a, alpha), 0)
  cams = raw / raw.max() if raw.max() > 0 else raw
  return cams, raw, logits, cls


def render_gradcam(clip: np.ndarray, cams: np.ndarray, caption: str) -> np.ndarray:
  t = cams.shape[0]
  frames = np.asarray(clip)[:: max(1, len(clip) // t)][:t]
  return montage([list(frames), [overlay(f, c) for f, c in zip(frames, cams)]], ["input", caption])


def stem_log_kernels(variables) -> Optional[np.ndarray]:
  """The stem MBPM's LoG kernels ``(k, k, C)`` in ``variables`` (``busy_mbpm`` or ``mbpm``), or None."""
  params = variables.get("params", variables)
  for name in ("busy_mbpm", "mbpm"):
    if name in params:
      return np.asarray(params[name]["log"]["kernel"])[:, :, 0, :]
  return None


def render_log_kernels(before: np.ndarray, after: Optional[np.ndarray] = None) -> np.ndarray:
  """Kernels ``(k, k, C)``; each drawn with blue-white-red scaled by its largest magnitude."""
  def row(ks):
    return [diverging(ks[..., c] / max(float(np.abs(ks[..., c]).max()), 1e-12)) for c in range(ks.shape[-1])]
  rows, caps = [row(before)], [f"LoG kernels {before.shape[0]}x{before.shape[1]} before training (init), "
                               f"one per channel"]
  if after is not None:
    rows.append(row(after))
    caps.append("after training")
  return montage(rows, caps, min_cell=160)


def class_names(config) -> tuple[str, ...]:
  """Class names for captions: ``predict.class_names`` when the repository root is importable."""
  try:
    import predict
    return predict.class_names(config)
  except (ImportError, ValueError, OSError):
    return tuple(f"class {i}" for i in range(int(config.model.num_classes)))


# =================================================================================================== CLI
def _parse_queries(spec: str) -> list[tuple[int, int, int]]:
  out = []
  for part in spec.split(";"):
    if part.strip():
      t, h, w = (int(v) for v in part.split(","))
      out.append((t, h, w))
  return out


def _load_frames(args) -> tuple[np.ndarray, str]:
  if args.video:
    from input_pipeline.sources.videos import decode_video
    return decode_video(args.video), os.path.basename(args.video)
  return synthetic_clip(args.synthetic, frames=max(24, args.frames), size=args.size)


def make(kind: str, args, config=None) -> np.ndarray:
  """The picture of ``kind`` for parsed command-line ``args`` (see ``main``)."""
  from vidjax.models import attention_net
  frames, name = _load_frames(args)
  model = variables = None
  trained = False
  if config is not None:
    model, variables, trained = load_model(config, args.workdir, args.step)
  state = "trained" if trained else "at initialisation"
  if kind == "mbpm":
    if config is not None:
      clip = config_view(frames, config)
    else:
      clip = segments_view(frames, args.segments, 3, args.size)
    busy = mbpm_output(clip, model, variables, config)
    return render_mbpm(clip, busy, f"[{name}; MBPM {state if model is not None else 'at initialisation'}]")
  if kind == "dynamic_appearance":
    if config is not None:
      clip = config_view(frames, config)
      segments = int(config.data.num_segments)
    else:
      clip, segments = segments_view(frames, args.segments, 8, args.size), args.segments
    return render_dynamic_appearance(clip, dynamic_appearance(clip, segments, model, variables, config))
  if kind == "squeezed":
    clip = config_view(frames, config) if config is not None else segments_view(frames, 1, 10, args.size)
    return render_squeezed(clip, squeezed_images(clip, 2, model, variables, config))
  if kind == "log_kernels":
    import ml_collections
    cfg = config.model if config is not None else ml_collections.ConfigDict()
    sigma = float(cfg.get("stem_sigma", cfg.get("mbpm_sigma", 1.1)))
    k = int(cfg.get("stem_kernel_size", cfg.get("mbpm_kernel_size", 9)))
    from vidjax.ops.filters import log_kernel
    before = np.repeat(log_kernel(sigma, k)[..., None], 3, -1)
    after = stem_log_kernels(variables) if (trained and variables is not None) else None
    if config is not None and after is None and trained:
      raise ValueError("the checkpoint has no stem MBPM")
    return render_log_kernels(before, after)
  if config is None:
    raise ValueError(f"{kind} needs --config (and --workdir for a trained model)")
  clip = config_view(frames, config)
  x = normalise(clip, config.data.mean, config.data.std)[None]
  if kind == "attention":
    grid = attention_grid(model, variables, x, args.stage, args.block)
    queries = _parse_queries(args.queries) if args.queries else [
        (grid[0] // 2, grid[1] // 2, grid[2] // 2), (grid[0] // 2, 0, 0)]
    maps = np.asarray(attention_net.attention_maps(model, variables, x, args.stage, args.block, queries))[0]
    inserts = {(st, b): f for st, b, f in getattr(model, "insert", ())}
    kinds = [k for k, _ in inserts[(args.stage, args.block)].blocks] if (args.stage, args.block) in inserts else []
    label = "NL" if "nl" in kinds and "rnl" not in kinds else "RNL"
    return render_attention(clip, maps, queries, label)
  if kind == "gradcam":
    layer = tuple(args.layer.split("/")) if args.layer else None
    cams, _, logits, cls = grad_cam(model, variables, x, args.target, layer)
    names = class_names(config)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return render_gradcam(clip, cams, f"Grad-CAM ({state}) for '{names[cls]}' ({p[cls]:.2f})")
  raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")


def _apply_overrides(config, pairs: Sequence[str]):
  for pair in pairs:
    key, _, value = pair[len("--config."):].partition("=")
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    if leaf not in node:
      raise SystemExit(f"error: unknown config key {key!r}")
    node[leaf] = value
  return config


def main(argv: Optional[Sequence[str]] = None) -> str:
  p = argparse.ArgumentParser(prog="python -m vidjax.tools.visualize", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("kind", choices=KINDS)
  p.add_argument("--out", required=True, help="PNG file to write")
  p.add_argument("--video", default="", help="video file (default: a clip of the synthetic dataset)")
  p.add_argument("--synthetic", type=int, default=0, help="index of the synthetic clip")
  p.add_argument("--config", default="", help="configs/X.py[:arg]; --config.a.b=value overrides fields")
  p.add_argument("--workdir", default="", help="checkpoint directory (default: the model at initialisation)")
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--segments", type=int, default=4, help="segments without a config")
  p.add_argument("--size", type=int, default=112, help="crop size without a config")
  p.add_argument("--frames", type=int, default=24, help="frames of the synthetic clip")
  p.add_argument("--stage", type=int, default=2, help="attention: residual stage (1..4 = res2..res5)")
  p.add_argument("--block", type=int, default=0, help="attention: block in the stage")
  p.add_argument("--queries", default="", help="attention: reference positions 't,h,w;t,h,w'")
  p.add_argument("--layer", default="", help="gradcam: module path, e.g. layer4_2 (default: last block)")
  p.add_argument("--target", type=int, default=None, help="gradcam: class index (default: predicted)")
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's restore chatter
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  args = p.parse_args([a for a in argv if not a.startswith("--config.")])
  config = None
  if args.config:
    from vidjax import config_utils
    import jax
    config = _apply_overrides(config_utils.load_config_file(args.config), overrides)
    jax.config.update("jax_threefry_partitionable", bool(config.get("jax_threefry_partitionable", False)))
  elif overrides:
    raise SystemExit("error: --config.* overrides need --config")
  path = save_png(make(args.kind, args, config), args.out)
  print(path)
  return path


if __name__ == "__main__":
  main()
