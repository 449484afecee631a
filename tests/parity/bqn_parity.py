"""Parity of vidjax's MBPM / BPLC / BQN TSM-R50 with the author's PyTorch code, on the same weights.

Not a pytest test (it needs torch and the reference sources). Usage, from the repository root:

  pip install -e ".[torch]"            # torch==2.13.0 (CPU is enough)
  git clone https://github.com/guoxih/busy-quiet-net /tmp/bqn_ref   # or `git archive HEAD src ops`
  python tests/parity/bqn_parity.py /tmp/bqn_ref [--full]

The reference directory must contain ``src/bpf.py`` and ``src/bqn_resnet_reverse.py`` (read from there,
never copied here). ``ops/depthwise_conv.py``, which ``bqn_resnet_reverse.py`` imports but the repository
lacks (REFERENCE.md section 12.9), is replaced by an empty module.

Each check builds the torch module with random weights, randomises every BatchNorm's affine parameters
and running statistics (so the zero-initialised lateral-connection BNs carry signal), converts the
state_dict to flax variables (``convert``), and reports ``max |jax - torch| / max |torch|`` in eval mode
(running statistics) and, for the blocks and the BQN, in train mode (batch statistics):

1. stem MBPM (three_steps=True, sigma 1.1, k 9) on 2 segments x 3 frames, 3 channels;
2. lateral-connection MBPM (three_steps=False, sigma 0.9, k 7) on 2 frames, 16 channels;
3. one ``DuoPath`` block of each direction (id 1: Busy -> Quiet, with a downsample; id 2: Quiet -> Busy
   through the MBPM) against ``vidjax.models.bqn.DuoBlock``, Busy 16^2 / Quiet 10^2;
4. BQN TSM-R50 (``resnet50`` of ``bqn_resnet_reverse.py``), 2 segments, 10 classes, Busy 128^2 / Quiet
   64^2 (``c_scale=0.5``: at 0.625 only 256^2 keeps every stage's size ratio exact in the reference);
   ``--full`` adds Busy 256^2 / Quiet 160^2 (the thesis sizes);
5. ``--x3d``: BQN X3D-M (``src/bqn_x3d_reverse.py``, needs ``pytorchvideo==0.1.5`` and ``fvcore``, whose
   ``SqueezeExcitation`` the reference imports from its old pytorchvideo place), 2 segments,
   Busy 256^2 / Quiet 160^2, 10 classes, against ``vidjax.models.bqn.BusyQuietX3D``.

Exit status 1 if any difference exceeds ``--tol`` (default 1e-4).
"""
from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


# ------------------------------------------------------------------------------------------ reference
def import_reference(path: str):
  """Imports ``src.bpf`` and ``src.bqn_resnet_reverse`` from the reference checkout at ``path``."""
  sys.path.insert(0, os.path.abspath(path))
  stub = types.ModuleType("ops.depthwise_conv")  # missing in the reference repository
  sys.modules["ops.depthwise_conv"] = stub
  import importlib
  bpf = importlib.import_module("src.bpf")
  rev = importlib.import_module("src.bqn_resnet_reverse")
  return bpf, rev


def randomise_bn(model, seed: int = 0):
  """Random gamma / beta / running stats for every BatchNorm (the LC BNs are zero at init)."""
  import torch
  g = torch.Generator().manual_seed(seed)
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      c = m.num_features
      with torch.no_grad():
        m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
        m.bias.copy_(0.2 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))


def perturb_mbpm(model, seed: int = 1):
  """Give each MBPM channel its own (trained-looking) kernel: initial value + 10% noise."""
  import torch
  g = torch.Generator().manual_seed(seed)
  for name, p in model.named_parameters():
    if name.endswith(("conv_s.weight", "conv_t.weight")):
      with torch.no_grad():
        p.add_(0.1 * p.abs().mean() * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------------------------------ conversion
_BLOCK_PARTS = {"path_c": "quiet", "path_f": "busy"}
_LEAF = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "bn1": "bn1", "bn2": "bn2", "bn3": "bn3",
         "downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}


def _target(key: str):
  """torch state_dict key -> (collection, flax path, kind), or None for keys with no flax counterpart."""
  if key.endswith("num_batches_tracked"):
    return None
  parts = key.split(".")
  leaf = parts.pop()
  path: list = []
  if parts[0] == "mbpf1":  # stem MBPM
    path, parts = ["busy_mbpm"], parts[1:]
  elif parts[0] in ("conv1", "bn1"):  # Quiet stem
    path, parts = ["quiet_stem", parts[0]], parts[1:]
  elif parts[0] in ("d_conv1", "d_bn1"):  # Busy stem
    path, parts = ["busy_stem", parts[0][2:]], parts[1:]
  elif parts[0] == "fc":
    path, parts = ["head", "fc"], parts[1:]
  elif parts[0].startswith("layer"):
    path, parts = [f"{parts[0]}_{parts[1]}"], parts[2:]
  # inside a DuoPath block (or the keys of a bare DuoPath)
  if parts and parts[0] in _BLOCK_PARTS:
    path, parts = path + [_BLOCK_PARTS[parts[0]], _LEAF[".".join(parts[1:])]], []
  elif parts and parts[0] == "mbpf":
    path, parts = path + ["lc", "to_busy_mbpm"], parts[1:]
  elif parts and parts[0] in ("up", "down"):  # Sequential(Upsample, BatchNorm2d)
    assert parts[1:] == ["1"], key
    path, parts = path + ["lc", "to_busy_bn" if parts[0] == "up" else "to_quiet_bn"], []
  if parts and parts[0] in ("conv_s", "conv_t"):
    return "params", path + ["log" if parts[0] == "conv_s" else "temporal", "kernel"], parts[0]
  if parts:
    raise KeyError(f"unmapped reference key {key}")
  is_bn = path[-1].startswith("bn") or path[-1].endswith("_bn")
  if is_bn and leaf in ("weight", "bias"):
    return "params", path + ["scale" if leaf == "weight" else "bias"], "bn"
  if is_bn:
    return "batch_stats", path + ["mean" if leaf == "running_mean" else "var"], "bn"
  if path[-1] == "fc":
    return "params", path + ["kernel" if leaf == "weight" else "bias"], "fc"
  return "params", path + ["kernel"], "conv"


def convert(state_dict) -> dict:
  """A reference BQN (or DuoPath / MotionBandPassFilter) state_dict -> flax variables."""
  out: dict = {}
  for key, value in state_dict.items():
    t = _target(key)
    if t is None:
      continue
    col, path, kind = t
    w = value.detach().cpu().numpy()
    if kind == "conv_s":  # (C, 1, k, k) -> (k, k, 1, C)
      w = w.transpose(2, 3, 1, 0)
    elif kind == "conv_t":  # (C, 1, 3) -> (3, 1, C)
      w = w.transpose(2, 1, 0)
    elif kind == "conv":  # (O, I, kh, kw) -> (kh, kw, I, O)
      w = w.transpose(2, 3, 1, 0)
    elif kind == "fc" and path[-1] == "kernel":
      w = w.T
    node = out.setdefault(col, {})
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = np.ascontiguousarray(w, dtype=np.float32)
  return out


def _check_tree(converted, reference_shapes, what):
  import jax
  a = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(converted)}
  b = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(reference_shapes)}
  if a != b:
    missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    wrong = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    raise AssertionError(f"{what}: converted tree differs: missing {missing} extra {extra} shape {wrong}")


def rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------------------------------- checks
def check_mbpm(bpf, results):
  import jax
  import torch
  from vidjax.modules.bandpass import MotionBandPass
  rng = np.random.default_rng(0)
  # 1. stem: (N, T, 3, C, H, W) torch  <->  (N, 3T, H, W, C) ours
  n, t, c, h, w = 2, 2, 3, 20, 24
  ref = bpf.MotionBandPassFilter(num_segments=t, channels=c, sigma=1.1, kernel_size=9, three_steps=True)
  perturb_mbpm(ref)
  video = rng.normal(size=(n, 3 * t, h, w, c)).astype(np.float32)
  tx = torch.from_numpy(video.reshape(n, t, 3, h, w, c).transpose(0, 1, 2, 5, 3, 4).copy())
  with torch.no_grad():
    want = ref(tx).numpy().reshape(n, t, c, h, w).transpose(0, 1, 3, 4, 2)
  sd = {"mbpf1." + k: v for k, v in ref.state_dict().items()}
  var = {"params": convert(sd)["params"]["busy_mbpm"]}
  m = MotionBandPass(1.1, 9, three_steps=True)
  _check_tree(var, jax.eval_shape(lambda: m.init(jax.random.key(0), video)), "stem MBPM")
  results.append(("MBPM stem (three_steps, s1.1 k9)", rel(m.apply(var, video), want)))
  # 2. lateral connection: (N*T, C, H, W) torch
  c = 16
  ref = bpf.MotionBandPassFilter(num_segments=t, channels=c, sigma=0.9, kernel_size=7, three_steps=False)
  perturb_mbpm(ref)
  x = rng.normal(size=(n, t, h, w, c)).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy(x.reshape(n * t, h, w, c).transpose(0, 3, 1, 2).copy())).numpy()
  want = want.reshape(n, t, c, h, w).transpose(0, 1, 3, 4, 2)
  sd = {"mbpf1." + k: v for k, v in ref.state_dict().items()}
  var = {"params": convert(sd)["params"]["busy_mbpm"]}
  m = MotionBandPass(0.9, 7, three_steps=False)
  results.append(("MBPM lateral (stride 1, s0.9 k7)", rel(m.apply(var, x), want)))


def _nchw(x):
  return x.transpose(0, 3, 1, 2).copy()


def check_blocks(rev, results):
  import jax
  import torch
  from vidjax.models.bqn import DuoBlock
  rng = np.random.default_rng(1)
  n, t = 1, 2
  specs = [  # (inplanes, planes, downsample) of DuoPath id 1 and id 2 (layer1.0 / layer1.1 shapes)
      (64, 64, True), (256, 64, False)]
  rev.DuoPath.count = 0  # the reference's class-level block counter (REFERENCE.md section 12.10)
  for block_id, (inplanes, planes, down) in enumerate(specs, 1):
    downsample = None
    if down:
      downsample = torch.nn.Sequential(rev.conv1x1(inplanes, planes * 4), torch.nn.BatchNorm2d(planes * 4))
    ref = rev.DuoPath(t, inplanes, planes, 1, downsample, norm_layer=torch.nn.BatchNorm2d,
                      lateral_c=True, sigma=0.9, kernel_size=7,
                      c_scale=160. / 256.)
    assert ref.id == block_id
    randomise_bn(ref, block_id)
    perturb_mbpm(ref, block_id)
    x_c = rng.normal(size=(n * t, 10, 10, inplanes)).astype(np.float32)
    x_f = rng.normal(size=(n * t, 16, 16, inplanes)).astype(np.float32)
    ours = DuoBlock(planes, 1, down, t, t, 8, block_id, True, lc_kernel_size=7)
    var = convert(ref.state_dict())
    _check_tree(var, jax.eval_shape(lambda: ours.init(jax.random.key(0), x_c, x_f)), f"DuoPath {block_id}")
    direction = "Busy->Quiet" if block_id % 2 else "Quiet->Busy (MBPM)"
    for train in (False, True):
      ref.train(train)
      with torch.no_grad():
        want_c, want_f = ref((torch.from_numpy(_nchw(x_c)), torch.from_numpy(_nchw(x_f))))
      if train:
        (got_c, got_f), _ = ours.apply(var, x_c, x_f, train=True, mutable=["batch_stats"])
      else:
        got_c, got_f = ours.apply(var, x_c, x_f, train=False)
      mode = "train" if train else "eval"
      results.append((f"DuoPath id {block_id} {direction} [{mode}] Quiet out",
                      rel(np.asarray(got_c).transpose(0, 3, 1, 2), want_c.numpy())))
      results.append((f"DuoPath id {block_id} {direction} [{mode}] Busy out",
                      rel(np.asarray(got_f).transpose(0, 3, 1, 2), want_f.numpy())))


def check_bqn(rev, results, size: int, quiet: int):
  import jax
  import torch
  from vidjax.models.bqn import BusyQuietResNet
  rng = np.random.default_rng(2)
  n, t, k = 1, 2, 10
  rev.DuoPath.count = 0
  ref = rev.resnet50(pretrained=False, num_classes=k, dropout=0.0, data_length=3, num_segments=t,
                     c_scale=quiet / size)
  randomise_bn(ref, 3)
  perturb_mbpm(ref, 3)
  with torch.no_grad():  # a larger fc so the logits are not ~1e-3
    ref.fc.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
  video = rng.normal(size=(n, 3 * t, size, size, 3)).astype(np.float32)
  # TSN input layout: (N*T, 3 frames x 3 colours, H, W), channel = frame * 3 + colour.
  tx = torch.from_numpy(video.reshape(n, t, 3, size, size, 3).transpose(0, 1, 2, 5, 3, 4)
                        .reshape(n * t, 9, size, size).copy())
  ours = BusyQuietResNet(num_classes=k, quiet_size=quiet, dropout=0.0)
  var = convert(ref.state_dict())
  _check_tree(var, jax.eval_shape(lambda: ours.init(jax.random.key(0), video)), "BQN")
  for train in (False, True):
    ref.train(train)
    with torch.no_grad():
      want = ref(tx).reshape(n, t, k).mean(1).numpy()  # TSN average consensus
    if train:
      got, _ = jax.jit(lambda v, x: ours.apply(v, x, train=True, mutable=["batch_stats"]))(var, video)
    else:
      got = jax.jit(lambda v, x: ours.apply(v, x, train=False))(var, video)
    mode = "train" if train else "eval"
    results.append((f"BQN TSM-R50 2 seg, Busy {size}^2 / Quiet {quiet}^2 [{mode}] logits", rel(got, want)))


# ------------------------------------------------------------------------------------------- BQN-X3D
_X3D_STEM = {"conv.conv_t": "conv_xy", "conv.conv_xy": "conv_t", "norm": "norm"}  # pytorchvideo's swap
_X3D_BLOCK = {"branch1_conv": ("shortcut_conv",), "branch1_norm": ("shortcut_norm",),
              "branch2.conv_a": ("conv_a",), "branch2.norm_a": ("norm_a",), "branch2.conv_b": ("conv_b",),
              "branch2.norm_b.0": ("norm_b",), "branch2.norm_b.1.block.0": ("se", "reduce"),
              "branch2.norm_b.1.block.2": ("se", "expand"), "branch2.conv_c": ("conv_c",),
              "branch2.norm_c": ("norm_c",)}
_X3D_LC = {"up.1": ("lc", "to_busy_w1", "conv"), "up.2": ("lc", "to_busy_bn"),
           "down.1": ("lc", "to_quiet_phi", "conv"), "down.2": ("lc", "to_quiet_bn")}
_X3D_HEAD = {"pool.pre_conv": ("conv_pre",), "pool.pre_norm": ("norm_pre",),
             "pool.post_conv": ("conv_post",), "proj": ("fc",)}
_PATH = {"path_c": "quiet", "path_f": "busy"}


def convert_x3d(state_dict) -> dict:
  """A reference ``bqn_x3d_reverse`` state_dict -> flax variables of ``BusyQuietX3D``."""
  out: dict = {}
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked"):
      continue
    parts = key.split(".")
    leaf, mod = parts[-1], parts[:-1]
    w = value.detach().cpu().numpy()
    if mod[0] == "mbpf1":
      path, kind = ("busy_mbpm", "log" if mod[1] == "conv_s" else "temporal"), mod[1]
    elif mod[:2] == ["blocks", "0"]:
      path, kind = (f"{_PATH[mod[2]]}_stem", _X3D_STEM[".".join(mod[3:])]), "conv"
    elif mod[:2] == ["blocks", "5"]:
      path, kind = (f"{_PATH[mod[2]]}_head",) + _X3D_HEAD[".".join(mod[3:])], "conv"
    else:
      stage, block, rest = int(mod[1]), int(mod[3]), mod[4:]
      base = (f"stage{stage}_{block}",)
      if rest[0] in _PATH:
        path, kind = base + (_PATH[rest[0]],) + _X3D_BLOCK[".".join(rest[1:])], "conv"
      elif rest[0] == "mbpf":
        path, kind = base + ("lc", "to_busy_mbpm", "log" if rest[1] == "conv_s" else "temporal"), rest[1]
      else:
        path, kind = base + _X3D_LC[".".join(rest)], "conv"
    is_bn = path[-1].startswith("norm") or path[-1].endswith(("_norm", "_bn"))
    if kind == "conv_s":
      col, path, w = "params", path + ("kernel",), w.transpose(2, 3, 1, 0)
    elif kind == "conv_t":
      col, path, w = "params", path + ("kernel",), w.transpose(2, 1, 0)
    elif is_bn:
      col = "batch_stats" if leaf.startswith("running") else "params"
      path = path + ({"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}[leaf],)
    elif path[-1] == "fc":
      col, path = "params", path + (("kernel",) if leaf == "weight" else ("bias",))
      w = w.T if leaf == "weight" else w
    elif leaf == "bias":  # SE conv biases
      col, path = "params", path + ("bias",)
    else:  # conv weights (O, I, [kt,] kh, kw) -> ([kt,] kh, kw, I, O)
      col, path = "params", path + ("kernel",)
      w = w.transpose(tuple(range(2, w.ndim)) + (1, 0))
    node = out.setdefault(col, {})
    for q in path[:-1]:
      node = node.setdefault(q, {})
    node[path[-1]] = np.ascontiguousarray(w, dtype=np.float32)
  return out


def check_bqn_x3d(results):
  """BQN X3D-M (``src/bqn_x3d_reverse.py``, pytorchvideo 0.1.5): 2 segments, Busy 256^2 / Quiet 160^2
  (the reference fixes the 0.625 scale, and only 256^2 keeps every stage's size ratio exact)."""
  import importlib
  import jax
  import torch
  try:
    import torchvision.ops  # noqa: F401
  except Exception:  # pytorchvideo's detection head imports it; BQN never uses it
    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.RoIAlign = type("RoIAlign", (), {})
    tv.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
  se_mod = importlib.import_module("pytorchvideo.layers.squeeze_excitation")
  if not hasattr(se_mod, "SqueezeExcitation"):  # pytorchvideo >= 0.1.5 moved it to fvcore (REFERENCE 12.9)
    se_mod.SqueezeExcitation = importlib.import_module("fvcore.nn.squeeze_excitation").SqueezeExcitation
  rev = importlib.import_module("src.bqn_x3d_reverse")
  from vidjax.models.bqn import BusyQuietX3D
  n, t, k, size = 1, 2, 10, 256
  rev.DuoPath.count = 0
  ref = rev.x3d_m(k, pretrained=False, input_clip_length=t, input_crop_size=size, dropout_rate=0.0)
  g = torch.Generator().manual_seed(5)
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
        c = m.num_features
        m.weight.copy_(0.6 + 0.8 * torch.rand(c, generator=g))
        m.bias.copy_(0.1 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
        m.running_var.copy_(0.6 + 0.8 * torch.rand(c, generator=g))
      elif isinstance(m, (torch.nn.Conv3d, torch.nn.Linear)) and m.bias is not None:
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
  perturb_mbpm(ref, 5)
  video = np.random.default_rng(5).normal(size=(n, 3 * t, size, size, 3)).astype(np.float32)
  tx = torch.from_numpy(video.reshape(n, t, 3, size, size, 3).transpose(0, 1, 2, 5, 3, 4)
                        .reshape(n * t, 9, size, size).copy())
  ours = BusyQuietX3D(num_classes=k, quiet_size=160, dropout=0.0)
  var = convert_x3d(ref.state_dict())
  _check_tree(var, jax.eval_shape(lambda: ours.init(jax.random.key(0), video)), "BQN-X3D")
  for train in (False, True):
    ref.train(train)
    with torch.no_grad():
      want = ref(tx).numpy()
    if train:
      got, _ = jax.jit(lambda v, x: ours.apply(v, x, train=True, mutable=["batch_stats"]))(var, video)
    else:
      got = jax.jit(lambda v, x: ours.apply(v, x, train=False))(var, video)
    mode = "train" if train else "eval"
    results.append((f"BQN X3D-M 2 seg, Busy {size}^2 / Quiet 160^2 [{mode}] logits", rel(got, want)))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("reference", help="checkout of guoxih/busy-quiet-net (with src/ and ops/)")
  ap.add_argument("--full", action="store_true", help="also run the BQN at Busy 256^2 / Quiet 160^2")
  ap.add_argument("--x3d", action="store_true",
                  help="also check BQN X3D-M (src/bqn_x3d_reverse.py; needs pytorchvideo==0.1.5)")
  ap.add_argument("--tol", type=float, default=1e-4)
  args = ap.parse_args(argv)
  import torch
  import jax
  torch.manual_seed(0)
  torch.set_num_threads(max(1, os.cpu_count() or 1))
  print(f"torch {torch.__version__}, jax {jax.__version__}")
  bpf, rev = import_reference(args.reference)
  results: list = []
  check_mbpm(bpf, results)
  check_blocks(rev, results)
  check_bqn(rev, results, 128, 64)
  if args.full:
    check_bqn(rev, results, 256, 160)
  if args.x3d:
    check_bqn_x3d(results)
  worst = 0.0
  for name, r in results:
    worst = max(worst, r)
    print(f"{name:<70s} max|diff|/max|ref| = {r:.2e}  {'OK' if r <= args.tol else 'FAIL'}")
  print(f"worst {worst:.2e} (tolerance {args.tol:.0e})")
  return 0 if worst <= args.tol else 1


if __name__ == "__main__":
  sys.exit(main())
