"""Helpers that read a config: the model's input shape and channels, the compute dtype."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def frames_per_clip(config) -> int:
  return int(config.data.num_segments) * int(config.data.frames_per_segment)


def modality(config) -> str:
  """``config.data.modality`` ('rgb' when absent, 'flow', 'rgb+flow'); a ``config.model.modality`` (TeSNet)
  must agree with it, since the model's streams split the channels the pipeline delivers."""
  from input_pipeline.sources.rawframes import MODALITY_CHANNELS
  data = config.data.get("modality", "") or "rgb"
  model = config.get("model", {}).get("modality", "") or ""
  if data not in MODALITY_CHANNELS:
    raise ValueError(f"config.data.modality={data!r}: use one of {', '.join(MODALITY_CHANNELS)}")
  if model and model != data:
    raise ValueError(f"config.model.modality={model!r} but config.data.modality={data!r}: set both "
                     f"(--config.data.modality={model})")
  return data


def input_channels(config) -> int:
  """3 (RGB), 2 (optical flow x, y) or 5 (RGB + flow) by ``config.data.modality``."""
  from input_pipeline.sources.rawframes import MODALITY_CHANNELS
  return MODALITY_CHANNELS[modality(config)]


def input_shape(config, batch: int = 1) -> tuple[int, int, int, int, int]:
  """``(N, F, H, W, C)`` of the clips the model is fed (F = segments x frames per segment, C =
  ``input_channels``)."""
  s = int(config.data.crop_size)
  return (batch, frames_per_clip(config), s, s, input_channels(config))


FLOW_MEAN = 0.5  # JPEG 128 (of 255) is zero motion


def channel_stats(mean, std, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel ``(mean, std)`` for an input of ``channels`` channels, in [0, 1] units.

  ``mean`` / ``std`` give one entry per channel (3 RGB, 2 flow x/y, 5 RGB then flow x/y), or the 3 RGB
  entries for a flow input (2 or 5 channels): the flow entries are then derived as the reference
  derives them for its ``Flow`` modality (busy-quiet-net / TSM ``ops/models.py``: ``input_mean = [0.5]``,
  ``input_std = [np.mean(rgb_std)]``): mean 0.5 (zero motion), std the mean of the RGB stds. With the
  ImageNet std that is 0.226; with Inception's 0.5 the flow maps to [-1, 1] as the RGB does.
  """
  mean, std = tuple(float(m) for m in np.ravel(mean)), tuple(float(s) for s in np.ravel(std))
  if len(mean) == 1 and len(std) == 1:  # one value for every channel
    return mean * channels, std * channels
  if len(mean) != len(std):
    raise ValueError(f"config.data.mean has {len(mean)} entries and data.std {len(std)}: give one per channel")
  if len(mean) == channels:
    return mean, std
  if len(mean) == 3 and channels in (2, 5):
    flow_mean, flow_std = (FLOW_MEAN,) * 2, (sum(std) / 3.0,) * 2
    if channels == 2:
      return flow_mean, flow_std
    return mean + flow_mean, std + flow_std
  raise ValueError(f"config.data.mean/std have {len(mean)} entries for a {channels}-channel input: give "
                   f"{channels} (one per channel), or 3 RGB ones for a flow input (flow stats derived)")


def compute_dtype(config):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[config.get("dtype", "float32")]


def _flat_keys(cfg, prefix=""):
  import ml_collections
  keys = set()
  for k in cfg.keys():
    v = cfg[k]
    path = f"{prefix}{k}"
    keys.add(path)
    if isinstance(v, ml_collections.ConfigDict):
      keys |= _flat_keys(v, path + ".")
  return keys


def load_config_file(spec: str):
  """``configs/x.py[:arg]`` -> the ConfigDict its ``get_config`` returns."""
  import importlib.util
  import os
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist (see configs/ for the experiments)")
  module_spec = importlib.util.spec_from_file_location("_vidjax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def check_overrides(argv, flag: str = "config") -> None:
  """Exits with a clear message when ``--config.a.b=v`` names a key the config does not have.

  Called before absl parses the flags (ml_collections would raise a bare ``AttributeError``).
  """
  import difflib
  import sys
  spec = None
  for i, a in enumerate(argv):
    if a.startswith(f"--{flag}="):
      spec = a.split("=", 1)[1]
    elif a == f"--{flag}" and i + 1 < len(argv):
      spec = argv[i + 1]
  if spec is None:
    return
  try:
    keys = _flat_keys(load_config_file(spec))
  except FileNotFoundError as e:
    sys.exit(f"error: {e}")
  for a in argv:
    if not a.startswith(f"--{flag}."):
      continue
    key = a[len(f"--{flag}."):].split("=", 1)[0]
    if key not in keys:
      parent = key.rpartition(".")[0]
      siblings = sorted(k for k in keys if k.rpartition(".")[0] == parent)
      close = difflib.get_close_matches(key, sorted(keys), n=3, cutoff=0.5)
      hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
      sys.exit(f"error: unknown config key {key!r} in {a!r} ({spec} has no such field).{hint}\n"
               f"Keys {('under ' + repr(parent)) if parent else 'at the top'}: {', '.join(siblings)}")
