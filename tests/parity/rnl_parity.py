"""Parity of vidjax's chapter 4 blocks with the author's PyTorch code on the same weights.

Reference: ``guoxih/region-based-non-local-network`` (``ops/rnl.py``, ``ops/depthwise_conv.py``,
``ops/temporal_shift.py``), read from a directory given on the command line; nothing of it is copied
here. Not part of the pytest suite (needs torch). Two steps, two interpreters:

  1. torch side (a venv with torch 2.13.0 CPU):
       python tests/parity/rnl_parity.py torch REF_DIR /tmp/rnl_parity.npz
     ``REF_DIR`` holds the reference's ``ops/`` package, e.g. extracted with
       for f in __init__ basic_ops rnl depthwise_conv temporal_shift; do
         git -C MIRROR show HEAD:ops/$f.py > REF_DIR/ops/$f.py; done
     Runs, in eval and train mode: RNL blocks (``_NonLocalBlockND``; Gaussian 3x7x7 with the dense
     grouped "depthwise" weight in 2 groups, dot product ``activation='relu'`` 3x3x3, cosine
     ``use_norm=True`` 3x3x3), a ``ChannelGate`` (reduction 2), and a reduced RNL-TSM-R50: a
     torchvision-layout ResNet-50 at 1/4 width (full depth, stages [3, 4, 6, 3]) through the
     reference's ``make_temporal_shift(place='blockres', n_div=8)`` and ``make_non_local`` (cg+nl on
     layer2[0], nl on layer2[2] and layer3[0, 2, 4]), then TSN's dropout -> ``new_fc`` -> mean over T.
     All BN parameters and statistics, the zero-initialised RNL BN and ChannelGate ``W_v2`` included,
     are randomised so that no block is the identity. Saves weights, inputs and outputs.
     A torchvision-layout ResNet written here (names ``conv1``, ``layer1.0.conv2``, ``downsample.0``
     ...; torchvision is not in that venv and its resnet50 has no width option) stands in for
     ``torchvision.models``, and an empty ``archs.small_resnet`` module satisfies the reference's
     ``import archs``.
  2. jax side (the vidjax venv):
       python tests/parity/rnl_parity.py jax /tmp/rnl_parity.npz
     converts the state_dict to Flax variables (the masked dense F_theta weight ``(C', 32, k)`` becomes
     the depthwise kernel ``weight[o, o % 32]``), runs vidjax's modules / model with the dense and the
     chunked attention path and prints the maximum absolute and relative differences.

Procedure and results: tests/parity/RNL.md.
"""
from __future__ import annotations

import sys
import types

import numpy as np

T, N, CROP, CLASSES, WIDTH = 4, 2, 64, 10, 0.25


# ============================================================================================ torch
def _torch_resnet_module():
  """A module ``torchvision`` with ``models.ResNet`` / ``models.resnet50`` in torchvision's layout."""
  import torch.nn as tnn

  class Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = tnn.BatchNorm2d(planes * 4)
      self.relu = tnn.ReLU(inplace=True)
      self.downsample = downsample

    def forward(self, x):
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      out = self.bn3(self.conv3(out))
      identity = x if self.downsample is None else self.downsample(x)
      return self.relu(out + identity)

  class ResNet(tnn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000, width=1.0):
      super().__init__()
      widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
      self.inplanes = widths[0]
      self.conv1 = tnn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
      self.bn1 = tnn.BatchNorm2d(self.inplanes)
      self.relu = tnn.ReLU(inplace=True)
      self.maxpool = tnn.MaxPool2d(3, 2, 1)
      self.layer1 = self._make(widths[0], layers[0], 1)
      self.layer2 = self._make(widths[1], layers[1], 2)
      self.layer3 = self._make(widths[2], layers[2], 2)
      self.layer4 = self._make(widths[3], layers[3], 2)
      self.avgpool = tnn.AdaptiveAvgPool2d(1)
      self.fc = tnn.Linear(widths[3] * 4, num_classes)

    def _make(self, planes, blocks, stride):
      down = None
      if stride != 1 or self.inplanes != planes * 4:
        down = tnn.Sequential(tnn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                              tnn.BatchNorm2d(planes * 4))
      layers = [Bottleneck(self.inplanes, planes, stride, down)]
      self.inplanes = planes * 4
      layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
      return tnn.Sequential(*layers)

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(self.avgpool(x).flatten(1))

  tv = types.ModuleType("torchvision")
  tv.models = types.ModuleType("torchvision.models")
  tv.models.ResNet = ResNet
  tv.models.resnet50 = lambda pretrained=False, **kw: ResNet(**kw)
  return tv


def _install_stubs():
  """Our torchvision-layout ResNet as ``torchvision.models`` (also when a real torchvision exists: the
  reference's ``isinstance(net, torchvision.models.ResNet)`` checks must accept the 1/4-width net)."""
  tv = _torch_resnet_module()
  sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, tv.models
  archs = types.ModuleType("archs")
  archs.small_resnet = types.ModuleType("archs.small_resnet")

  class _Unused:  # the reference's isinstance(net, archs.small_resnet.ResNet) alternative
    pass

  archs.small_resnet.ResNet = _Unused
  sys.modules["archs"], sys.modules["archs.small_resnet"] = archs, archs.small_resnet


def _randomise_bn(model, g):
  import torch
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.8 + 0.6)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _state(prefix, module):
  return {f"{prefix}/{k}": v.detach().numpy().copy() for k, v in module.state_dict().items()}


def torch_side(ref_dir, path):
  sys.path.insert(0, ref_dir)
  _install_stubs()
  import torch
  from ops import rnl, temporal_shift
  torch.manual_seed(0)
  g = torch.Generator().manual_seed(1)
  out = {}

  # --- single blocks on (N, C, T, H, W)
  x = torch.randn(N, 128, T, 8, 8, generator=g)
  out["x_block"] = x.numpy()
  blocks = {
      "rnl_gaussian": rnl._NonLocalBlockND(128, ratio=2, ks=[3, 7, 7], sub_sample=False),
      "rnl_dot": rnl._NonLocalBlockND(128, ratio=2, ks=[3, 3, 3], sub_sample=False, activation="relu"),
      "rnl_cosine": rnl._NonLocalBlockND(128, ratio=2, ks=[3, 3, 3], sub_sample=False, activation="relu",
                                         use_norm=True),
      "cg": rnl.ChannelGate(128, reduction_ratio=2),
  }
  sd = {}
  for name, blk in blocks.items():
    _randomise_bn(blk, g)
    if name == "cg":
      with torch.no_grad():
        blk.W_v2.weight.copy_(torch.randn(blk.W_v2.weight.shape, generator=g) * 0.1)
        blk.W_v2.bias.copy_(torch.randn(blk.W_v2.bias.shape, generator=g) * 0.1)
    sd.update(_state(name, blk))
    with torch.no_grad():
      blk.eval()
      out[f"out/{name}/eval"] = blk(x).numpy()
      blk.train()
      out[f"out/{name}/train"] = blk(x.clone()).numpy()
    if name == "rnl_gaussian":
      out["attn/rnl_gaussian"] = blk.attention_maps.detach().numpy()  # from the train-mode call

  # --- reduced RNL-TSM-R50 (TSN forward with dropout -> new_fc -> average over T)
  import torchvision
  net = torchvision.models.resnet50(False, width=WIDTH)
  temporal_shift.make_temporal_shift(net, T, n_div=8, place="blockres", temporal_pool=False)
  rnl.make_non_local(net, T)
  net.fc = torch.nn.Dropout(p=0.5)
  new_fc = torch.nn.Linear(512, CLASSES)
  _randomise_bn(net, g)
  with torch.no_grad():
    net.layer2[0].cg.W_v2.weight.copy_(torch.randn(net.layer2[0].cg.W_v2.weight.shape, generator=g) * 0.05)
    net.layer2[0].cg.W_v2.bias.copy_(torch.randn(net.layer2[0].cg.W_v2.bias.shape, generator=g) * 0.05)
    new_fc.weight.copy_(torch.randn(new_fc.weight.shape, generator=g) * 0.05)
    new_fc.bias.zero_()
  sd.update(_state("net", net))
  sd.update(_state("new_fc", new_fc))
  video = torch.randn(N * T, 3, CROP, CROP, generator=g)
  out["video"] = video.numpy()
  net.eval()
  with torch.no_grad():
    feats = net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(
        net.maxpool(net.relu(net.bn1(net.conv1(video))))))))).flatten(1)
    logits = new_fc(net.fc(feats)).view(N, T, CLASSES).mean(1)
  out["out/net/features"] = feats.numpy()
  out["out/net/logits"] = logits.numpy()
  np.savez(path, **out, **{f"sd/{k}": v for k, v in sd.items()})
  print(f"torch {torch.__version__}: saved {len(sd)} tensors and {len(out)} arrays to {path}")


# ============================================================================================== jax
def _conv(w):
  w = np.asarray(w)
  if w.ndim == 4:  # (O, I, kh, kw) -> (kh, kw, I, O)
    return w.transpose(2, 3, 1, 0)
  return w.transpose(2, 3, 4, 1, 0)  # (O, I, kt, kh, kw) -> (kt, kh, kw, I, O)


def _depthwise(weight, mask):
  """Reference DiagonalwiseRefactorization ``weight * mask`` ``(C, g, k...)`` -> ``(k..., 1, C)``."""
  w = np.asarray(weight) * np.asarray(mask)
  c, gw = w.shape[:2]
  eff = w[np.arange(c), np.arange(c) % gw]  # (C, kt, kh, kw): the only unmasked tap per channel
  rest = w.copy()
  rest[np.arange(c), np.arange(c) % gw] = 0
  assert not rest.any(), "the mask keeps more than weight[o, o % g]"
  return eff.transpose(1, 2, 3, 0)[..., None, :]


def _put(tree, path, value):
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  assert path[-1] not in tree, path
  tree[path[-1]] = np.asarray(value, np.float32)


def _bn(params, stats, path, sd, prefix):
  _put(params, path + ["scale"], sd[prefix + "weight"])
  _put(params, path + ["bias"], sd[prefix + "bias"])
  _put(stats, path + ["mean"], sd[prefix + "running_mean"])
  _put(stats, path + ["var"], sd[prefix + "running_var"])


def _convert_block(sd, prefix, path, params, stats):
  """An ``_NonLocalBlockND`` (``theta, penta, W``) or ``ChannelGate`` state_dict under ``prefix``."""
  keys = {k[len(prefix):] for k in sd if k.startswith(prefix)}
  if "theta.weight" in keys:
    _put(params, path + ["theta", "kernel"], _conv(sd[prefix + "theta.weight"]))
    _put(params, path + ["theta", "bias"], sd[prefix + "theta.bias"])
    if "penta.weight" in keys:
      _put(params, path + ["f_theta", "kernel"], _depthwise(sd[prefix + "penta.weight"], sd[prefix + "penta.mask"]))
    _put(params, path + ["w_z", "kernel"], _conv(sd[prefix + "W.0.weight"]))
    _put(params, path + ["w_z", "bias"], sd[prefix + "W.0.bias"])
    _bn(params, stats, path + ["bn"], sd, prefix + "W.1.")
  else:  # ChannelGate
    _put(params, path + ["w_k", "kernel"], _conv(sd[prefix + "W_k.weight"]))
    _put(params, path + ["w_k", "bias"], sd[prefix + "W_k.bias"])
    for lin in ("W_v1", "W_v2"):
      _put(params, path + [lin.lower(), "kernel"], np.asarray(sd[f"{prefix}{lin}.weight"]).T)
      _put(params, path + [lin.lower(), "bias"], sd[f"{prefix}{lin}.bias"])
    _bn(params, stats, path + ["bn1"], sd, prefix + "bn1.")


def _convert_net(sd):
  params, stats = {}, {}
  _put(params, ["stem", "conv1", "kernel"], _conv(sd["net/conv1.weight"]))
  _bn(params, stats, ["stem", "bn1"], sd, "net/bn1.")
  for key in sd:
    if not key.startswith("net/layer"):
      continue
    parts = key[len("net/"):].split(".")
    stage, block = int(parts[0][len("layer"):]), int(parts[1])
    rest = parts[2:]
    if rest[0] in ("cg", "nl"):
      kind = "cg" if rest[0] == "cg" else "rnl"
      prefix = f"net/layer{stage}.{block}.{rest[0]}."
      if key == prefix + "theta.weight" or key == prefix + "W_k.weight":
        _convert_block(sd, prefix, [f"layer{stage}_{block}_attn", kind], params, stats)
      continue
    if rest[0] == "block":
      rest = rest[1:]
    name = f"layer{stage}_{block}"
    if rest[0].startswith("conv") and rest[-1] == "weight":
      _put(params, [name, rest[0], "kernel"], _conv(sd[key]))
    elif rest[0].startswith("bn") and rest[-1] == "weight":
      _bn(params, stats, [name, rest[0]], sd, key[:-len("weight")])
    elif rest[0] == "downsample" and rest[-1] == "weight":
      if rest[1] == "0":
        _put(params, [name, "downsample_conv", "kernel"], _conv(sd[key]))
      else:
        _bn(params, stats, [name, "downsample_bn"], sd, key[:-len("weight")])
  _put(params, ["head", "fc", "kernel"], np.asarray(sd["new_fc/weight"]).T)
  _put(params, ["head", "fc", "bias"], sd["new_fc/bias"])
  return {"params": params, "batch_stats": stats}


def _check_tree(ours, theirs):
  import jax
  a = jax.tree_util.tree_flatten_with_path(ours)[0]
  b = dict(jax.tree_util.tree_flatten_with_path(theirs)[0])
  sa = {jax.tree_util.keystr(k): v.shape for k, v in a}
  sb = {jax.tree_util.keystr(k): v.shape for k, v in b.items()}
  missing, extra = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
  bad = sorted(k for k in set(sa) & set(sb) if tuple(sa[k]) != tuple(sb[k]))
  assert not (missing or extra or bad), (missing[:5], extra[:5], bad[:5])
  return len(sa)


def _report(name, got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (name, got.shape, want.shape)
  diff = np.abs(got - want).max()
  rel = diff / max(np.abs(want).max(), 1e-12)
  print(f"{name:40s} max|diff| {diff:.2e}   max|ref| {np.abs(want).max():.3e}   rel {rel:.2e}")
  return diff, rel


def jax_side(path):
  import os
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  import jax
  import jax.numpy as jnp
  import ml_collections
  from vidjax.models import registry
  from vidjax.models.attention_net import default_attention_config
  from vidjax.modules import attention as M

  data = np.load(path)
  sd = {k[len("sd/"):]: data[k] for k in data.files if k.startswith("sd/")}
  worst = 0.0
  x = jnp.asarray(data["x_block"].transpose(0, 2, 3, 4, 1))  # (N, C, T, H, W) -> (N, T, H, W, C)
  to_ncthw = lambda y: np.asarray(y).transpose(0, 4, 1, 2, 3)
  mods = {
      "rnl_gaussian": dict(kernel_size=(3, 7, 7)),
      "rnl_dot": dict(kernel_size=(3, 3, 3), pairwise="dot"),
      "rnl_cosine": dict(kernel_size=(3, 3, 3), pairwise="cosine"),
  }
  for name in ("rnl_gaussian", "rnl_dot", "rnl_cosine", "cg"):
    params, stats = {}, {}
    _convert_block(sd, name + "/", [], params, stats)
    variables = {"params": params, "batch_stats": stats}
    impls = ("dense", "chunked") if name != "cg" else ("-",)
    for impl in impls:
      module = M.ChannelGate(reduction=2) if name == "cg" else M.RegionNonLocal(
          impl=impl, chunk_size=100, **mods[name])
      _check_tree(jax.eval_shape(lambda: module.init(jax.random.key(0), x)), variables)
      y = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x)
      worst = max(worst, _report(f"{name} [{impl}] eval", to_ncthw(y), data[f"out/{name}/eval"])[0])
      y, _ = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
      worst = max(worst, _report(f"{name} [{impl}] train", to_ncthw(y), data[f"out/{name}/train"])[0])

  # attention weights of the Gaussian block (reference attention_maps[b, j, i] = weight of key j for
  # output position i) against vidjax's pairwise weights on the block's sown P
  params, stats = {}, {}
  _convert_block(sd, "rnl_gaussian/", [], params, stats)
  module = M.RegionNonLocal(kernel_size=(3, 7, 7), impl="dense")
  _, inter = module.apply({"params": params, "batch_stats": stats}, x, train=True,
                          mutable=["batch_stats", "intermediates"])
  from vidjax.ops import attention as ops
  p = ops.flatten_positions(inter["intermediates"]["query"][0])
  w = ops.pairwise_weights(p, p, "gaussian")
  worst = max(worst, _report("rnl_gaussian attention weights", np.asarray(w).transpose(0, 2, 1),
                             data["attn/rnl_gaussian"])[0])

  # reduced RNL-TSM-R50
  variables = _convert_net(sd)
  for impl in ("dense", "chunked"):
    c = ml_collections.ConfigDict(dict(name="attention_tsm_resnet", num_classes=CLASSES, depth=50, width=WIDTH,
                                       dropout=0.5, shift=True))
    c.attention = default_attention_config()
    c.attention.blocks = ("cg", "rnl")
    c.attention.channel_positions = ((2, 0),)
    c.attention.rnl.impl = impl
    c.attention.rnl.chunk_size = 100
    model = registry.build(c)
    video = jnp.asarray(data["video"].reshape(N, T, 3, CROP, CROP).transpose(0, 1, 3, 4, 2))
    n = _check_tree(jax.eval_shape(lambda: model.init(jax.random.key(0), video)), variables)
    logits, feats = jax.jit(lambda v, x: model.apply(v, x, train=False, return_features=True))(variables, video)
    feats = jnp.mean(feats, axis=(1, 2))
    print(f"reduced RNL-TSM-R50: {n} converted arrays")
    worst = max(worst, _report(f"RNL-TSM-R50/4 [{impl}] pooled features", feats, data["out/net/features"])[0])
    worst = max(worst, _report(f"RNL-TSM-R50/4 [{impl}] logits", logits, data["out/net/logits"])[0])
  print(f"worst max|diff| {worst:.2e} ({'within' if worst <= 1e-4 else 'ABOVE'} 1e-4)")
  return worst


if __name__ == "__main__":
  if len(sys.argv) >= 2 and sys.argv[1] == "torch" and len(sys.argv) == 4:
    torch_side(sys.argv[2], sys.argv[3])
  elif len(sys.argv) == 3 and sys.argv[1] == "jax":
    sys.exit(0 if jax_side(sys.argv[2]) <= 1e-4 else 1)
  else:
    raise SystemExit(__doc__)
