"""Helpers that read a config: the model's input shape, the compute dtype."""
from __future__ import annotations

import jax.numpy as jnp


def frames_per_clip(config) -> int:
  return int(config.data.num_segments) * int(config.data.frames_per_segment)


def input_shape(config, batch: int = 1) -> tuple[int, int, int, int, int]:
  """``(N, F, H, W, 3)`` of the clips the model is fed (F = segments x frames per segment)."""
  s = int(config.data.crop_size)
  return (batch, frames_per_clip(config), s, s, 3)


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
