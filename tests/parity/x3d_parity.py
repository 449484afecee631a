"""Parity of ``vidjax.backbones.x3d.X3D`` with pytorchvideo's ``create_x3d`` on the same weights.

Not part of the pytest suite (needs torch + pytorchvideo). Two steps, two interpreters:

  1. torch side (a venv with torch 2.13.0 CPU, pytorchvideo 0.1.5, fvcore):
       python tests/parity/x3d_parity.py torch /tmp/x3d_parity.npz
     builds X3D-XS with pytorchvideo (``create_x3d`` with the author's settings: width 2.0, depth 2.2,
     bottleneck 2.25, no head activation, dropout 0) for a tiny clip, randomises every BN (gamma, beta,
     running stats, including the zero-initialised ``norm_c``) and the SE / fc biases so that no branch is
     trivially zero, and saves weights, inputs and outputs (eval mode; train mode = batch statistics;
     and a sliding-window head case: built for 4x64^2, run at 4x96^2).
  2. jax side (the vidjax venv):
       python tests/parity/x3d_parity.py jax /tmp/x3d_parity.npz
     converts the state_dict to Flax variables, runs vidjax's X3D and prints the differences.

pytorchvideo imports ``torchvision.ops.RoIAlign`` at import time (for detection heads); when torchvision
cannot be loaded (no CPU wheel of it here), a stub module stands in for it: X3D does not use it.
Procedure and results: tests/parity/X3D.md.
"""
from __future__ import annotations

import sys

import numpy as np

CLIP, CROP, CROP_BIG, CLASSES, BATCH = 4, 64, 96, 10, 2


# ----------------------------------------------------------------------------------------------- torch
def _import_create_x3d():
  try:
    import torchvision.ops  # noqa: F401
  except Exception:  # pylint: disable=broad-except
    import types
    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

    class RoIAlign:  # placeholder: only pytorchvideo's detection head uses it
      pass

    ops.RoIAlign = RoIAlign
    tv.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
  from pytorchvideo.models.x3d import create_x3d
  return create_x3d


def torch_side(path):
  import torch
  create_x3d = _import_create_x3d()
  torch.manual_seed(0)
  model = create_x3d(input_clip_length=CLIP, input_crop_size=CROP, model_num_class=CLASSES,
                     dropout_rate=0.0, width_factor=2.0, depth_factor=2.2, bottleneck_factor=2.25,
                     head_activation=None)
  g = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm3d):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.8 + 0.6)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.8 + 0.6)
      elif isinstance(m, (torch.nn.Conv3d, torch.nn.Linear)) and m.bias is not None:
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
  x = torch.randn(BATCH, 3, CLIP, CROP, CROP, generator=g)
  x_big = torch.randn(BATCH, 3, CLIP, CROP_BIG, CROP_BIG, generator=g)
  feats = {}
  model.blocks[0].register_forward_hook(lambda m, i, o: feats.__setitem__("stem", o.detach().clone()))
  model.blocks[4].register_forward_hook(lambda m, i, o: feats.__setitem__("stage4", o.detach().clone()))
  # The weights as the eval outputs see them (a train-mode forward updates the running statistics).
  sd = {f"sd/{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")}
  out = {}
  model.eval()
  with torch.no_grad():
    out["eval"] = model(x).numpy()
    out["stem"] = feats["stem"].numpy()
    out["stage4"] = feats["stage4"].numpy()
    out["eval_big"] = model(x_big).numpy()  # fixed (4, 2, 2) pool on a 3x3 map: sliding window
    model.train()
    out["train"] = model(x).numpy()  # batch statistics (dropout is 0)
    out["stem_mean_after"] = model.blocks[0].norm.running_mean.numpy().copy()
    out["stem_var_after"] = model.blocks[0].norm.running_var.numpy().copy()
  np.savez(path, x=x.numpy(), x_big=x_big.numpy(), **{f"out/{k}": v for k, v in out.items()}, **sd)
  print(f"saved {path}: {len(sd)} tensors; torch {torch.__version__}")


# ------------------------------------------------------------------------------------------------- jax
def _flax_name(torch_key: str):
  """torch state_dict key -> (flax module path tuple, torch leaf name)."""
  parts = torch_key.split(".")
  leaf = parts[-1]
  mod = parts[:-1]
  if mod[:2] == ["blocks", "0"]:
    sub = {"conv.conv_t": "conv_xy", "conv.conv_xy": "conv_t", "norm": "norm"}[".".join(mod[2:])]
    path = ("stem", sub)
  elif mod[:2] == ["blocks", "5"]:
    sub = {"pool.pre_conv": "conv_pre", "pool.pre_norm": "norm_pre", "pool.post_conv": "conv_post",
           "proj": "fc"}[".".join(mod[2:])]
    path = ("head", sub)
  else:
    stage, block = int(mod[1]), int(mod[3])
    rest = ".".join(mod[4:])
    sub = {"branch1_conv": ("shortcut_conv",), "branch1_norm": ("shortcut_norm",),
           "branch2.conv_a": ("conv_a",), "branch2.norm_a": ("norm_a",), "branch2.conv_b": ("conv_b",),
           "branch2.norm_b.0": ("norm_b",), "branch2.norm_b.1.block.0": ("se", "reduce"),
           "branch2.norm_b.1.block.2": ("se", "expand"), "branch2.conv_c": ("conv_c",),
           "branch2.norm_c": ("norm_c",)}[rest]
    path = (f"stage{stage}_{block}",) + sub
  return path, leaf


def _convert(sd):
  params, stats = {}, {}

  def put(tree, path, value):
    for p in path[:-1]:
      tree = tree.setdefault(p, {})
    tree[path[-1]] = value

  for key, v in sd.items():
    path, leaf = _flax_name(key)
    is_norm = "norm" in path[-1]
    if leaf == "weight" and is_norm:
      put(params, path + ("scale",), v)
    elif leaf == "bias":
      put(params, path + ("bias",), v)
    elif leaf == "running_mean":
      put(stats, path + ("mean",), v)
    elif leaf == "running_var":
      put(stats, path + ("var",), v)
    elif leaf == "weight" and v.ndim == 5:  # (O, I/g, kt, kh, kw) -> (kt, kh, kw, I/g, O)
      put(params, path + ("kernel",), np.transpose(v, (2, 3, 4, 1, 0)))
    elif leaf == "weight" and v.ndim == 2:  # Linear (out, in) -> (in, out)
      put(params, path + ("kernel",), v.T)
    else:
      raise KeyError(key)
  return {"params": params, "batch_stats": stats}


def jax_side(path):
  import jax
  import jax.numpy as jnp
  from flax.core import unfreeze

  import os
  sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
  from vidjax.backbones.x3d import X3D, X3DStem, x3d_head_pool_size

  data = np.load(path)
  sd = {k[3:]: data[k] for k in data.files if k.startswith("sd/")}
  variables = _convert(sd)
  x = jnp.asarray(np.transpose(data["x"], (0, 2, 3, 4, 1)))  # NCTHW -> NTHWC
  x_big = jnp.asarray(np.transpose(data["x_big"], (0, 2, 3, 4, 1)))

  def check_tree(model, inp):
    ref = unfreeze(jax.eval_shape(lambda: model.init(jax.random.key(0), inp, train=False)))
    ref_s = jax.tree_util.tree_map(lambda a: a.shape, ref)
    got_s = jax.tree_util.tree_map(lambda a: a.shape, variables)
    assert ref_s == got_s, "converted variables do not match the flax tree"

  def report(name, got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    diff = np.max(np.abs(got - want))
    print(f"{name:<34} shape {str(want.shape):<22} max|ref| {np.max(np.abs(want)):10.4g}  "
          f"max abs diff {diff:.3e}  rel {diff / np.max(np.abs(want)):.3e}")
    return diff / np.max(np.abs(want))

  rels = []
  # Global head pool (= pytorchvideo's fixed (4, 2, 2) pool at the built 4x64^2 input).
  model = X3D(num_classes=CLASSES, variant="xs", dropout=0.0)
  check_tree(model, x)
  logits, _ = model.apply(variables, x, train=False, return_features=True)
  rels.append(report("eval logits (global pool)", logits, data["out/eval"]))
  # Intermediate features: the stem alone on its converted variables, then the stage-4 output.
  stem_out = X3DStem(24).apply({"params": variables["params"]["stem"],
                                "batch_stats": variables["batch_stats"]["stem"]}, x, train=False)
  rels.append(report("stem output", stem_out, np.transpose(data["out/stem"], (0, 2, 3, 4, 1))))
  _, feats = model.apply(variables, x, train=False, return_features=True)
  rels.append(report("stage4 output", feats, np.transpose(data["out/stage4"], (0, 2, 3, 4, 1))))
  # Train mode (batch statistics).
  train_logits, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
  rels.append(report("train-mode logits", train_logits, data["out/train"]))
  # Running statistics after one train step (PyTorch momentum 0.1 = Flax momentum 0.9).
  rels.append(report("stem BN running mean after", upd["batch_stats"]["stem"]["norm"]["mean"],
                     data["out/stem_mean_after"]))
  rels.append(report("stem BN running var after", upd["batch_stats"]["stem"]["norm"]["var"],
                     data["out/stem_var_after"]))
  # Fixed pytorchvideo pool built for 4x64^2 and run at 4x96^2: sliding window over the 3x3 map.
  fixed = X3D(num_classes=CLASSES, variant="xs", dropout=0.0, head_pool=x3d_head_pool_size(CLIP, CROP))
  rels.append(report("eval logits 96^2, fixed pool", fixed.apply(variables, x_big, train=False),
                     data["out/eval_big"]))
  glob_big = model.apply(variables, x_big, train=False)
  print(f"(global pool at 96^2 differs from the sliding window by "
        f"{np.max(np.abs(np.asarray(glob_big) - data['out/eval_big'])):.3e})")
  print(f"worst relative difference: {max(rels):.3e}")
  return max(rels)


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] not in ("torch", "jax"):
    sys.exit("usage: x3d_parity.py torch|jax FILE.npz")
  (torch_side if sys.argv[1] == "torch" else jax_side)(sys.argv[2])
