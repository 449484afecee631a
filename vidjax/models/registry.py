"""Name -> model constructor. Every thesis ablation is a config field, never a code fork.

A constructor takes the ``config.model`` ConfigDict (plus the global ``dtype``) and returns a
``flax.linen.Module`` called as ``model.apply(variables, video, train=...)`` on a normalised float clip
``(N, F, H, W, 3)`` (F = segments x frames per segment) and returning ``(N, num_classes)`` logits.
Modules may ``sow`` extra losses into the ``'losses'`` collection (e.g. TSP's ``l_proj``).
"""
from __future__ import annotations

import importlib
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Modules that register models when imported (kept lazy so that importing vidjax stays cheap).
_MODEL_MODULES = (
    "vidjax.models.tsm",
    "vidjax.models.x3d",
    "vidjax.models.mobilenet",
    "vidjax.models.bqn",
    "vidjax.models.attention_net",
    "vidjax.models.tesnet",
    "vidjax.models.dan",
)


def register(name: str):
  def wrap(fn):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn
  return wrap


def _load_all():
  for mod in _MODEL_MODULES:
    try:
      importlib.import_module(mod)
    except ModuleNotFoundError as e:
      if e.name != mod:  # a real import error inside an existing module
        raise


def names() -> list[str]:
  _load_all()
  return sorted(_REGISTRY)


def build(model_config, dtype=jnp.float32, remat: bool = False) -> nn.Module:
  """The model ``model_config.name`` computing in ``dtype``; ``remat``: see ``with_remat``."""
  _load_all()
  name = model_config.name
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; config.model.name must be one of {sorted(_REGISTRY)}")
  module = _REGISTRY[name](model_config, dtype=dtype)
  if remat:
    module = with_remat(module, name)
  return module


def with_remat(module: nn.Module, name: str = "") -> nn.Module:
  """Turns on rematerialisation of the residual blocks (``remat`` field) in ``module`` or its sub-modules.

  Each residual block is wrapped in ``flax.linen.remat``: its activations are recomputed in the backward
  pass instead of being kept, which trades ~1/3 more compute for the activation memory of the blocks.
  """
  import dataclasses
  if "remat" in {f.name for f in dataclasses.fields(module)}:
    return module.clone(remat=True)
  changes = {}
  for f in dataclasses.fields(module):
    value = getattr(module, f.name, None)
    if isinstance(value, nn.Module) and "remat" in {g.name for g in dataclasses.fields(value)}:
      changes[f.name] = value.clone(remat=True)
  if not changes:
    raise ValueError(f"config.model.remat=True: model {name or type(module).__name__!r} has no residual blocks "
                     "to rematerialise (supported: TSM-ResNet, RNL/NL/CPA-TSM, BQN, X3D, DAN backbones)")
  return module.clone(**changes)
