"""X3D classifiers (the X3D-XS / X3D-M baselines of thesis Tables 3.6, 5.2, 5.9, 5.10).

``config.model`` fields:
  * ``variant``: 'xs' | 's' | 'm' | 'l' (depth factor 2.2 for xs/s/m, 5.0 for l; REFERENCE.md section 8).
  * ``num_classes``, ``dropout`` (before the fc; 0.5 in the thesis' X3D rows).
  * optional ``head_pool``: 'global' (default; average over the whole final map, = pytorchvideo at the
    built input size and BQN-X3D's ``AdaptiveAvgPool3d(1)``) or 'fixed' (pytorchvideo's
    ``AvgPool3d((T, ceil(S/32), ceil(S/32)), stride 1)`` built for ``pool_clip_length`` x ``pool_crop_size``,
    default the variant's canonical input; a sliding window at larger test inputs).
  * optional ``width_factor`` (2.0), ``bottleneck_factor`` (2.25), ``depth_factor`` (from the variant),
    ``head_dim_out`` (2048): only for narrow test/demo networks.
The model takes the normalised clip ``(N, F, H, W, 3)`` (mean/std 0.45/0.225) as a 3D input: F = T.
"""
from __future__ import annotations

from vidjax.backbones.x3d import VARIANTS, X3D, x3d_head_pool_size
from vidjax.models.registry import register


@register("x3d")
def x3d(cfg, dtype):
  variant = cfg.get("variant", "m")
  if variant not in VARIANTS:
    raise ValueError(f"config.model.variant must be one of {sorted(VARIANTS)}, got {variant!r}")
  pool = cfg.get("head_pool", "global")
  if pool == "global":
    head_pool = None
  elif pool == "fixed":
    head_pool = x3d_head_pool_size(cfg.get("pool_clip_length", VARIANTS[variant]["clip_length"]),
                                   cfg.get("pool_crop_size", VARIANTS[variant]["crop_size"]))
  else:
    raise ValueError(f"config.model.head_pool must be 'global' or 'fixed', got {pool!r}")
  return X3D(
      num_classes=cfg.num_classes,
      variant=variant,
      dropout=cfg.get("dropout", 0.5),
      width_factor=cfg.get("width_factor", 2.0),
      depth_factor=cfg.get("depth_factor", None),
      bottleneck_factor=cfg.get("bottleneck_factor", 2.25),
      head_pool=head_pool,
      head_dim_out=cfg.get("head_dim_out", 2048),
      dtype=dtype)
