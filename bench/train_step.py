"""Training-step speed of the zoo models: compile time, step time, clips/s, GFLOP/s, peak host memory.

For each model, at the input size stated below, the step is built exactly as ``train.py`` builds it
(``vidjax.train.loop.setup`` -> model, optimiser, sharded initial state; ``vidjax.train.step.jit_train_step``:
uint8 -> normalise on the device, forward in train mode, cross-entropy, backward, grad clip, SGD with
the config's parameter groups, BN statistics update) and fed a random uint8 batch of the config's shape
(``vidjax.config_utils.input_shape``) with random labels:

* ``compile``: wall time of ``jit(step).lower(state, batch).compile()`` (trace + lower + XLA compile; the
  persistent compilation cache is switched off);
* ``step``: median and inter-quartile range of ``--steps`` steps, each ended by ``block_until_ready``,
  after ``--warmup`` steps; ``clips/s`` = batch / median step;
* ``GFLOP/s``: counted FLOPs / median step, with counted FLOPs per step = 3 x 2 x (conv/linear MACs of
  one clip, ``vidjax.tools.flops.report``: the thesis' counting) x batch. The factor 3 is the usual
  convention that the backward pass costs about twice the forward pass (gradients w.r.t. activations
  and w.r.t. weights); the factor 2 turns multiply-adds into FLOPs. Attention matmuls, BN, activations,
  pooling and functional convolutions are not counted (neither are they in the thesis' FLOPs), so this
  is a lower bound on the arithmetic actually done. ``--json`` also records XLA's own FLOP count of the
  compiled step (which, for the chunked RNL attention, counts the loop body once);
* ``peak RSS``: the process' resident-set high-water mark (``VmHWM``; reset through
  ``/proc/self/clear_refs`` before each phase, Linux; otherwise ``ru_maxrss``) over set-up + compile,
  and over the warm-up steps. Every model runs in its own fresh subprocess (this script re-invoking
  itself with ``--_single``), so the numbers of one model do not carry into the next.

``--compare-torch`` runs, in the same subprocess and on the same input size, batch and number of
classes, the author's PyTorch model (torch 2.13.0, CPU, ``torch.set_num_threads(--threads)``, train
mode): forward, ``CrossEntropyLoss`` (the config's label smoothing), backward, ``clip_grad_norm_`` (the
config's ``grad_clip``, as the reference's ``--gd``), ``SGD`` (the config's lr, momentum (0.9) and
weight decay; one parameter group). The torch input is a float32 clip already normalised (the reference
normalises in its loader workers, vidjax inside the step). After both warm-ups the timed steps
alternate (one vidjax step, one torch step, ...) so that load changes on a shared machine hit both
alike (``--sequential``: all vidjax steps, then all torch steps); the table gives the ratio
``torch ms / vidjax ms`` (> 1: vidjax is faster). Run it on an otherwise idle machine: torch's OpenMP
threads meet at a barrier after every parallel operator, and when other processes hold the cores
each barrier waits for a descheduled thread (on 2 cores at load average 6, the ``--tiny`` torch TSM
step took 2.4 s with 2 threads and 25 ms with ``--threads=1``); each model's run records the load
average before and after (``--json``) and warns when it starts above half the core count. The models:

* TSM-R50 and RNL-TSM-R50: the reference TSN wrapper (``ops/models.py`` of
  ``guoxih/region-based-non-local-network``: ResNet-50, ``make_temporal_shift`` blockres 1/8,
  ``make_non_local`` for RNL, dropout -> ``new_fc``, average consensus; ``partial_bn=False`` as vidjax
  trains every BN). torchvision has no CPU wheel here, so ``torchvision.models.resnet50`` is the
  torchvision-layout ResNet of ``tests/parity/rnl_parity.py`` (the same layers). The reference's
  ``make_non_local`` also puts a ChannelGate (GCNet-style, reduction 2) before the first RNL block and
  computes F_theta as a dense grouped conv with a 0/1 mask (32x the depthwise arithmetic); both are
  part of the author's model and are timed as such, while ``configs/rnl_tsm_k400.py`` is the thesis'
  RNL-TSM-R50 (no ChannelGate, depthwise F_theta).
* BQN TSM-R50: ``resnet50`` of ``src/bqn_resnet_reverse.py`` (``guoxih/busy-quiet-net``; the TSN
  wrapper's average over segments done here), with the missing ``ops/depthwise_conv.py`` stubbed as in
  ``tests/parity/bqn_parity.py``.
* X3D-M: ``x3d_m`` of ``src/x3d.py`` (busy-quiet-net), pytorchvideo's X3D builder with the author's
  input wrapper. Needs ``pytorchvideo`` and ``fvcore``: when this Python lacks them, pass a
  site-packages folder that has them with ``--torch-path`` (appended to ``sys.path``; torch itself must
  be the same version). torchvision and pytorchvideo's old ``SqueezeExcitation`` are stubbed as in
  ``tests/parity/x3d_parity.py`` / ``bqn_parity.py``.

The reference sources come from ``--bqn-repo`` / ``--rnl-repo``: a checkout, or a bare git mirror whose
``HEAD`` is exported to a temporary folder (``git archive HEAD | tar -x``). Nothing of them is copied
into this repository. If a torch model cannot be built, the reason is printed and the vidjax numbers
are still reported.

Sizes (``MODELS``): BQN TSM-R50 2 segments x 3 frames, Busy 256^2 / Quiet 160^2 (``configs/bqn_k400.py``);
TSM-R50 and RNL-TSM-R50 8 x 112^2 (``configs/tsm_k400.py``, ``configs/rnl_tsm_k400.py``); X3D-M
16 x 256^2 (``configs/x3d_m_ssv1.py``, 174 classes). ``--tiny`` shrinks them (fewer blocks, narrower,
smaller frames; the torch models are shrunk the same way) for a smoke test. ``--set KEY=VALUE``
overrides a config field for every model (e.g. ``--set data.crop_size=224``); the torch models follow.

    python bench/train_step.py [--models tsm_r50,rnl_tsm_r50,bqn_tsm_r50,x3d_m] [--batch 2] [--steps 10]
        [--warmup 2] [--compare-torch] [--bqn-repo DIR] [--rnl-repo DIR] [--torch-path DIR]
        [--threads N] [--sequential] [--set KEY=VALUE] [--json out.json] [--tiny] [--check] [--write]

``--check`` only builds the configs and (with ``--compare-torch``) the torch models and prints their
parameter counts and MACs (no step is compiled or run). ``--write`` puts the table into
bench/RESULTS.md under '## Training step' (only that section).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.results_io import proc_status as _status, reset_peak as _reset_peak, write_section  # noqa: E402

SECTION = "## Training step"
MIRRORS = "/work/.mirror"
DEFAULT_BQN_REPO = os.path.join(MIRRORS, "guoxih+busy-quiet-net", "repo")
DEFAULT_RNL_REPO = os.path.join(MIRRORS, "guoxih+region-based-non-local-network", "repo")

# name -> config file, the stated input size (config overrides), the --tiny overrides on top, and
# which reference builder is its PyTorch counterpart.
MODELS = {
    "bqn_tsm_r50": dict(
        title="BQN TSM-R50", config="configs/bqn_k400.py", torch="bqn",
        size={"data.num_segments": 2, "data.frames_per_segment": 3, "data.crop_size": 256,
              "model.quiet_size": 160},
        # bqn_parity's reduced size (Busy 128^2 / Quiet 64^2: every stage keeps its size ratio), 1 block/stage
        tiny={"model.stage_sizes": (1, 1, 1, 1), "data.crop_size": 128, "model.quiet_size": 64}),
    "tsm_r50": dict(
        title="TSM-R50", config="configs/tsm_k400.py", torch="tsm",
        size={"data.num_segments": 8, "data.crop_size": 112},
        tiny={"model.width": 0.25, "model.stage_sizes": (1, 1, 1, 1), "data.num_segments": 4,
              "data.crop_size": 32}),
    "rnl_tsm_r50": dict(
        title="RNL-TSM-R50", config="configs/rnl_tsm_k400.py", torch="rnl",
        size={"data.num_segments": 8, "data.crop_size": 112},
        # the reference's make_non_local indexes layer2[3] and layer3[5]: res3/res4 keep 4 / 6 blocks
        tiny={"model.width": 0.25, "model.stage_sizes": (1, 4, 6, 1), "data.num_segments": 4,
              "data.crop_size": 64}),
    "x3d_m": dict(
        title="X3D-M", config="configs/x3d_m_ssv1.py", torch="x3d",
        size={"data.num_segments": 16, "data.crop_size": 256},
        tiny={"data.num_segments": 4, "data.crop_size": 64}),
}
DEFAULT_MODELS = ("bqn_tsm_r50", "tsm_r50", "rnl_tsm_r50", "x3d_m")
MIB = 2.0 ** 20


# ============================================================================================ helpers
def _peak(ok: bool) -> int:
  """Peak RSS since the last successful ``_reset_peak`` (else since the process started)."""
  hwm = _status("VmHWM") if ok else -1
  return hwm if hwm > 0 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _load_parity(name: str):
  """``tests/parity/<name>.py`` as a module (its torch stubs and reference importers are reused)."""
  path = os.path.join(ROOT, "tests", "parity", name + ".py")
  spec = importlib.util.spec_from_file_location(f"_parity_{name}", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _stats(times) -> dict:
  t = np.asarray(times, np.float64)
  q1, med, q3 = np.percentile(t, [25, 50, 75])
  return {"median_s": float(med), "q1_s": float(q1), "q3_s": float(q3), "min_s": float(t.min()),
          "times_s": [float(x) for x in t]}


def parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config, overrides: dict) -> None:
  for key, value in overrides.items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value


def build_config(name: str, tiny: bool, batch: int, extra: dict):
  """The model's experiment config at the stated size (``--tiny`` / ``--set`` on top), synthetic data."""
  import ml_collections
  from vidjax import config_utils
  spec = MODELS[name]
  c = config_utils.load_config_file(os.path.join(ROOT, spec["config"]))
  apply_overrides(c, spec["size"])
  if tiny:
    apply_overrides(c, spec["tiny"])
  apply_overrides(c, extra)
  # the step does not read the data source; setup() builds one, so point it at the lazy synthetic source
  d = c.data
  d.dataset = "synthetic"
  d.synthetic = ml_collections.ConfigDict(dict(
      num_train=max(64, batch), num_val=8, num_frames=config_utils.frames_per_clip(c), height=d.crop_size,
      width=d.crop_size, num_classes=8, seed=0))
  c.optim.batch_size = batch
  c.optim.steps_per_epoch = 1000  # only the lr schedule reads it
  return c


def describe_input(config, batch: int) -> str:
  d = config.data
  frames = f"{d.num_segments}x{d.frames_per_segment}" if d.frames_per_segment > 1 else f"{d.num_segments}"
  s = f"{batch} x {frames} x {d.crop_size}^2"
  if config.model.name.startswith("bqn"):
    q = config.model.get("quiet_size", 0) or round(d.crop_size * config.model.get("quiet_scale", 0.625))
    s += f" (Quiet {q}^2)"
  return s


# ============================================================================================== torch
class TorchUnavailable(RuntimeError):
  pass


def _layers(config) -> tuple:
  sizes = tuple(config.model.get("stage_sizes", ()) or ())
  if sizes:
    return tuple(int(s) for s in sizes)
  depth = int(config.model.get("depth", 50))
  return {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]


def build_torch(config, kind: str, refs: dict):
  """(model, forward(x) -> logits, input tensor, description) of the author's model for ``config``."""
  import torch
  d, m = config.data, config.model
  t, s, k = int(d.num_segments), int(d.crop_size), int(m.num_classes)
  dropout = float(m.get("dropout", 0.5))
  quiet = io.StringIO()  # the reference prints its configuration while building
  if kind in ("tsm", "rnl"):
    ref = refs.get("rnl")
    if not ref:
      raise TorchUnavailable("no region-based-non-local-network checkout (--rnl-repo)")
    rnl_parity = _load_parity("rnl_parity")
    rnl_parity._install_stubs()  # torchvision-layout ResNet as torchvision.models, empty archs.small_resnet
    tv = sys.modules["torchvision"]
    layers, width = _layers(config), float(m.get("width", 1.0))
    if kind == "rnl" and (layers[1] < 4 or layers[2] < 6):
      raise TorchUnavailable(f"the reference's make_non_local needs >= 4 res3 and >= 6 res4 blocks, got {layers}")
    tv.models.resnet50 = lambda pretrained=False, **kw: tv.models.ResNet(layers=layers, width=width)
    sys.path.insert(0, ref)
    models = importlib.import_module("ops.models")
    with contextlib.redirect_stdout(quiet):
      net = models.TSN(k, t, "RGB", base_model="resnet50", consensus_type="avg", dropout=dropout,
                       partial_bn=False, pretrain="scratch", is_shift=bool(m.get("shift", True)),
                       shift_div=8, shift_place="blockres", temporal_pool=False, non_local=kind == "rnl",
                       print_spec=False)
    x = torch.randn(_batch(config), t * 3, s, s)
    desc = ("ops/models.py TSN(resnet50" + (", non_local" if kind == "rnl" else "") +
            f", blockres shift 1/8), layers {layers}, width {width}")
    return net, net, x, desc
  if kind in ("bqn", "x3d"):
    ref = refs.get("bqn")
    if not ref:
      raise TorchUnavailable("no busy-quiet-net checkout (--bqn-repo)")
  if kind == "bqn":
    bqn_parity = _load_parity("bqn_parity")
    _, rev = bqn_parity.import_reference(ref)  # stubs ops.depthwise_conv, imports src.bpf / src.bqn_resnet_reverse
    fps = int(d.frames_per_segment)
    q = m.get("quiet_size", 0) or round(s * m.get("quiet_scale", 0.625))
    rev.DuoPath.count = 0  # class-level block counter (REFERENCE.md 12.10)
    layers = _layers(config)
    with contextlib.redirect_stdout(quiet):
      net = rev._resnet("resnet50", rev.DuoPath, list(layers), False, True, data_length=fps, num_segments=t,
                        num_classes=k, dropout=dropout, c_scale=q / s)
    n = _batch(config)
    x = torch.randn(n * t, fps * 3, s, s)  # TSN layout: (N*T, frames x colours, H, W)

    def forward(inp):
      return net(inp).view(n, t, k).mean(1)  # the TSN wrapper's average consensus
    return net, forward, x, f"src/bqn_resnet_reverse.py resnet50 layers {layers}, c_scale {q}/{s}"
  if kind == "x3d":
    if importlib.util.find_spec("pytorchvideo") is None or importlib.util.find_spec("fvcore") is None:
      raise TorchUnavailable("the author's X3D needs pytorchvideo and fvcore, which this Python lacks: pass "
                             "--torch-path=<site-packages with pytorchvideo==0.1.5 and fvcore>")
    x3d_parity = _load_parity("x3d_parity")
    x3d_parity._import_create_x3d()  # stubs torchvision.ops when torchvision cannot load
    se_mod = importlib.import_module("pytorchvideo.layers.squeeze_excitation")
    if not hasattr(se_mod, "SqueezeExcitation"):  # pytorchvideo 0.1.5 moved it to fvcore (REFERENCE 12.9)
      se_mod.SqueezeExcitation = importlib.import_module("fvcore.nn.squeeze_excitation").SqueezeExcitation
    sys.path.insert(0, ref)
    x3d = importlib.import_module("src.x3d")
    if m.get("variant", "m") != "m":
      raise TorchUnavailable(f"only X3D-M is mapped to the reference, got variant {m.variant!r}")
    with contextlib.redirect_stdout(quiet):
      net = x3d.x3d_m(k, pretrained=False, input_clip_length=t, input_crop_size=s, dropout_rate=dropout)
    x = torch.randn(_batch(config), t * 3, s, s)  # (N, T x colours, H, W)
    return net, net, x, f"src/x3d.py x3d_m(input_clip_length={t}, input_crop_size={s})"
  raise ValueError(kind)


def _batch(config) -> int:
  return int(config.optim.batch_size)


class TorchStep:
  """One reference training step: forward, cross-entropy, backward, grad clip, SGD."""

  def __init__(self, config, kind: str, refs: dict, threads: int):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    self.torch = torch
    self.net, self.forward, self.x, self.desc = build_torch(config, kind, refs)
    self.net.train()
    o = config.optim
    self.y = torch.randint(0, int(config.model.num_classes), (_batch(config),))
    self.loss = torch.nn.CrossEntropyLoss(label_smoothing=float(o.get("label_smoothing", 0.0)))
    self.params = [p for p in self.net.parameters() if p.requires_grad]
    self.opt = torch.optim.SGD(self.params, lr=float(o.lr), momentum=float(o.momentum),
                               weight_decay=float(o.weight_decay))
    self.clip = float(o.get("grad_clip", 0.0) or 0.0)
    self.num_params = int(sum(p.numel() for p in self.net.parameters() if p.requires_grad))
    self.version = torch.__version__

  def __call__(self) -> float:
    self.opt.zero_grad(set_to_none=True)
    loss = self.loss(self.forward(self.x), self.y)
    loss.backward()
    if self.clip > 0:
      self.torch.nn.utils.clip_grad_norm_(self.params, self.clip)
    self.opt.step()
    return float(loss.detach())


# ============================================================================================ one model
def run_single(name: str, args) -> dict:
  """Everything for one model, in this (fresh) process."""
  import jax
  try:
    jax.config.update("jax_enable_compilation_cache", False)
  except Exception:  # noqa: BLE001  (older jax: no such option; no cache unless a cache dir is set)
    pass
  from vidjax.tools import flops
  from vidjax.train import loop, sharding, step as step_lib

  extra = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
  if args.depthwise != "auto":  # vidjax/ops/depthwise.py: grouped conv vs shifted sums on CPU
    from vidjax.ops import depthwise
    depthwise.DEFAULT_IMPL = args.depthwise
  config = build_config(name, args.tiny, args.batch, extra)
  spec = MODELS[name]
  out = {"model": name, "title": spec["title"], "config": spec["config"], "tiny": args.tiny,
         "input": describe_input(config, args.batch), "batch": args.batch,
         "input_shape": None, "overrides": {**spec["size"], **(spec["tiny"] if args.tiny else {}), **extra}}
  out["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["overrides"].items()}
  out["load_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
  cores = _cores()
  if out["load_start"] and out["load_start"][0] > 0.5 * cores and not args.check:
    print(f"[{name}] WARNING: load average {out['load_start'][0]:.1f} on {cores} cores: other jobs share the "
          "CPUs; step times (torch's OpenMP threads especially) will be inflated", flush=True)
  from vidjax import config_utils
  out["input_shape"] = list(config_utils.input_shape(config, batch=args.batch))
  print(f"[{name}] {spec['title']}: input {out['input']}, config {spec['config']}", flush=True)

  rep = flops.report(config)  # shapes only: eval_shape + a lowered (not compiled) forward
  out.update(params=rep["params"], gmacs_conv_linear=rep["gmacs_conv_linear"], gmacs_xla=rep["gmacs_total"])
  out["gflop_per_step_counted"] = 3 * 2 * rep["gmacs_conv_linear"] * args.batch
  print(f"[{name}] {rep['params']:,} params, {rep['gmacs_conv_linear']:.2f} GMACs conv/linear per clip "
        f"-> {out['gflop_per_step_counted']:.1f} GFLOP per step (3 x 2 x MACs x batch)", flush=True)

  torch_step = None
  refs = {"bqn": args.bqn_repo, "rnl": args.rnl_repo}
  if args.check:
    if args.compare_torch:
      _add_torch_path(args)
      try:
        torch_step = TorchStep(config, spec["torch"], refs, args.threads)
        out.update(torch_params=torch_step.num_params, torch_model=torch_step.desc)
        print(f"[{name}] torch: {torch_step.desc}: {torch_step.num_params:,} params", flush=True)
      except Exception as e:  # noqa: BLE001
        out["torch_error"] = f"{type(e).__name__}: {e}"
        print(f"[{name}] torch model NOT built: {out['torch_error']}", flush=True)
    return out

  # ---------------------------------------------------------------- vidjax: set-up and compile
  ok = _reset_peak()
  rss0 = _status("VmRSS")
  t0 = time.perf_counter()
  s = loop.setup(config, "")
  state = s["init"]()
  jax.block_until_ready(state)
  out["init_s"] = time.perf_counter() - t0
  mesh = s["mesh"]
  rng = np.random.default_rng(0)
  shape = config_utils.input_shape(config, batch=args.batch)
  host = {"video": rng.integers(0, 256, size=shape, dtype=np.uint8),
          "label": rng.integers(0, int(config.model.num_classes), size=(args.batch,), dtype=np.int32)}
  batch = sharding.to_global(host, mesh)
  train_step = step_lib.jit_train_step(s["model"], s["tx"], config, s["state_sharding"],
                                       sharding.data_sharded(mesh), total_steps=s["total_steps"])
  t0 = time.perf_counter()
  lowered = train_step.lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  out.update(lower_s=t1 - t0, xla_compile_s=t2 - t1, compile_s=t2 - t0)
  from vidjax.train import compiler
  out["compiler_options"] = compiler.step_options(config) or {}
  out["rss_start_mib"] = rss0 / MIB
  out["rss_compile_mib"] = _peak(ok) / MIB
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out["gflop_per_step_xla"] = float(cost.get("flops", 0.0)) / 1e9
  except Exception:  # noqa: BLE001
    out["gflop_per_step_xla"] = None
  try:
    mem = compiled.memory_analysis()
    out["xla_temp_mib"] = mem.temp_size_in_bytes / MIB
    out["xla_argument_mib"] = mem.argument_size_in_bytes / MIB
  except Exception:  # noqa: BLE001
    pass
  print(f"[{name}] vidjax: init {out['init_s']:.1f}s, compile {out['compile_s']:.1f}s "
        f"(lower {out['lower_s']:.1f}s + XLA {out['xla_compile_s']:.1f}s), peak RSS {out['rss_compile_mib']:.0f} MiB",
        flush=True)

  def jax_step(st):
    st, m = compiled(st, batch)
    jax.block_until_ready((st, m))
    return st, m

  # ---------------------------------------------------------------- vidjax: warm-up
  ok = _reset_peak()
  for _ in range(args.warmup):
    state, metrics = jax_step(state)
  out["rss_steps_mib"] = _peak(ok) / MIB
  if args.warmup:
    loss = float(metrics["loss"])
    out["loss_after_warmup"] = loss
    if not np.isfinite(loss):
      raise FloatingPointError(f"{name}: non-finite loss {loss} after warm-up")

  # ---------------------------------------------------------------- torch: build and warm-up
  if args.compare_torch:
    _add_torch_path(args)
    ok_t = _reset_peak()
    rss_t = _status("VmRSS")
    try:
      t0 = time.perf_counter()
      torch_step = TorchStep(config, spec["torch"], refs, args.threads)
      out.update(torch_version=torch_step.version, torch_model=torch_step.desc, torch_params=torch_step.num_params,
                 torch_threads=args.threads, torch_build_s=time.perf_counter() - t0)
      for _ in range(args.warmup):
        tl = torch_step()
      if args.warmup and not np.isfinite(tl):
        raise FloatingPointError(f"torch loss {tl}")
      out["torch_rss_growth_mib"] = (_peak(ok_t) - rss_t) / MIB if ok_t else None
      print(f"[{name}] torch {torch_step.version}: {torch_step.desc}, {torch_step.num_params:,} params "
            f"(vidjax {out['params']:,})", flush=True)
    except Exception as e:  # noqa: BLE001  (report and go on with vidjax alone)
      torch_step = None
      out["torch_error"] = f"{type(e).__name__}: {e}"
      print(f"[{name}] torch model NOT run: {out['torch_error']}", flush=True)
      if args.verbose:
        traceback.print_exc()

  # ---------------------------------------------------------------- timed steps
  # alternating (default): vidjax, torch, vidjax, ... ; --sequential: all vidjax steps, then all torch steps
  jt, tt = [], []
  order = [("jax", i) for i in range(args.steps)]
  if torch_step is not None:
    torch_order = [("torch", i) for i in range(args.steps)]
    order = (order + torch_order if args.sequential
             else [x for pair in zip(order, torch_order) for x in pair])
  for who, i in order:
    t0 = time.perf_counter()
    if who == "jax":
      state, metrics = jax_step(state)
      jt.append(time.perf_counter() - t0)
    else:
      torch_step()
      tt.append(time.perf_counter() - t0)
    if args.verbose:
      print(f"[{name}] {who} step {i + 1}/{args.steps}: {(time.perf_counter() - t0) * 1e3:.0f} ms", flush=True)
  out["load_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
  out["vidjax"] = _stats(jt)
  med = out["vidjax"]["median_s"]
  out["clips_per_s"] = args.batch / med
  out["gflops_counted"] = out["gflop_per_step_counted"] / med
  if out.get("gflop_per_step_xla"):
    out["gflops_xla"] = out["gflop_per_step_xla"] / med
  if tt:
    out["torch"] = _stats(tt)
    out["torch_clips_per_s"] = args.batch / out["torch"]["median_s"]
    out["torch_gflops_counted"] = out["gflop_per_step_counted"] / out["torch"]["median_s"]
    out["ratio_torch_over_vidjax"] = out["torch"]["median_s"] / med
  out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  print(f"[{name}] vidjax step {med * 1e3:.0f} ms (IQR {out['vidjax']['q1_s'] * 1e3:.0f}-"
        f"{out['vidjax']['q3_s'] * 1e3:.0f}), {out['clips_per_s']:.2f} clips/s, {out['gflops_counted']:.1f} GFLOP/s"
        + (f"; torch {out['torch']['median_s'] * 1e3:.0f} ms, ratio {out['ratio_torch_over_vidjax']:.2f}" if tt else ""),
        flush=True)
  return out


def _add_torch_path(args) -> None:
  for p in args.torch_path:
    if p and p not in sys.path:
      sys.path.append(p)


# ============================================================================================ parent
def _git(repo: str, *cmd) -> str:
  return subprocess.run(["git", "-C", repo, *cmd], check=True, capture_output=True, text=True).stdout.strip()


def prepare_reference(path: str, scratch: str, label: str):
  """A folder with the reference's files: ``path`` itself if it is a checkout, else ``git archive HEAD``
  of the bare mirror extracted under ``scratch``. Returns (folder, commit or '', error or '')."""
  if not path:
    return "", "", "not given"
  if not os.path.isdir(path):
    return "", "", f"{path} does not exist"
  if os.path.isdir(os.path.join(path, "ops")) or os.path.isdir(os.path.join(path, "src")):
    try:
      commit = _git(path, "rev-parse", "HEAD")
    except Exception:  # noqa: BLE001
      commit = ""
    return path, commit, ""
  try:
    commit = _git(path, "rev-parse", "HEAD")
    dest = os.path.join(scratch, label)
    os.makedirs(dest)
    archive = subprocess.Popen(["git", "-C", path, "archive", "HEAD"], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
      raise RuntimeError("git archive failed")
    return dest, commit, ""
  except Exception as e:  # noqa: BLE001
    return "", "", f"cannot export {path}: {e}"


def run_child(name: str, args, argv_common: list, refs: dict) -> dict:
  with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
    out_path = fh.name
  cmd = [sys.executable, os.path.abspath(__file__), f"--_single={name}", f"--_out={out_path}",
         f"--bqn-repo={refs['bqn']}", f"--rnl-repo={refs['rnl']}"] + argv_common
  t0 = time.time()
  try:
    proc = subprocess.run(cmd, timeout=args.timeout or None)
    if proc.returncode != 0:
      return {"model": name, "title": MODELS[name]["title"], "error": f"subprocess exit status {proc.returncode}"}
    with open(out_path) as fh:
      r = json.load(fh)
    r["wall_s"] = time.time() - t0
    return r
  except subprocess.TimeoutExpired:
    return {"model": name, "title": MODELS[name]["title"], "error": f"timed out after {args.timeout}s"}
  finally:
    if os.path.exists(out_path):
      os.remove(out_path)


def table(results: list, args, meta: dict) -> str:
  load = meta["load"]
  with_torch = any("torch" in r for r in results)
  lines = [
      SECTION, "",
      f"One training step (`vidjax.train.step`, as `train.py` jits it) of each model on a random uint8 batch, "
      f"float32. Step: median [IQR] of {args.steps} steps after {args.warmup} warm-up step(s). "
      "GFLOP/s: counted FLOPs per step = 3 x 2 x conv/linear MACs per clip (`vidjax.tools.flops`, the thesis' "
      "counting; backward ~ 2x forward) x batch, over the median step. Peak RSS: the process' high-water mark "
      "(`VmHWM`) over set-up + compile / over the warm-up steps, each model in a fresh process."
      + (" torch: the author's PyTorch model and a PyTorch SGD step on the same batch in the same process, timed "
         f"steps {'after' if args.sequential else 'alternating with'} vidjax's; ratio = torch ms / vidjax ms "
         "(> 1: vidjax faster)." if with_torch else ""),
      "",
      f"Machine: {meta['cores']} CPU cores ({platform.machine()}), load average "
      + (f"{meta['load_start'][0]:.1f} before the first model, " if meta.get("load_start") else "")
      + f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end of the run, jax {meta['jax']} CPU"
      + (f" (step compiled with `{', '.join(f'{k}={v}' for k, v in meta['compiler_options'].items())}`, "
         "`config.train.cpu_library_fusion`, vidjax/train/compiler.py)" if meta.get("compiler_options")
         else " (XLA's own CPU code: `config.train.cpu_library_fusion` empty or not accepted)")
      + (f", torch {meta['torch']} CPU ({args.threads} threads)" if with_torch and meta.get("torch") else "")
      + f". Command: `{meta['command']}`.", "",
  ]
  head = "| model | input (clips x frames x crop) | compile | step (median [IQR]) | clips/s | GFLOP/s | peak RSS (compile / steps) |"
  rule = "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  if with_torch:
    head += " torch step (median [IQR]) | torch / vidjax |"
    rule += " ---: | ---: |"
  lines += [head, rule]
  notes = []
  for r in results:
    if "error" in r:
      lines.append(f"| {r['title']} | - | failed: {r['error']} |" + " |" * (5 + 2 * with_torch))
      continue
    v = r["vidjax"]
    row = (f"| {r['title']} | {r['input']} | {r['compile_s']:.1f} s | {v['median_s'] * 1e3:.0f} ms "
           f"[{v['q1_s'] * 1e3:.0f}-{v['q3_s'] * 1e3:.0f}] | {r['clips_per_s']:.2f} | {r['gflops_counted']:.1f} | "
           f"{r['rss_compile_mib']:.0f} / {r['rss_steps_mib']:.0f} MiB |")
    if with_torch:
      if "torch" in r:
        tv = r["torch"]
        row += (f" {tv['median_s'] * 1e3:.0f} ms [{tv['q1_s'] * 1e3:.0f}-{tv['q3_s'] * 1e3:.0f}] | "
                f"{r['ratio_torch_over_vidjax']:.2f} |")
      else:
        row += " - | - |"
        notes.append(f"- {r['title']}: torch not run ({r.get('torch_error', 'not requested')}).")
    lines.append(row)
  lines += [""]
  for r in results:
    if "error" in r:
      continue
    extra = (f"- {r['title']}: {r['params'] / 1e6:.2f}M params, {r['gmacs_conv_linear']:.2f} GMACs conv/linear "
             f"per clip -> {r['gflop_per_step_counted']:.1f} GFLOP per step counted")
    if r.get("gflop_per_step_xla"):
      extra += f" (XLA's count of the compiled step: {r['gflop_per_step_xla']:.1f} GFLOP, {r['gflops_xla']:.1f} GFLOP/s)"
    extra += f"; compile = lower {r['lower_s']:.1f} s + XLA {r['xla_compile_s']:.1f} s."
    if "torch" in r:
      extra += (f" torch: `{r['torch_model']}`, {r['torch_params'] / 1e6:.2f}M params, "
                f"{r['torch_clips_per_s']:.2f} clips/s, peak RSS growth {r['torch_rss_growth_mib']:.0f} MiB.")
    lines.append(extra)
  lines += notes
  if meta.get("refs"):
    lines.append("- Reference code: " + ", ".join(f"{k} `{v}`" for k, v in meta["refs"].items()) + ".")
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {sorted(MODELS)}")
  p.add_argument("--batch", type=int, default=2, help="clips per step")
  p.add_argument("--steps", type=int, default=10, help="timed steps")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
  p.add_argument("--compare-torch", action="store_true", help="also time the author's PyTorch model")
  p.add_argument("--bqn-repo", default=DEFAULT_BQN_REPO, help="busy-quiet-net checkout or bare mirror")
  p.add_argument("--rnl-repo", default=DEFAULT_RNL_REPO, help="region-based-non-local-network checkout or mirror")
  p.add_argument("--torch-path", action="append", default=[],
                 help="extra site-packages appended to sys.path for the torch side (pytorchvideo, fvcore)")
  p.add_argument("--threads", type=int, default=_cores(), help="torch.set_num_threads (XLA uses every core it may)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override for every model, e.g. data.crop_size=224")
  p.add_argument("--depthwise", default="auto", choices=("auto", "conv", "shifts"),
                 help="depthwise/channel-wise conv implementation (vidjax/ops/depthwise.py)")
  p.add_argument("--sequential", action="store_true",
                 help="time all vidjax steps, then all torch steps (default: alternate them)")
  p.add_argument("--tiny", action="store_true", help="shrunken models and inputs (smoke test)")
  p.add_argument("--check", action="store_true", help="build only: params / MACs, torch models; no step")
  p.add_argument("--json", default="", help="write every number to this file")
  p.add_argument("--write", action="store_true", help="put the table into bench/RESULTS.md")
  p.add_argument("--timeout", type=float, default=0, help="seconds per model subprocess (0: none)")
  p.add_argument("--verbose", action="store_true")
  p.add_argument("--_single", default="", help=argparse.SUPPRESS)
  p.add_argument("--_out", default="", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  for kv in args.set:
    if "=" not in kv:
      p.error(f"--set wants KEY=VALUE, got {kv!r}")

  if args._single:  # child: one model, results to --_out
    r = run_single(args._single, args)
    with open(args._out, "w") as fh:
      json.dump(r, fh)
    return 0

  names = [n.strip() for n in args.models.split(",") if n.strip()]
  unknown = [n for n in names if n not in MODELS]
  if unknown:
    p.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
  if args.steps < 1 or args.batch < 1 or args.warmup < 0:
    p.error("--steps and --batch must be >= 1, --warmup >= 0")
  scratch = tempfile.mkdtemp(prefix="vidjax-bench-ref-")
  refs, meta_refs = {"bqn": "", "rnl": ""}, {}
  try:
    if args.compare_torch:
      needed = {MODELS[n]["torch"] for n in names}
      for key, path, label in (("bqn", args.bqn_repo, "busy-quiet-net"),
                               ("rnl", args.rnl_repo, "region-based-non-local-network")):
        if key == "bqn" and not needed & {"bqn", "x3d"} or key == "rnl" and not needed & {"tsm", "rnl"}:
          continue
        folder, commit, err = prepare_reference(path, scratch, label)
        refs[key] = folder
        if err:
          print(f"reference {label}: {err}; its torch models will be skipped", flush=True)
        else:
          meta_refs[label] = f"guoxih/{label}@{commit[:12]}" if commit else folder
    common = [f"--batch={args.batch}", f"--steps={args.steps}", f"--warmup={args.warmup}", f"--threads={args.threads}"]
    common += [f"--torch-path={x}" for x in args.torch_path] + [f"--set={x}" for x in args.set]
    common += ["--compare-torch"] * args.compare_torch + ["--tiny"] * args.tiny + ["--check"] * args.check
    common += ["--sequential"] * args.sequential + [f"--depthwise={args.depthwise}"]
    common += ["--verbose"] * args.verbose
    results = [run_child(n, args, common, refs) for n in names]
  finally:
    shutil.rmtree(scratch, ignore_errors=True)

  if args.check:
    for r in results:
      print(json.dumps(r))
    return 0 if all("error" not in r for r in results) else 1
  import jax
  cmd = "python bench/train_step.py " + " ".join(
      a for a in [f"--models={','.join(names)}" if names != list(DEFAULT_MODELS) else "",
                  f"--batch={args.batch}" if args.batch != 2 else "", f"--steps={args.steps}" if args.steps != 10 else "",
                  f"--warmup={args.warmup}" if args.warmup != 2 else "",
                  "--compare-torch" if args.compare_torch else "",
                  "--sequential" if args.sequential else "",
                  f"--depthwise={args.depthwise}" if args.depthwise != "auto" else "",
                  f"--threads={args.threads}" if args.compare_torch and args.threads != _cores() else "",
                  *[f"--torch-path={x}" for x in args.torch_path], *[f"--set={x}" for x in args.set],
                  "--tiny" if args.tiny else "", "--write" if args.write else ""] if a)
  meta = {"cores": _cores(),
          "load": os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0), "jax": jax.__version__,
          "torch": next((r.get("torch_version") for r in results if r.get("torch_version")), None),
          "command": cmd.strip(), "refs": meta_refs, "python": platform.python_version(),
          "load_start": next((r.get("load_start") for r in results if r.get("load_start")), None),
          "compiler_options": next((r["compiler_options"] for r in results if "compiler_options" in r), None)}
  text = table(results, args, meta)
  print(text)
  if args.json:
    with open(args.json, "w") as fh:
      json.dump({"meta": meta, "results": results}, fh, indent=1)
    print(f"numbers written to {args.json}")
  if args.write:
    write_section(SECTION, text)
    print("written to bench/RESULTS.md")
  return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
  sys.exit(main())
