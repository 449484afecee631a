"""TSM-MobileNetV2 classifier (thesis Table 5.2 backbone; TSN wrapper of the author's ``ops/models.py``).

``config.model`` fields: ``num_classes``, ``dropout`` (TSN dropout before ``fc``), optional ``shift``
(True; False = TSN MobileNetV2), ``shift_div`` (8), ``width_mult`` (1.0; narrow nets for tests only).
Input: normalised clip ``(N, T, H, W, 3)`` (ImageNet mean/std); frames are folded into the batch and the
T logits averaged.
"""
from __future__ import annotations

from vidjax.backbones.mobilenet_v2 import MobileNetV2TSM
from vidjax.models.registry import register


@register("mobilenet_v2_tsm")
def mobilenet_v2_tsm(cfg, dtype):
  return MobileNetV2TSM(
      num_classes=cfg.num_classes,
      width_mult=cfg.get("width_mult", 1.0),
      shift_div=cfg.get("shift_div", 8) if cfg.get("shift", True) else 0,
      dropout=cfg.get("dropout", 0.5),
      dtype=dtype)
