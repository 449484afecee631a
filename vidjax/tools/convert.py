"""PyTorch (or NumPy / safetensors) weights -> vidjax variables -> an orbax checkpoint.

``python -m vidjax.tools.convert --config=configs/X.py --checkpoint=FILE --workdir=OUT``

reads ``FILE``, maps every tensor onto the parameters of the model ``config.model`` builds, and writes a
step-0 checkpoint to ``OUT/checkpoints`` with the three items of ``vidjax.train.checkpoint`` (``state``
with a fresh optimiser state, ``params``, ``model``). ``python train.py --config=configs/X.py
--workdir=OUT`` then resumes from it (fine-tuning from the converted weights),
``python -m vidjax.evaluate`` / ``predict.py`` / the notebooks restore its ``params``.

Files (``load_state_dict``):

* ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.pyth`` / ``.ckpt``: ``torch.load(weights_only=True)`` (needs the
  ``torch`` extra). The state_dict may be the file itself or sit under ``'state_dict'`` (the reference's
  ``main.py`` / ``main_apex.py`` checkpoints), ``'model_state'`` (pytorchvideo / PySlowFast) or ``'model'``.
* ``.npz`` (``np.savez(path, **{name: array})``) and ``.safetensors`` (read here, without torch or the
  safetensors package): the same names, no torch needed.

Key names are normalised first: every leading ``module.`` (``DataParallel``) is removed, and so are
``num_batches_tracked`` and thop's ``total_ops`` / ``total_params`` buffers.

Sources (``--source``, detected from the key names by default; REFERENCE.md sections 2, 3, 4, 6-8):

* ``imagenet``: a torchvision ImageNet ResNet-50 / 101 (``conv1, bn1, layer1.0.conv1, ...,
  downsample.0/1, fc``) as the ImageNet initialisation of a TSM-ResNet (``tsm_resnet``,
  ``busy_tsm_resnet``, ``attention_tsm_resnet`` = RNL/NL/CPA-TSM, DAN's ``tsm_resnet`` backbone) or of
  *both* BQN pathways (``bqn_resnet``, the thesis' initialisation). The ImageNet ``fc`` is dropped; what
  ResNet-50 does not have (classifier, attention blocks, MBPMs, lateral connections, DAN's PWTP) keeps
  its initial value (the one ``train.py`` would draw, same seed) and is listed. Every backbone parameter
  must come from the file.
* ``tsn``: the author's TSM / RNL-TSM / NL-TSM checkpoints (TSN wrapper of the RNL repo and of BQN's
  ``ops/models.py``): ``base_model.layer1.0.conv1.net.weight`` (``.net``: the temporal-shift wrapper),
  ``base_model.layer2.0.block.*`` / ``.nl.*`` / ``.cg.*`` (``NL3DWrapper``), ``new_fc.*``; the Busy-only
  MBPM model's ``mbpf.conv_s`` / ``mbpf.conv_t`` (``modality='HP'``). RNL's F_theta is stored as a dense
  grouped weight times a 0/1 mask (``penta.weight``, ``penta.mask``): converted to the depthwise kernel
  ``weight[o, o % g]`` (the only tap the mask keeps; checked). The reference's RNL-TSM has a ChannelGate
  on ``layer2.0``: convert it with ``configs/se_rnl_tsm_k400.py:code`` (or ``--config.model.attention``
  blocks ``('cg', 'rnl')`` at channel position ``(2, 0)``).
* ``bqn_resnet``: BQN TSM-R50/101 of ``src/model.py`` (``base_model.mbpf1``, ``conv1``/``d_conv1``,
  ``layerS.B.path_c`` / ``path_f``, ``mbpf``, ``up.1`` / ``down.1`` (``bqn_resnet_reverse.py``) or
  ``d_up.0/1`` / ``d_down.0/1`` (``bqn_resnet.py``, with 1x1 convs), ``fc``).
* ``x3d``: pytorchvideo / the author's ``src/x3d.py`` X3D (``blocks.0.conv.conv_t`` ... ``blocks.5.proj``;
  pytorchvideo's swapped stem names, see ``vidjax/backbones/x3d.py``), as the model ``x3d`` or as DAN's
  X3D backbone (then the PWTP keeps its initial value).
* ``bqn_x3d``: BQN X3D-M of ``src/bqn_x3d_reverse.py`` (``blocks.0.path_c`` ..., ``res_blocks.B.up.1/2``,
  ``down.1/2``, two heads ``blocks.5.path_c`` / ``path_f``).

Tensor layouts (REFERENCE.md section 1): conv ``(O, I, [kt,] kh, kw)`` -> ``([kt,] kh, kw, I, O)`` (MBPM
LoG ``(C, 1, k, k)`` -> ``(k, k, 1, C)``, temporal ``(C, 1, 3)`` -> ``(3, 1, C)``), Linear transposed, BN
``weight / bias / running_mean / running_var`` -> ``scale / bias`` (params) and ``mean / var``
(batch_stats).

Checks: the converted tree must have exactly the paths and shapes of the model's ``init``; otherwise a
``ConversionError`` lists the missing keys, the extra keys (with their PyTorch names) and the wrong shapes.
``--head=init`` drops the checkpoint's classifier and starts ``fc`` from scratch (fine-tuning to another
number of classes, or pytorchvideo's ``*_nofc`` weights).
"""
from __future__ import annotations

import json
import os
import re
import struct
import sys
from typing import Any, Callable, Iterable, Optional

import numpy as np

SOURCES = ("auto", "imagenet", "tsn", "bqn_resnet", "x3d", "bqn_x3d")
_DROPPED_SUFFIXES = ("num_batches_tracked", "total_ops", "total_params")
_BN_LEAF = {"weight": ("params", "scale"), "bias": ("params", "bias"),
            "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


class ConversionError(ValueError):
  """The file does not fit the config's model (the message lists the keys)."""


# =========================================================================================== reading
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "U16": np.uint16,
              "U32": np.uint32, "U64": np.uint64}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """A ``.safetensors`` file as numpy arrays (format: u64 header size, JSON header, raw little-endian data)."""
  with open(path, "rb") as fh:
    raw = fh.read()
  if len(raw) < 8:
    raise ConversionError(f"{path}: not a safetensors file (too short)")
  (n,) = struct.unpack("<Q", raw[:8])
  try:
    header = json.loads(raw[8:8 + n])
  except (ValueError, UnicodeDecodeError) as e:
    raise ConversionError(f"{path}: not a safetensors file ({e})") from None
  data = memoryview(raw)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    begin, end = info["data_offsets"]
    dt = info["dtype"]
    if dt == "BF16":  # bfloat16: the high half of a float32
      u16 = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32)
      arr = (u16 << 16).view(np.float32)
    elif dt in _ST_DTYPES:
      arr = np.frombuffer(data[begin:end], dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
    else:
      raise ConversionError(f"{path}: tensor {name!r} has unsupported dtype {dt}")
    out[name] = np.array(arr.reshape(info["shape"]))
  return out


def _torch_load(path: str) -> dict:
  try:
    import torch
  except ImportError:
    raise ConversionError(
        f"{path}: reading a PyTorch file needs torch (pip install -e '.[torch]'); or save the state_dict "
        f"as .npz / .safetensors elsewhere and convert that") from None
  obj = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("state_dict", "model_state", "model", "module"):
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict):
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
  out = {}
  for k, v in obj.items():
    if not hasattr(v, "detach"):
      continue  # e.g. an epoch number stored beside the tensors
    v = v.detach().cpu()
    if v.dtype in (torch.bfloat16, torch.float16):
      v = v.float()
    out[k] = v.numpy()
  return out


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The (normalised) state_dict of ``path``: name -> numpy array."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
  low = path.lower()
  if low.endswith(".npz"):
    with np.load(path, allow_pickle=False) as z:
      sd = {k: z[k] for k in z.files}
  elif low.endswith(".safetensors"):
    sd = read_safetensors(path)
  else:
    sd = _torch_load(path)
  return normalise_keys(sd)


def normalise_keys(sd: dict) -> dict[str, np.ndarray]:
  """Removes ``module.`` prefixes and the bookkeeping buffers; arrays become numpy."""
  out = {}
  for k, v in sd.items():
    while k.startswith("module."):
      k = k[len("module."):]
    if k.endswith(_DROPPED_SUFFIXES):
      continue
    if hasattr(v, "detach"):  # a torch tensor handed in directly
      v = v.detach().cpu().float().numpy() if str(v.dtype) in ("torch.bfloat16", "torch.float16") \
          else v.detach().cpu().numpy()
    out[k] = np.asarray(v)
  return out


# ====================================================================================== layouts
def torch_to_flax(w: np.ndarray, kind: str) -> np.ndarray:
  """``kind``: 'conv' (``(O, I, *k)`` -> ``(*k, I, O)``), 'linear' (transpose) or 'vector'."""
  w = np.asarray(w)
  if kind == "conv":
    if w.ndim < 3:
      raise ConversionError(f"expected a conv weight, got shape {w.shape}")
    return np.ascontiguousarray(w.transpose(tuple(range(2, w.ndim)) + (1, 0)))
  if kind == "linear":
    return np.ascontiguousarray(w.T)
  return w


def diagonalwise_to_depthwise(weight: np.ndarray, mask: Optional[np.ndarray], key: str) -> np.ndarray:
  """RNL's ``DiagonalwiseRefactorization`` ``weight * mask`` ``(C, g, *k)`` -> depthwise ``(*k, 1, C)``."""
  w = np.asarray(weight, np.float64)
  c, g = w.shape[:2]
  if mask is not None:
    m = np.asarray(mask)
    want = np.zeros_like(m)
    want[np.arange(c), np.arange(c) % g] = 1
    if not np.array_equal(m != 0, want != 0):
      raise ConversionError(f"{key}: the mask is not the reference's diagonal mask[o, o % {g}]")
    w = w * m
  taps = w[np.arange(c), np.arange(c) % g]  # (C, *k)
  return np.ascontiguousarray(np.moveaxis(taps, 0, -1)[..., None, :].astype(np.float32))


# A converted entry: target path (collection, *names) -> (array, source key).
Entries = dict


def _put(out: Entries, path: tuple, value: np.ndarray, key: str) -> None:
  if path in out:
    raise ConversionError(f"two checkpoint keys map to {'/'.join(path)}: {out[path][1]} and {key}")
  out[path] = (np.asarray(value, np.float32), key)


def _module_leaf(out: Entries, module_path: tuple, leaf: str, w: np.ndarray, key: str, kind: str) -> None:
  """A torch ``weight``/``bias``/BN leaf of a conv (kind 'conv'), Linear ('linear') or norm ('bn')."""
  if kind == "bn":
    if leaf not in _BN_LEAF:
      raise ConversionError(f"unexpected norm-layer key {key}")
    col, name = _BN_LEAF[leaf]
    _put(out, (col,) + module_path + (name,), w, key)
  elif leaf == "weight":
    _put(out, ("params",) + module_path + ("kernel",), torch_to_flax(w, kind), key)
  elif leaf == "bias":
    _put(out, ("params",) + module_path + ("bias",), w, key)
  else:
    raise ConversionError(f"unexpected key {key}")


class _Unmapped(Exception):
  pass


# ----------------------------------------------------------------------------------- ResNet family
_BLOCK_LEAVES = {"conv1": ("conv1", "conv"), "conv2": ("conv2", "conv"), "conv3": ("conv3", "conv"),
                 "bn1": ("bn1", "bn"), "bn2": ("bn2", "bn"), "bn3": ("bn3", "bn"),
                 "downsample.0": ("downsample_conv", "conv"), "downsample.1": ("downsample_bn", "bn")}
_RNL = {"theta": ("theta", "conv"), "W.0": ("w_z", "conv"), "W.1": ("bn", "bn")}
_NL = {"g": ("g", "conv"), "theta": ("theta", "conv"), "phi": ("phi", "conv"), "W.0": ("w_z", "conv"),
       "W.1": ("bn", "bn")}
_CG = {"W_k": ("w_k", "conv"), "W_v1": ("w_v1", "linear"), "bn1": ("bn1", "bn"), "W_v2": ("w_v2", "linear")}


def _bottleneck_key(out: Entries, prefix: tuple, parts: list, w, key: str) -> None:
  """``conv1[.net].weight`` / ``bn1.*`` / ``downsample.0/1.*`` of a bottleneck into ``prefix``."""
  leaf = parts[-1]
  mod = [p for p in parts[:-1] if p != "net"]  # '.net': the TSM temporal-shift wrapper
  name = ".".join(mod)
  if name not in _BLOCK_LEAVES:
    raise _Unmapped(key)
  sub, kind = _BLOCK_LEAVES[name]
  _module_leaf(out, prefix + (sub,), leaf, w, key, kind)


def _attention_key(out: Entries, attn_prefix: tuple, kind: str, parts: list, w, key: str, sd: dict,
                   nl_is_rnl: bool) -> None:
  """``nl.*`` (RNL or NL) / ``cg.*`` of an ``NL3DWrapper``."""
  leaf, name = parts[-1], ".".join(parts[:-1])
  if kind == "cg":
    if name not in _CG:
      raise _Unmapped(key)
    sub, k = _CG[name]
    _module_leaf(out, attn_prefix + ("cg", sub), leaf, w, key, k)
    return
  if nl_is_rnl:
    if name == "penta":
      if leaf == "mask":
        return  # consumed with the weight
      if leaf != "weight":
        raise _Unmapped(key)
      mask = sd.get(key[: -len("weight")] + "mask")
      _put(out, ("params",) + attn_prefix + ("rnl", "f_theta", "kernel"),
           diagonalwise_to_depthwise(w, mask, key), key)
      return
    table, block = _RNL, "rnl"
  else:
    table, block = _NL, "nl"
  if name not in table:
    raise _Unmapped(key)
  sub, k = table[name]
  _module_leaf(out, attn_prefix + (block, sub), leaf, w, key, k)


def _resnet_body(out: Entries, sd: dict, key: str, parts: list, stems: list, blocks: list,
                 attn_fmt: Optional[str] = None) -> bool:
  """Maps one torchvision-layout key (``conv1``, ``bn1``, ``layerS.B...``) onto every (stem, block)
  instance given. Returns False when the key is not a ResNet body key."""
  w = sd[key]
  if parts[0] in ("conv1", "bn1") and len(parts) == 2:
    for stem in stems:
      _module_leaf(out, stem + (parts[0],), parts[1], w, key, "conv" if parts[0] == "conv1" else "bn")
    return True
  m = re.fullmatch(r"layer(\d+)", parts[0])
  if not m or len(parts) < 4:
    return False
  s, b, rest = int(m.group(1)), int(parts[1]), parts[2:]
  if rest[0] in ("nl", "cg"):
    if attn_fmt is None:
      raise _Unmapped(key)
    base = key[: key.index(f".{rest[0]}.") + 1]
    nl_is_rnl = (base + "nl.phi.weight") not in sd
    _attention_key(out, tuple(attn_fmt.format(s=s, b=b).split("/")), rest[0], rest[1:], w, key, sd,
                   nl_is_rnl)
    return True
  if rest[0] == "block":  # NL3DWrapper
    rest = rest[1:]
  for fmt in blocks:
    _bottleneck_key(out, tuple(fmt.format(s=s, b=b).split("/")), rest, w, key)
  return True


def _mbpm_key(out: Entries, prefix: tuple, parts: list, w, key: str) -> None:
  """``conv_s.weight`` (LoG, (C,1,k,k)) / ``conv_t.weight`` (temporal, (C,1,3)) of a MotionBandPassFilter."""
  if parts not in (["conv_s", "weight"], ["conv_t", "weight"]):
    raise _Unmapped(key)
  name = "log" if parts[0] == "conv_s" else "temporal"
  _put(out, ("params",) + prefix + (name, "kernel"), torch_to_flax(w, "conv"), key)


def _strip_base(sd: dict) -> dict:
  """The TSN wrapper's ``base_model.`` prefix (kept for ``new_fc`` / ``mbpf`` beside it)."""
  return {(k[len("base_model."):] if k.startswith("base_model.") else k): v for k, v in sd.items()}


# ------------------------------------------------------------------------------------------ targets
def resnet_instances(model_name: str, cfg) -> tuple[list, list, Optional[str], str]:
  """Where a torchvision ResNet goes in a model: (stems, block formats, attention format, required regex)."""
  if model_name in ("tsm_resnet", "busy_tsm_resnet", "attention_tsm_resnet"):
    return [("stem",)], ["layer{s}_{b}"], "layer{s}_{b}_attn", r"^(stem|layer\d+_\d+)/"
  if model_name == "bqn_resnet":
    return ([("quiet_stem",), ("busy_stem",)], ["layer{s}_{b}/quiet", "layer{s}_{b}/busy"], None,
            r"^((quiet|busy)_stem|layer\d+_\d+/(quiet|busy))/")
  if model_name == "dan" and cfg.get("backbone", "tsm_resnet") == "tsm_resnet":
    return [("backbone", "stem")], ["backbone/layer{s}_{b}"], None, r"^backbone/(stem|layer\d+_\d+)/"
  raise ConversionError(
      f"a ResNet checkpoint cannot initialise config.model.name={model_name!r}; ResNet weights fit "
      f"tsm_resnet, busy_tsm_resnet, attention_tsm_resnet, bqn_resnet and dan (tsm_resnet backbone)")


def map_imagenet(sd: dict, model_name: str, cfg) -> tuple[Entries, list, str]:
  stems, blocks, _, required = resnet_instances(model_name, cfg)
  out, unmapped, dropped = {}, [], []
  for key in sd:
    parts = key.split(".")
    if parts[0] == "fc":
      dropped.append(key)
      continue
    try:
      if not _resnet_body(out, sd, key, parts, stems, blocks):
        unmapped.append(key)
    except _Unmapped:
      unmapped.append(key)
  return out, unmapped, required, dropped


def map_tsn(sd: dict, model_name: str, cfg) -> tuple[Entries, list]:
  if model_name not in ("tsm_resnet", "busy_tsm_resnet", "attention_tsm_resnet"):
    raise ConversionError(f"a TSN/TSM checkpoint (base_model.*, new_fc.*) fits tsm_resnet, busy_tsm_resnet "
                          f"or attention_tsm_resnet, not config.model.name={model_name!r}")
  sd = _strip_base(sd)
  out, unmapped = {}, []
  for key in sd:
    parts = key.split(".")
    try:
      if parts[0] == "new_fc" or (parts[0] == "fc" and len(parts) == 2):  # TSN with dropout 0 keeps base_model.fc
        _module_leaf(out, ("head", "fc"), parts[1], sd[key], key, "linear")
      elif parts[0] == "mbpf":
        _mbpm_key(out, ("mbpm",), parts[1:], sd[key], key)
      elif not _resnet_body(out, sd, key, parts, [("stem",)], ["layer{s}_{b}"], "layer{s}_{b}_attn"):
        unmapped.append(key)
    except _Unmapped:
      unmapped.append(key)
  return out, unmapped


_LC_R50 = {"up.1": (("lc", "to_busy_bn"), "bn"), "down.1": (("lc", "to_quiet_bn"), "bn"),
           "d_up.0": (("lc", "to_busy_w1", "conv"), "conv"), "d_up.1": (("lc", "to_busy_bn"), "bn"),
           "d_down.0": (("lc", "to_quiet_phi", "conv"), "conv"), "d_down.1": (("lc", "to_quiet_bn"), "bn")}


def map_bqn_resnet(sd: dict, model_name: str, cfg) -> tuple[Entries, list]:
  if model_name != "bqn_resnet":
    raise ConversionError(f"a BQN TSM-ResNet checkpoint fits config.model.name='bqn_resnet', not {model_name!r}")
  sd = _strip_base(sd)
  out, unmapped = {}, []
  for key in sd:
    parts = key.split(".")
    w = sd[key]
    try:
      if parts[0] == "mbpf1":
        _mbpm_key(out, ("busy_mbpm",), parts[1:], w, key)
      elif parts[0] in ("conv1", "bn1"):
        _module_leaf(out, ("quiet_stem", parts[0]), parts[1], w, key, "conv" if parts[0] == "conv1" else "bn")
      elif parts[0] in ("d_conv1", "d_bn1"):
        _module_leaf(out, ("busy_stem", parts[0][2:]), parts[1], w, key,
                     "conv" if parts[0] == "d_conv1" else "bn")
      elif parts[0] == "fc":
        _module_leaf(out, ("head", "fc"), parts[1], w, key, "linear")
      elif re.fullmatch(r"layer\d+", parts[0]) and len(parts) >= 4:
        block = (f"{parts[0]}_{parts[1]}",)
        rest = parts[2:]
        if rest[0] in ("path_c", "path_f"):
          _bottleneck_key(out, block + ("quiet" if rest[0] == "path_c" else "busy",), rest[1:], w, key)
        elif rest[0] == "mbpf":
          _mbpm_key(out, block + ("lc", "to_busy_mbpm"), rest[1:], w, key)
        elif ".".join(rest[:2]) in _LC_R50:
          sub, kind = _LC_R50[".".join(rest[:2])]
          _module_leaf(out, block + sub, rest[-1], w, key, kind)
        else:
          unmapped.append(key)
      else:
        unmapped.append(key)
    except _Unmapped:
      unmapped.append(key)
  return out, unmapped


# ------------------------------------------------------------------------------------------ X3D family
_X3D_STEM = {"conv.conv_t": ("conv_xy", "conv"), "conv.conv_xy": ("conv_t", "conv"), "norm": ("norm", "bn")}
_X3D_BLOCK = {"branch1_conv": (("shortcut_conv",), "conv"), "branch1_norm": (("shortcut_norm",), "bn"),
              "branch2.conv_a": (("conv_a",), "conv"), "branch2.norm_a": (("norm_a",), "bn"),
              "branch2.conv_b": (("conv_b",), "conv"), "branch2.norm_b": (("norm_b",), "bn"),
              "branch2.norm_b.0": (("norm_b",), "bn"),
              "branch2.norm_b.1.block.0": (("se", "reduce"), "conv"),
              "branch2.norm_b.1.block.2": (("se", "expand"), "conv"),
              "branch2.conv_c": (("conv_c",), "conv"), "branch2.norm_c": (("norm_c",), "bn")}
_X3D_HEAD = {"pool.pre_conv": (("conv_pre",), "conv"), "pool.pre_norm": (("norm_pre",), "bn"),
             "pool.post_conv": (("conv_post",), "conv"), "proj": (("fc",), "linear")}
_X3D_LC = {"up.1": (("lc", "to_busy_w1", "conv"), "conv"), "up.2": (("lc", "to_busy_bn"), "bn"),
           "down.1": (("lc", "to_quiet_phi", "conv"), "conv"), "down.2": (("lc", "to_quiet_bn"), "bn")}
_PATHWAY = {"path_c": "quiet", "path_f": "busy"}


def _x3d_key(out: Entries, parts: list, w, key: str, stem: tuple, stage_prefix: tuple, head: tuple,
             head_stage: int) -> bool:
  """One pytorchvideo X3D key ``blocks.I....`` (pathway part already removed)."""
  i = int(parts[1])
  leaf, rest = parts[-1], parts[2:-1]
  name = ".".join(rest)
  if i == 0:
    table, prefix = _X3D_STEM, stem
  elif i == head_stage:
    table, prefix = _X3D_HEAD, head
  else:
    if len(rest) < 3 or rest[0] != "res_blocks":
      return False
    prefix = stage_prefix + (f"stage{i}_{rest[1]}",)
    name = ".".join(rest[2:])
    table = _X3D_BLOCK
  if name not in table:
    return False
  sub, kind = table[name]
  sub = (sub,) if isinstance(sub, str) else sub
  _module_leaf(out, prefix + sub, leaf, w, key, kind)
  return True


def map_x3d(sd: dict, model_name: str, cfg) -> tuple[Entries, list]:
  if model_name == "x3d":
    base = ()
  elif model_name == "dan" and str(cfg.get("backbone", "")).startswith("x3d"):
    base = ("backbone",)
  else:
    raise ConversionError(f"an X3D checkpoint fits config.model.name='x3d' or a DAN with an X3D backbone, "
                          f"not {model_name!r}")
  sd = _strip_base(sd)
  out, unmapped = {}, []
  heads = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
  head_stage = heads[-1] if heads else 5
  for key in sd:
    parts = key.split(".")
    if parts[0] != "blocks" or not _x3d_key(out, parts, sd[key], key, base + ("stem",), base,
                                            base + ("head",), head_stage):
      unmapped.append(key)
  return out, unmapped


def map_bqn_x3d(sd: dict, model_name: str, cfg) -> tuple[Entries, list]:
  if model_name != "bqn_x3d":
    raise ConversionError(f"a BQN X3D checkpoint fits config.model.name='bqn_x3d', not {model_name!r}")
  sd = _strip_base(sd)
  out, unmapped = {}, []
  if cfg.get("heads", "separate") == "shared":  # two checkpoint heads cannot fill one shared head
    raise ConversionError("the reference BQN X3D has one head per pathway; use model.heads='separate'")
  head_stage = max((int(k.split(".")[1]) for k in sd if k.startswith("blocks.")), default=5)
  for key in sd:
    parts = key.split(".")
    w = sd[key]
    try:
      if parts[0] == "mbpf1":
        _mbpm_key(out, ("busy_mbpm",), parts[1:], w, key)
        continue
      if parts[0] != "blocks":
        unmapped.append(key)
        continue
      i = int(parts[1])
      if i in (0, head_stage):
        if parts[2] not in _PATHWAY:
          unmapped.append(key)
          continue
        p = _PATHWAY[parts[2]]
        head = (f"{p}_head",)
        if not _x3d_key(out, parts[:2] + parts[3:], w, key, (f"{p}_stem",), (), head, head_stage):
          unmapped.append(key)
        continue
      # blocks.S.res_blocks.B.{path_c|path_f|mbpf|up|down}....
      if len(parts) < 6 or parts[2] != "res_blocks":
        unmapped.append(key)
        continue
      block = (f"stage{i}_{parts[3]}",)
      rest = parts[4:]
      if rest[0] in _PATHWAY:
        name = ".".join(rest[1:-1])
        if name not in _X3D_BLOCK:
          unmapped.append(key)
          continue
        sub, kind = _X3D_BLOCK[name]
        _module_leaf(out, block + (_PATHWAY[rest[0]],) + sub, rest[-1], w, key, kind)
      elif rest[0] == "mbpf":
        _mbpm_key(out, block + ("lc", "to_busy_mbpm"), rest[1:], w, key)
      elif ".".join(rest[:2]) in _X3D_LC:
        sub, kind = _X3D_LC[".".join(rest[:2])]
        _module_leaf(out, block + sub, rest[-1], w, key, kind)
      else:
        unmapped.append(key)
    except (_Unmapped, ValueError):
      unmapped.append(key)
  return out, unmapped


# ------------------------------------------------------------------------------------------ detection
def detect_source(keys: Iterable[str]) -> str:
  """Which layout a (normalised) state_dict has; see the module docstring."""
  keys = list(keys)
  bare = {k[len("base_model."):] if k.startswith("base_model.") else k for k in keys}
  if any(k.startswith("blocks.0.path_") for k in bare):
    return "bqn_x3d"
  if any(k.startswith("blocks.0.conv.") for k in bare):
    return "x3d"
  if "d_conv1.weight" in bare or any(".path_c." in k for k in bare):
    return "bqn_resnet"
  if "layer1.0.conv1.weight" in bare or "layer1.0.conv1.net.weight" in bare or \
      "layer1.0.block.conv1.net.weight" in bare:
    wrapped = any(k.startswith("base_model.") or k.startswith("new_fc.") for k in keys)
    shifted = any(".net." in k for k in bare)
    return "tsn" if (wrapped or shifted) else "imagenet"
  raise ConversionError(
      "cannot tell which model the checkpoint holds (first keys: " + ", ".join(sorted(keys)[:8]) +
      "); pass --source=" + "|".join(SOURCES[1:]))


_MAPPERS = {"tsn": map_tsn, "bqn_resnet": map_bqn_resnet, "x3d": map_x3d, "bqn_x3d": map_bqn_x3d}


# ============================================================================================ assembly
def _flatten(tree, prefix=()) -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) or hasattr(v, "items"):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: dict) -> dict:
  out: dict = {}
  for path, v in flat.items():
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = v
  return out


def _fmt(path: tuple) -> str:
  return f"{path[0]}:{'/'.join(path[1:])}"


def _listing(title: str, items: list, limit: int = 40) -> str:
  if not items:
    return ""
  more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
  return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(items[:limit]) + more


def _resnet_depth_hint(sd: dict, model_cfg) -> str:
  """A sentence when a ResNet checkpoint's depth differs from the config's (R101 into R50 ...)."""
  blocks = set()
  for k in sd:
    m = re.match(r"(?:base_model\.)?layer3\.(\d+)\.", k)
    if m:
      blocks.add(m.group(1))
  n = len(blocks)
  if not n:
    return ""
  want = tuple(model_cfg.get("stage_sizes") or ()) or {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}.get(
      model_cfg.get("depth", 50), ())
  if len(want) == 4 and want[2] != n:
    depth = {6: 50, 23: 101}.get(n)
    what = f"ResNet-{depth}" if depth else f"a ResNet with {n} blocks in layer3"
    return (f"\n  The checkpoint is {what}; config.model has {want[2]} blocks in layer3 "
            f"(depth={model_cfg.get('depth', 50)}, stage_sizes={tuple(model_cfg.get('stage_sizes') or ())}).")
  return ""


def target_shapes(config) -> tuple[Any, dict]:
  """The model of ``config`` and the abstract ``{collection: tree}`` of its ``init``."""
  import jax
  import jax.numpy as jnp
  from vidjax import config_utils
  from vidjax.models import registry
  model = registry.build(config.model, dtype=jnp.float32)
  shape = config_utils.input_shape(config, batch=1)
  abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                               jnp.zeros(shape, jnp.float32), train=False))
  return model, abstract


def initial_variables(model, config) -> dict:
  """The variables ``train.py`` would start from (``vidjax.train.state.create``'s keys), as numpy."""
  import jax
  import jax.numpy as jnp
  from vidjax import config_utils
  # the same random bits as train.py (loop.setup sets this flag from the config too)
  jax.config.update("jax_threefry_partitionable", bool(config.get("jax_threefry_partitionable", False)))
  shape = config_utils.input_shape(config, batch=1)
  seed = int(config.seed)
  init = jax.jit(lambda: model.init({"params": jax.random.key(seed), "dropout": jax.random.key(seed + 1)},
                                    jnp.zeros(shape, jnp.float32), train=False))
  return jax.tree.map(np.asarray, init())


def convert_state_dict(state_dict: dict, config, source: str = "auto", head: str = "keep",
                       init_fn: Optional[Callable[[], dict]] = None, verbose: bool = False):
  """A state_dict (name -> array) -> ``({'params', 'batch_stats'}, report)`` for ``config.model``.

  Args:
    state_dict: tensors by PyTorch name (torch tensors or numpy arrays).
    config: the experiment config whose model receives the weights.
    source: one of ``SOURCES`` ('auto' detects it from the names).
    head: 'keep' (the checkpoint's classifier; its class count must match) or 'init' (classifier left at
      its initial value).
    init_fn: returns the initial variables (default ``initial_variables``); called only when some
      parameters are not in the file.
  Returns:
    the variables (numpy float32, nested dicts) and a report dict: ``source``, ``converted`` (number of
    arrays taken from the file), ``initialised`` (target paths left at init), ``dropped`` (file keys not
    used on purpose, e.g. the ImageNet fc).
  Raises:
    ConversionError listing missing / extra / wrongly shaped keys.
  """
  if head not in ("keep", "init"):
    raise ValueError(f"head must be 'keep' or 'init', got {head!r}")
  sd = normalise_keys(state_dict)
  src = detect_source(sd) if source == "auto" else source
  if src not in SOURCES[1:]:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  name = config.model.name
  dropped: list = []
  required = None
  if src == "imagenet":
    entries, unmapped, required, dropped = map_imagenet(sd, name, config.model)
  else:
    entries, unmapped = _MAPPERS[src](sd, name, config.model)
  # report the file's own names (the mappers see them without the TSN wrapper's 'base_model.')
  names = {(k[len("base_model."):] if k.startswith("base_model.") else k): k for k in sd}
  entries = {p: (arr, names.get(key, key)) for p, (arr, key) in entries.items()}
  unmapped = [names.get(k, k) for k in unmapped]
  model, abstract = target_shapes(config)
  target = _flatten(jax_to_dict(abstract))

  def is_head(path):  # a classifier parameter: the Dense named 'fc'
    return len(path) >= 3 and path[-2] == "fc"

  if head == "init":
    for path in [p for p in entries if is_head(p)]:
      dropped.append(entries.pop(path)[1])

  extra = [f"{entries[p][1]} -> {_fmt(p)} (no such parameter in {name})" for p in entries if p not in target]
  extra += [f"{k} (not a parameter of any supported layout)" for k in unmapped]
  wrong = []
  for p, (arr, key) in entries.items():
    if p in target and tuple(arr.shape) != tuple(target[p].shape):
      wrong.append(f"{key} -> {_fmt(p)}: checkpoint {tuple(arr.shape)} (converted), "
                   f"model {tuple(target[p].shape)}")
  missing = [p for p in target if p not in entries]
  allowed: list = []
  if src == "imagenet":
    rx = re.compile(required)
    allowed = [p for p in missing if not rx.search("/".join(p[1:]))]
  elif head == "init":
    allowed = [p for p in missing if is_head(p)]
  must = [_fmt(p) for p in missing if p not in allowed]
  if extra or wrong or must:
    hint = _resnet_depth_hint(sd, config.model)
    fc = [w for w in wrong if "fc" in w.split(" -> ")[1]]
    if fc:
      hint += ("\n  The classifier has another number of classes: set --config.model.num_classes, or pass "
               "--head=init to start it from scratch.")
    if any(".cg." in e for e in extra):
      hint += ("\n  The checkpoint has the reference's ChannelGate (cg) before an RNL: use "
               "configs/se_rnl_tsm_k400.py:code (attention blocks ('cg', 'rnl') at channel position (2, 0)).")
    raise ConversionError(
        f"{src} checkpoint does not fit config.model ({name}):"
        + _listing("missing (parameters of the model not in the checkpoint)", must)
        + _listing("extra (checkpoint keys with no place in the model)", extra)
        + _listing("wrong shape", wrong) + hint)

  flat = {p: arr for p, (arr, _) in entries.items()}
  if allowed:
    init = (init_fn or (lambda: initial_variables(model, config)))()
    init_flat = _flatten(jax_to_dict(init))
    for p in allowed:
      flat[p] = np.asarray(init_flat[p], np.float32)
  variables = _unflatten(flat)
  variables.setdefault("params", {})
  if "batch_stats" in abstract:
    variables.setdefault("batch_stats", {})
  report = {"source": src, "model": name, "converted": len(entries),
            "initialised": sorted("/".join(p[1:]) for p in allowed), "dropped": sorted(dropped)}
  if verbose:
    print(summary(report))
  return variables, report


def jax_to_dict(tree) -> dict:
  """Flax FrozenDict / dict trees -> plain nested dicts."""
  if hasattr(tree, "items"):
    return {k: jax_to_dict(v) for k, v in tree.items()}
  return tree


def summary(report: dict) -> str:
  init = report["initialised"]
  groups: dict = {}
  for p in init:  # grouped by module kind: 'layer*/lc', 'layer*_attn', 'head', 'busy_mbpm' ...
    parts = p.split("/")
    top = re.sub(r"^(layer|stage)\d+_\d+", r"\1*", parts[0])
    if top in ("layer*", "stage*") and len(parts) > 2:
      top += "/" + parts[1]
    groups[top] = groups.get(top, 0) + 1
  lines = [f"source: {report['source']} -> {report['model']}: {report['converted']} arrays converted"]
  if report["dropped"]:
    lines.append(f"not used: {', '.join(report['dropped'])}")
  if init:
    lines.append(f"left at initialisation: {len(init)} arrays in " +
                 ", ".join(f"{k} ({v})" for k, v in sorted(groups.items())))
  return "\n".join(lines)


# ============================================================================================ writing
def write_checkpoint(variables: dict, config, workdir: str, step: int = 0) -> str:
  """Writes ``variables`` as step ``step`` of ``workdir/checkpoints`` (items state, params, model).

  The ``state`` holds a fresh optimiser state (``config.optim``), so ``train.py --workdir=WORKDIR``
  continues from these weights; ``params`` is what evaluation, ``predict.py`` and notebooks restore.
  """
  import jax
  import jax.numpy as jnp
  from vidjax.train import checkpoint, optim
  from vidjax.train.state import TrainState
  path = os.path.join(workdir, "checkpoints")
  if os.path.isdir(path) and any(d.isdigit() for d in os.listdir(path)):
    raise ConversionError(f"{path} already holds checkpoints; write the converted weights to a new --workdir")
  params = jax.tree.map(jnp.asarray, variables["params"])
  batch_stats = jax.tree.map(jnp.asarray, variables.get("batch_stats", {}))
  spe = int(config.optim.get("steps_per_epoch", -1))
  tx = optim.make_optimizer(config, params, spe if spe > 0 else 1)
  state = TrainState(step=jnp.asarray(step, jnp.int32), params=params, batch_stats=batch_stats,
                     opt_state=tx.init(params))
  os.makedirs(workdir, exist_ok=True)
  mgr = checkpoint.manager(workdir, config)
  checkpoint.save(mgr, step, state, config, force=True)
  mgr.wait_until_finished()
  mgr.close()
  return path


def convert_file(checkpoint_path: str, config, workdir: str, source: str = "auto", head: str = "keep",
                 verbose: bool = True) -> dict:
  """``load_state_dict`` + ``convert_state_dict`` + ``write_checkpoint``; returns the report."""
  sd = load_state_dict(checkpoint_path)
  variables, report = convert_state_dict(sd, config, source=source, head=head)
  report["checkpoint_dir"] = write_checkpoint(variables, config, workdir)
  if verbose:
    print(summary(report))
    print(f"wrote step 0 to {report['checkpoint_dir']}")
  return report


# =============================================================================================== CLI
def main(argv=None):
  from absl import app, flags
  from ml_collections import config_flags
  flags_ = flags.FLAGS
  config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
  flags.DEFINE_string("checkpoint", None, "PyTorch .pth/.pth.tar, .npz or .safetensors file.")
  flags.DEFINE_string("workdir", None, "Output directory: the checkpoint goes to WORKDIR/checkpoints/0.")
  flags.DEFINE_enum("source", "auto", SOURCES, "Layout of the file (auto: from its key names).")
  flags.DEFINE_enum("head", "keep", ["keep", "init"], "keep the checkpoint's classifier, or init it.")
  flags.mark_flags_as_required(["config", "checkpoint", "workdir"])

  def run(args):
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's INFO/WARNING chatter
    if len(args) > 1:
      raise app.UsageError(f"unexpected arguments: {args[1:]}")
    try:
      convert_file(flags_.checkpoint, flags_.config, flags_.workdir, flags_.source, flags_.head)
    except (ConversionError, FileNotFoundError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  app.run(run, argv=argv)


if __name__ == "__main__":
  from vidjax.config_utils import check_overrides
  check_overrides(sys.argv)
  main()
