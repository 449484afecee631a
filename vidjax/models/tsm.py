"""TSM-ResNet / TSN-ResNet classifiers (the chapter 4 baseline, Table 4.6)."""
from __future__ import annotations

from vidjax.backbones.resnet import TSMResNet
from vidjax.models.registry import register


@register("tsm_resnet")
def tsm_resnet(cfg, dtype):
  """``cfg``: num_classes, depth (50/101), width, dropout, shift (bool), optional stage_sizes."""
  return TSMResNet(
      num_classes=cfg.num_classes,
      depth=cfg.get("depth", 50),
      width=cfg.get("width", 1.0),
      stage_sizes=tuple(cfg.stage_sizes) if cfg.get("stage_sizes") else None,
      shift_div=cfg.get("shift_div", 8) if cfg.get("shift", True) else 0,
      dropout=cfg.get("dropout", 0.5),
      zero_init_residual=cfg.get("zero_init_residual", False),
      dtype=dtype)
