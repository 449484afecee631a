"""From a config to batches: sources, sampling, augmentation, per-host sharding, prefetch.

Training data is a ``grain.MapDataset``: shuffled by the seed (a new permutation every epoch), each
clip sampled and augmented by a generator seeded from ``(seed, global clip position)``, batched, and
indexed by **step**. A resumed run therefore sees exactly the batches an uninterrupted one would,
without checkpointing any iterator state: ``train_batches(config, start_step=k)`` starts at batch k.
With several processes each one reads its own contiguous part of every global batch.

Batches are dicts of host numpy arrays: ``video`` uint8 ``(B, F, H, W, C)``, ``label`` int32 ``(B,)``
(with ``data.crop_resize`` 'step', training clips are crop boxes on a ``(canvas, canvas)`` array plus
``box`` ``(B, 2)`` and ``flip`` ``(B,)``: the step resizes them, see ``train_example``);
evaluation batches add a view axis: ``video`` ``(B, V, F, H, W, C)``, plus ``index`` and ``mask``
(0 for padding of the last batch). Normalisation to float happens on the device.

``C`` follows ``config.data.modality`` (``sources/rawframes.MODALITY_CHANNELS``): 3 for ``'rgb'`` (the
default), 2 for ``'flow'`` (TV-L1 x, y), 5 for ``'rgb+flow'`` (R, G, B, flow x, flow y: the two-stream
TeSNet input, thesis Fig. 3.4). Flow is read from the rawframes folders (``sources/rawframes.FlowFrames``, index
convention there: flow of frame i = pair i, the motion from frame i to i + 1, clamped to the N - 1 pairs);
a clip's RGB and flow share the crop and the flip, and a flipped clip's flow x is inverted (``255 - x``,
TSN's ``GroupRandomHorizontalFlip(is_flow=True)``). ``data.flow_template`` names the flow files
(``flow_{}_{:05d}.jpg``, ``{}_{:05d}.jpg``; "" = detect).
"""
from __future__ import annotations

import logging
from typing import Iterator

import grain
import jax
import numpy as np

from input_pipeline import sampling, transforms
from input_pipeline.sources.base import BAD_VIDEOS, BadVideoError, BadVideoLog

_log = logging.getLogger(__name__)


# The bad-input log (sources/base.py) is re-exported here: the training loop and evaluation report
# ``pipeline.BAD_VIDEOS.count`` / ``.counts()`` in their summaries.
__all__ = ["BadVideoError", "BadVideoLog", "BAD_VIDEOS"]


def modality(config) -> str:
  """``config.data.modality``: 'rgb' (default when the key is absent), 'flow' or 'rgb+flow'."""
  from input_pipeline.sources.rawframes import MODALITY_CHANNELS
  m = config.data.get("modality", "") or "rgb"
  if m not in MODALITY_CHANNELS:
    raise ValueError(f"config.data.modality={m!r}: use one of {', '.join(MODALITY_CHANNELS)}")
  return m


def num_channels(config) -> int:
  from input_pipeline.sources.rawframes import MODALITY_CHANNELS
  return MODALITY_CHANNELS[modality(config)]


def build_source(config, split: str):
  """The ClipSource of ``split`` ('train' or 'val') named by ``config.data.dataset``; with
  ``data.modality`` 'flow' or 'rgb+flow' wrapped in ``FlowFrames`` (frame-folder datasets only)."""
  m = modality(config)
  source = _build_source(config, split)
  if m == "rgb":
    return source
  from input_pipeline.sources.rawframes import FlowFrames
  d = config.data
  if d.dataset in ("synthetic", "videos", "tfds") or d.get("prepared", ""):
    what = f"{d.dataset!r}" + (" with data.prepared" if d.get("prepared", "") else "")
    raise ValueError(f"config.data.modality={m!r} reads optical flow from frame folders (x/y JPEGs next to the "
                     f"RGB frames); config.data.dataset={what} has none: use dataset 'rawframes' or a "
                     f"benchmark (ucf101, hmdb51, ...) with extracted frames")
  return FlowFrames(source, m, d.get("flow_template", "") or None)


def _build_source(config, split: str):
  d = config.data
  if d.dataset == "synthetic":
    from input_pipeline.sources.synthetic import SyntheticMotion
    s = d.synthetic.to_dict()
    num = s.pop("num_train") if split == "train" else s.pop("num_val")
    s.pop("num_train", None), s.pop("num_val", None)
    if "object_size" in s:
      s["object_size"] = tuple(s["object_size"])
    return SyntheticMotion(num_videos=num, split=split, **s)
  if d.get("prepared", "") or d.dataset not in ("rawframes", "videos"):
    from input_pipeline import datasets  # benchmarks (Kinetics-400, SS V1, UCF101, ...) and prepared TFDS
    return datasets.build_source(config, split)
  list_file = d.train_list if split == "train" else d.val_list
  num_classes = config.get("model", {}).get("num_classes", None)
  short = int(d.get("short_side", 0) or 0)
  if d.dataset == "rawframes":
    from input_pipeline.sources.rawframes import RawFrames
    return RawFrames(d.root, list_file, template=d.get("frame_template", "") or None,
                     num_classes=num_classes, short_side=short)
  from input_pipeline.sources.videos import VideoFiles
  return VideoFiles(d.root, list_file, num_classes=num_classes, short_side=short)


def _note_short(source, index: int, num_frames: int, config, bad: BadVideoLog) -> None:
  d = config.data
  need = sampling.frames_needed(d.num_segments, d.frames_per_segment, d.sampling)
  if num_frames < need:
    vid = source.video_id(index)
    bad.note(vid, f"{vid}: {num_frames} frames, a {d.sampling} clip of {d.num_segments} x "
             f"{d.frames_per_segment} needs {need}: frames repeat", "short")


def _load(source, index: int, index_fn, config, bad: BadVideoLog, frame_fn=None):
  seen = []

  def fn(n):
    seen.append(n)
    return index_fn(n)

  frames = source.load_clip(index, fn) if frame_fn is None else source.load_clip(index, fn, frame_fn)
  if seen:
    _note_short(source, index, seen[0], config, bad)
  return frames


def _read_clip(source, index: int, index_fn, bad: BadVideoLog, config=None, make_frame_fn=None):
  """Loads ``index``; an unusable video is logged once and replaced by the next usable one.

  ``make_frame_fn()`` (optional) gives the per-frame transform of one attempt (``transforms.ClipAugment``).
  """
  n = len(source)
  for k in range(min(n, 16)):
    i = (index + k) % n
    try:
      if config is None:
        return source.load_clip(i, index_fn), source.label(i)
      frame_fn = make_frame_fn() if make_frame_fn is not None else None
      return _load(source, i, index_fn, config, bad, frame_fn), source.label(i)
    except BadVideoError as e:
      bad.report(e)
  raise RuntimeError(f"16 consecutive unusable videos from index {index}; see the warnings above")


CROP_RESIZE = ("auto", "step", "host")


def crop_resize_in_step(config) -> bool:
  """``config.data.crop_resize``: 'step', 'host', or 'auto' (the step on GPU/TPU, the host on CPU)."""
  where = config.data.get("crop_resize", "host")
  if where not in CROP_RESIZE:
    raise ValueError(f"config.data.crop_resize={where!r}: use 'step' (resize the crop in the train step), "
                     f"'host' (in the loader) or 'auto' (the step on GPU/TPU, the loader on CPU)")
  return where == "step" or (where == "auto" and jax.default_backend() != "cpu")


def canvas_size(config) -> int:
  """The side of the array a training clip travels in when the crop is resized in the step (0: not).

  ``config.data.canvas_size`` or, when 0, ``max(scale_size, crop_size, short_side)``: the largest
  multi-scale box is the frame's short side, so frames stored at short side ``scale_size`` (``prepare
  --short_side``) or read at ``data.short_side`` always fit. Boxes of larger frames are finished on the
  host (slower, same pixels).
  """
  d = config.data
  if not crop_resize_in_step(config):
    return 0
  return int(d.get("canvas_size", 0) or max(d.scale_size, d.crop_size, int(d.get("short_side", 0) or 0)))


_FALLBACK_NOTED = []


def _note_host_resize(source, index: int, canvas: int) -> None:
  if not _FALLBACK_NOTED:
    _FALLBACK_NOTED.append(True)
    _log.info("%s: its crop boxes are larger than the %d^2 canvas of data.crop_resize='step', so they are "
              "resized on the host (slower); store frames at short side %d (prepare --short_side, "
              "data.short_side) or raise data.canvas_size", source.video_id(index), canvas, canvas)


def train_example(source, config, index: int, rng: np.random.Generator, bad: BadVideoLog = BAD_VIDEOS,
                  fused: bool = True):
  """One augmented training clip. Sources with ``fused_frames`` crop, resize and flip each frame as it
  is decoded (``transforms.ClipAugment``); the result equals ``train_augment`` of the decoded clip.

  With ``config.data.crop_resize`` 'step' the clip is left half done: ``video`` holds the crop boxes on a
  ``canvas_size`` canvas, ``box`` their ``(h, w)`` and ``flip`` the mirror draw; the train step finishes
  it (``vidjax.ops.resize.crop_resize_flip``) to the same pixels, bit for bit.
  """
  d = config.data
  index_fn = lambda f: sampling.clip_indices(f, d.num_segments, d.frames_per_segment, d.sampling, rng)
  m = modality(config)
  flow_x = {"rgb": None, "flow": 0, "rgb+flow": 3}[m]  # the channel a flip inverts
  canvas = canvas_size(config)
  if fused and getattr(source, "fused_frames", False):
    augs = []

    def make():
      augs.append(transforms.ClipAugment(d.crop_size, rng, tuple(d.multi_scale), d.max_distort, d.flip, canvas))
      return augs[-1]

    video, label = _read_clip(source, index, index_fn, bad, config, make)
    aug = augs[-1]  # the last attempt made the clip
    box_hw = (aug.box[3], aug.box[2]) if canvas and aug.on_device else None
    if flow_x is not None and aug.mirror:  # boxes maybe already on the canvas (ClipAugment.stack)
      video = transforms.invert_flow_x(video, flow_x, box_hw)
    if not canvas:
      return {"video": np.ascontiguousarray(video), "label": np.int32(label)}
    if not aug.on_device:
      _note_host_resize(source, index, canvas)
    video, box, flip = transforms.device_clip(video, canvas, d.crop_size, aug.on_device, aug.mirror, box_hw)
    return {"video": video, "box": box, "flip": flip, "label": np.int32(label)}
  frames, label = _read_clip(source, index, index_fn, bad, config)
  if canvas:
    video, box, flip = transforms.train_crop(frames, d.crop_size, rng, canvas, tuple(d.multi_scale), d.max_distort,
                                             d.flip, flow_x=flow_x)
    return {"video": video, "box": box, "flip": flip, "label": np.int32(label)}
  video = transforms.train_augment(frames, d.crop_size, rng, tuple(d.multi_scale), d.max_distort, d.flip,
                                   flow_x=flow_x)
  return {"video": video, "label": np.int32(label)}


def finish_on_host(batch: dict, config) -> dict:
  """A ``crop_resize='step'`` batch finished by the step's own resize (``crop_resize_flip``, outside the
  step): for looking at training batches (tools, notebooks, tests). Other batches are returned as they
  are."""
  if "box" not in batch:
    return batch
  from vidjax.ops.resize import crop_resize_flip
  out = {k: v for k, v in batch.items() if k not in ("box", "flip")}
  out["video"] = np.asarray(crop_resize_flip(batch["video"], batch["box"], batch["flip"], config.data.crop_size))
  return out


def eval_example(source, config, index: int, bad: BadVideoLog = BAD_VIDEOS):
  """All test views of one video: ``(crops * clips, F, crop, crop, C)``."""
  d = config.data
  index_fn = lambda f: sampling.test_clip_indices(f, d.num_segments, d.frames_per_segment, d.sampling,
                                                  d.test_clips)
  try:
    frames, label = _load(source, index, index_fn, config, bad), source.label(index)
  except BadVideoError as e:
    bad.report(e)  # counted; the video is left out of the metrics
    return empty_eval_example(config, index)
  clips, fpc = frames.shape[0], frames.shape[1]
  views = transforms.val_views(frames.reshape((-1,) + frames.shape[2:]), d.crop_size, d.scale_size,
                               d.test_crops)  # (crops, clips * F, h, w, C)
  views = views.reshape((views.shape[0], clips, fpc) + views.shape[2:]).reshape((-1, fpc) + views.shape[2:])
  return {"video": views, "label": np.int32(label), "index": np.int32(index), "mask": np.int32(1)}


def empty_eval_example(config, index: int = -1):
  """A masked-out placeholder (padding, or a video that could not be read)."""
  d = config.data
  shape = (d.test_crops * d.test_clips, d.num_segments * d.frames_per_segment, d.crop_size, d.crop_size,
           num_channels(config))
  return {"video": np.zeros(shape, np.uint8), "label": np.int32(-1), "index": np.int32(index),
          "mask": np.int32(0)}


def host_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise ValueError(f"batch_size {global_batch} is not divisible by the {jax.process_count()} processes")
  return global_batch // jax.process_count()


def steps_per_epoch(config, source) -> int:
  if config.optim.get("steps_per_epoch", -1) > 0:
    return int(config.optim.steps_per_epoch)
  spe = len(source) // config.optim.batch_size
  if spe < 1:
    raise ValueError(f"the training split has {len(source)} videos, fewer than one batch of "
                     f"{config.optim.batch_size}: lower --config.optim.batch_size")
  return spe


def train_dataset(config, source, num_steps: int) -> grain.MapDataset:
  """``ds[step]`` is this host's part of the global batch of ``step``.

  Global clip position ``g = step * B + j`` reads video ``order[g]`` of the seeded per-epoch
  permutation and augments it with ``default_rng([seed, g])``; process p takes ``j`` in
  ``[p * B / P, (p + 1) * B / P)``, so no host reads another host's clips.
  """
  b = config.optim.batch_size
  hb = host_batch_size(b)
  p = jax.process_index()
  epochs = -(-num_steps * b // len(source)) + 1
  order = grain.MapDataset.range(len(source)).shuffle(seed=config.seed).repeat(epochs)

  def load(q):
    g = (q // hb) * b + p * hb + q % hb
    rng = np.random.default_rng([config.seed, 1, g])
    return train_example(source, config, int(order[g]), rng)

  return grain.MapDataset.range(num_steps * hb).map(load).batch(hb, drop_remainder=True)


def train_batches(config, source, start_step: int, num_steps: int) -> Iterator[dict]:
  """Batches of steps ``start_step .. num_steps - 1`` with background reading threads."""
  ds = train_dataset(config, source, num_steps)[start_step:num_steps]
  opts = grain.ReadOptions(num_threads=max(1, config.data.num_workers),
                           prefetch_buffer_size=max(1, config.data.prefetch))
  return iter(ds.to_iter_dataset(opts))


def eval_batches(config, source, batch_size: int) -> Iterator[dict]:
  """This host's evaluation batches (videos of all hosts padded to equal batch counts; mask 0 = pad)."""
  n, pc, p = len(source), jax.process_count(), jax.process_index()
  hb = host_batch_size(batch_size)
  per_host = -(-n // pc)
  num_batches = -(-per_host // hb)
  mine = list(range(p * per_host, min(n, (p + 1) * per_host)))
  ds = grain.MapDataset.source(mine + [-1] * (num_batches * hb - len(mine)))

  ds = ds.map(lambda i: empty_eval_example(config) if i < 0 else eval_example(source, config, int(i)))
  ds = ds.batch(hb, drop_remainder=True)
  opts = grain.ReadOptions(num_threads=max(1, config.data.num_workers), prefetch_buffer_size=2)
  return iter(ds.to_iter_dataset(opts))
