"""Fine-tuning: partial BatchNorm and initialisation from a pre-trained checkpoint.

What the thesis and the reference do
------------------------------------
Thesis section 5.5.1: "When fine-tuning the Kinetics models on UCF101 and HMDB51, we freeze all of the batch
normalization layers except for the first one to avoid overfitting, following the recipe in [143]" ([143] =
TSN); REFERENCE.md section 10 (table row "BQN-R50 UCF/HMDB ft (BN frozen except first)"; ``--npb`` = no
partial BN). In the author's code (BQN repo):

* ``src/model.py`` ``TSN.train(mode)`` override: with ``_enable_pbn`` and ``mode=True``, every
  ``nn.BatchNorm2d`` of ``base_model.modules()`` from the second one on is put in ``eval()`` mode (it
  normalises with its running mean / variance and no longer updates them) and gets
  ``weight.requires_grad = bias.requires_grad = False``. ``main.py`` / ``main_apex.py`` ``train()`` call
  ``model.module.partialBN(not args.no_partialbn)`` then ``model.train()`` at every epoch: partial BN is
  on unless ``--npb`` (the README's Kinetics / Something-Something commands all pass ``--npb``).
* ``TSN.get_optim_policies``: under partial BN only the first BN (``bn_cnt == 1``) joins an optimiser
  group, so the frozen scale / bias get no update, no weight decay and no momentum; their gradients are
  ``None`` and ``clip_grad_norm_`` leaves them out of the global norm.
* The first ``BatchNorm2d`` registered is the Quiet stem's ``bn1`` (``src/bqn_resnet_reverse.py``
  ``ResNet.__init__``: ``mbpf1`` (no BN), ``conv1``, ``bn1``, then ``d_conv1``, ``d_bn1``), i.e. vidjax's
  ``quiet_stem/bn1``: ``config.train.partial_bn_keep = r"(^|/)quiet_stem/bn1/"`` in
  ``configs/bqn_ucf101.py`` / ``bqn_hmdb51.py``. The vidjax BQN also calls ``quiet_stem`` first
  (``batch_norm_paths`` gives the call order). Lateral-connection BNs (``up.1`` / ``down.1``) are ordinary
  BNs there and are frozen too, as are vidjax's ``lc/to_busy_bn`` / ``lc/to_quiet_bn``.
* Initialisation (``main_apex.py --pretrain PATH``): ``checkpoint['state_dict']`` minus every key containing
  ``'fc'`` is written over the new model's state_dict, then ``load_state_dict`` (strict: every other
  tensor must exist with the same shape). The classifier is therefore always re-initialised (TSN's
  N(0, 0.001) / 0), whatever the class counts.

Semantics here (default = the thesis / TSN reading)
---------------------------------------------------
* ``partial_bn(keep_regex)``: every ``nn.BatchNorm`` whose module path does not match ``keep_regex`` runs
  with ``use_running_average=True`` even in a ``train=True`` apply (running statistics used and left
  unchanged); the matching one(s) train normally. ``frozen_bn_mask`` + ``freeze`` keep the frozen scale /
  bias bit-identical (gradients zeroed before the optimiser, so they are outside the clipping norm,
  and updates zeroed after it, so weight decay and momentum cannot move them).
* ``keep_regex`` is ``re.search``-ed in ``'/'.join(path) + '/'`` for a module and in ``'/'.join(path)``
  for a parameter (``quiet_stem/bn1/scale``), so one regex such as ``(^|/)quiet_stem/bn1/`` selects the
  same layer in both places.
* Divergences of the code, not the default here: ``main.py`` converts the model to ``nn.SyncBatchNorm``
  unconditionally (``main_apex.py`` with ``--sbn``), and ``SyncBatchNorm`` is not a ``BatchNorm2d``: the
  ``train()`` override then finds no BN, all statistics keep training and only the optimiser policy
  freezes scale / bias. To reproduce that reading use ``frozen_bn_mask`` / ``freeze`` without
  ``partial_bn``. X3D uses ``BatchNorm3d``, which ``train()`` never freezes either (the X3D configs do not
  ask for partial BN).
* ``load_init_checkpoint``: ``head='init'`` (default, as the reference) re-initialises every ``fc``
  (the Dense named ``fc``: ``head/fc`` of the ResNets / BQN-R50, ``quiet_head/fc`` and ``busy_head/fc`` of
  BQN-X3D); ``head='keep'`` takes it from the checkpoint (class counts must match). Every other leaf
  must exist in the checkpoint with the model's shape.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Callable, Iterable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vidjax.tools.convert import _flatten, _unflatten

CONFIG_KEY = "train.init_checkpoint"
HEADS = ("init", "keep")


class InitCheckpointError(ValueError):
  """``train.init_checkpoint`` does not fit the config's model (the message lists the leaves)."""


# ===================================================================================== partial BN
def _compile(keep_regex: str) -> re.Pattern:
  if not keep_regex:
    raise ValueError("partial BN needs config.train.partial_bn_keep: a regex of the BatchNorm that keeps "
                     "training, e.g. r'(^|/)quiet_stem/bn1/'")
  return re.compile(keep_regex)


def module_key(path: Iterable[str]) -> str:
  """The string a module path is matched as: ``('quiet_stem', 'bn1') -> 'quiet_stem/bn1/'``."""
  return "".join(f"{p}/" for p in path)


def _is_bn_call(context) -> bool:
  return context.method_name == "__call__" and isinstance(context.module, nn.BatchNorm)


def partial_bn_interceptor(keep_regex: str) -> Callable:
  """A ``flax.linen.intercept_methods`` interceptor: BNs not matching ``keep_regex`` run in eval mode.

  ``layers.batch_norm(train)`` sets ``use_running_average`` as a *constructor* attribute (passing it
  again at call time is an error in Flax), so the interceptor sets the attribute of the bound instance to
  True for the duration of the call and puts the old value back. A BN built with
  ``use_running_average=None`` gets ``use_running_average=True`` as a call argument instead.
  """
  rx = _compile(keep_regex)

  def interceptor(next_fun, args, kwargs, context):
    if not _is_bn_call(context) or rx.search(module_key(context.module.path)):
      return next_fun(*args, **kwargs)
    mod = context.module
    if mod.use_running_average is None:
      args = args[:1]  # x; use_running_average given by keyword below
      return next_fun(*args, **dict(kwargs, use_running_average=True))
    old = mod.use_running_average
    object.__setattr__(mod, "use_running_average", True)  # Modules are frozen dataclasses
    try:
      return next_fun(*args, **kwargs)
    finally:
      object.__setattr__(mod, "use_running_average", old)

  return interceptor


@contextlib.contextmanager
def partial_bn(keep_regex: str):
  """``with partial_bn(regex): model.apply(..., train=True, mutable=['batch_stats', ...])``."""
  with nn.intercept_methods(partial_bn_interceptor(keep_regex)):
    yield


def batch_norm_paths(model: nn.Module, *args, **kwargs) -> list[str]:
  """``module_key`` of every ``nn.BatchNorm`` in the order ``model.init(key, *args, **kwargs)`` calls them.

  Shapes only (``jax.eval_shape``). The first entry is TSN's "first BN" when the model calls its layers
  in the order the reference registers them (BQN-R50: ``quiet_stem/bn1/``).
  """
  seen: list[str] = []

  def record(next_fun, a, kw, context):
    if _is_bn_call(context):
      k = module_key(context.module.path)
      if k not in seen:
        seen.append(k)
    return next_fun(*a, **kw)

  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(rngs, *args, **kwargs))
  return seen


# ======================================================================== frozen scale / bias
def _names(keypath) -> tuple[str, ...]:
  out = []
  for k in keypath:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        out.append(str(getattr(k, attr)))
        break
    else:
      out.append(str(k))
  return tuple(out)


def frozen_bn_mask(params, keep_regex: str, batch_stats=None):
  """A pytree like ``params``: True for the scale / bias of every norm layer not matching ``keep_regex``.

  A norm layer's parameters are a ``scale`` and the ``bias`` beside it (``optim.param_kinds``' 'bn').
  With ``batch_stats`` only those of BatchNorms (modules holding running statistics) count, as in the
  reference, which freezes BatchNorm layers only. ``keep_regex`` is searched in ``'/'.join(path)``.
  Raises ValueError when ``keep_regex`` matches no norm parameter (a regex for another model).
  """
  from vidjax.train import optim
  rx = _compile(keep_regex)
  kinds = {tuple(str(p) for p in k): v for k, v in optim.param_kinds(params).items()}
  bn_modules = None
  if batch_stats is not None:
    bn_modules = {_names(kp)[:-1] for kp, _ in jax.tree_util.tree_leaves_with_path(batch_stats)}
  kept, norm = [], []

  def frozen(keypath, _):
    path = _names(keypath)
    if kinds.get(path) != "bn" or (bn_modules is not None and path[:-1] not in bn_modules):
      return False
    key = "/".join(path)
    norm.append(key)
    if rx.search(key):
      kept.append(key)
      return False
    return True

  mask = jax.tree_util.tree_map_with_path(frozen, params)
  if norm and not kept:
    raise ValueError(f"partial BN: config.train.partial_bn_keep={keep_regex!r} matches no BatchNorm parameter "
                     f"of this model (the first ones: {', '.join(norm[:4])}); set it to the module of the "
                     f"first BN, e.g. '(^|/){'/'.join(norm[0].split('/')[:-1])}/'")
  return mask


def _zero_where(mask) -> optax.GradientTransformation:
  """Stateless: leaves where ``mask`` (pytree of bools, or a function of the params) is True become 0."""
  def update(updates, state, params=None):
    m = mask(params if params is not None else updates) if callable(mask) else mask
    return jax.tree.map(lambda u, f: jnp.zeros_like(u) if f else u, updates, m), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def freeze(tx: optax.GradientTransformation, mask) -> optax.GradientTransformation:
  """``tx`` that never changes the leaves where ``mask`` is True.

  Their gradients are zeroed before ``tx`` (so gradient clipping by global norm ignores them, as
  ``clip_grad_norm_`` ignores ``requires_grad=False`` parameters) and their updates after it (so weight
  decay and momentum cannot move them): the frozen parameters stay bit-identical.
  """
  zero = _zero_where(mask)
  return optax.chain(zero, tx, zero)


# ================================================================ initialisation from a checkpoint
def _is_head(path: tuple) -> bool:  # the classifier: a parameter of a Dense named 'fc'
  return len(path) >= 3 and path[-2] == "fc"


def _workdir_and_step(path: str) -> tuple[str, Optional[int]]:
  p = os.path.normpath(os.path.abspath(path))
  if os.path.isdir(os.path.join(p, "checkpoints")):
    return p, None
  if os.path.basename(p) == "checkpoints":
    return os.path.dirname(p), None
  if os.path.basename(p).isdigit() and os.path.basename(os.path.dirname(p)) == "checkpoints":
    return os.path.dirname(os.path.dirname(p)), int(os.path.basename(p))
  raise FileNotFoundError(
      f"config.{CONFIG_KEY}={path!r} is a directory but not a vidjax workdir (no checkpoints/ in it), its "
      f"checkpoints/ directory or a step directory checkpoints/N; give a workdir or a .pth/.pth.tar/.npz/"
      f".safetensors file")


def _signature_hint(workdir: str, step: int, config) -> str:
  """The config.model fields (other than the class count / dropout) that differ from the saved ones."""
  try:
    from vidjax.train import checkpoint
    import orbax.checkpoint as ocp
    mgr = checkpoint.manager(workdir, read_only=True)
    saved = mgr.restore(step, args=ocp.args.Composite(model=ocp.args.JsonRestore()))["model"]["model"]
    mgr.close()
  except Exception:  # an old checkpoint without the 'model' item: no hint
    return ""
  want = config.model.to_dict()
  diffs = []
  for k in sorted(set(saved) | set(want)):
    if k in ("num_classes", "dropout"):
      continue
    a, b = saved.get(k, "<absent>"), want.get(k, "<absent>")
    if isinstance(a, list) and isinstance(b, tuple):
      b = list(b)
    if a != b:
      diffs.append(f"model.{k}: checkpoint {a!r} vs config {b!r}")
  return ("\n  The checkpoint's model differs in: " + "; ".join(diffs)) if diffs else ""


def _mismatch_error(path: str, name: str, wrong: list, missing: list, extra: list, hint: str = "",
                    step: Optional[int] = None, limit: int = 6) -> InitCheckpointError:
  def listing(title, items):
    if not items:
      return ""
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(items[:limit]) + more
  at = f" (step {step})" if step is not None else ""
  return InitCheckpointError(
      f"config.{CONFIG_KEY}={path!r}{at} does not fit config.model ({name}):"
      + listing("wrong shape", wrong) + listing("missing in the checkpoint", missing)
      + listing("not in the model", extra) + hint
      + "\n  Is this checkpoint from another model? Check --config.model.* (name, depth, width, "
        "stage_sizes, variant, ...) against the config that trained it.")


def _merge(ckpt: dict, target: dict, head: str) -> tuple[dict, list, list, list, list]:
  """Target leaves from ``ckpt`` (cast to the target dtype), fc from ``target`` when ``head='init'``."""
  out, reinit, wrong, missing = {}, [], [], []
  for p, t in target.items():
    key = "/".join(p)
    if head == "init" and _is_head(p):
      out[p] = t
      reinit.append(key)
      continue
    if p not in ckpt:
      missing.append(key)
      continue
    v = np.asarray(ckpt[p])
    if tuple(v.shape) != tuple(t.shape):
      wrong.append(f"{key}: checkpoint {tuple(v.shape)} vs model {tuple(t.shape)}")
      continue
    out[p] = v.astype(t.dtype)
  extra = ["/".join(p) for p in ckpt if p not in target and not (head == "init" and _is_head(p))]
  return out, reinit, wrong, missing, extra


def load_init_checkpoint(path: str, target_variables: dict, config, *, head: Optional[str] = None,
                         source: Optional[str] = None) -> tuple[dict, dict]:
  """Weights to start fine-tuning from: ``(variables, report)``.

  Args:
    path: ``config.train.init_checkpoint``: a vidjax workdir (its latest step), its ``checkpoints/``
      directory or a ``checkpoints/N`` step directory (orbax, ``checkpoint.restore_variables``); or a
      PyTorch ``.pth`` / ``.pth.tar`` / ``.pt``, ``.npz`` or ``.safetensors`` file
      (``tools.convert.load_state_dict`` + ``convert_state_dict``, layout ``source``).
    target_variables: the model's freshly initialised ``{'params', 'batch_stats'}`` (concrete arrays:
      re-initialised leaves are taken from it, e.g. ``state.variables`` of ``state_lib.create``).
    config: the fine-tuning config (``config.model`` names the model in messages / conversion).
    head: 'init' (default ``config.train.get('init_head', 'init')``: every ``fc`` from
      ``target_variables``, as the reference's ``'fc' not in k``) or 'keep' (from the checkpoint).
    source: PyTorch layout for ``convert`` (default ``config.train.get('init_source', 'auto')``).
  Returns:
    ``variables``: the collections of ``target_variables`` present in it (``params``, ``batch_stats``),
    same nesting, loaded leaves as host numpy arrays of the target dtype, re-initialised leaves as given;
    ``report``: ``path``, ``format`` ('vidjax' | 'pytorch'), ``source``, ``step``, ``loaded`` (number of
    leaves from the file), ``total``, ``reinitialised`` ('collection/module/.../leaf' paths), ``dropped``.
  Raises:
    FileNotFoundError naming the path and ``train.init_checkpoint``; InitCheckpointError listing the
    leaves that do not fit (first few) and how to fix it.
  """
  train_cfg = config.get("train", None) or {}
  head = head or train_cfg.get("init_head", "init")
  if head not in HEADS:
    raise ValueError(f"config.train.init_head must be one of {HEADS}, got {head!r}")
  if not path:
    raise ValueError(f"config.{CONFIG_KEY} is empty")
  path = os.path.expanduser(str(path))
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.{CONFIG_KEY}={path!r}: no such file or directory (a vidjax workdir or a "
                            f".pth/.pth.tar/.npz/.safetensors checkpoint to fine-tune from)")
  name = config.model.get("name", "?")
  # params first: they name the layers best in messages
  target = {p: v for p, v in sorted(_flatten(target_variables).items(), key=lambda kv: kv[0][0] != "params")
            if p[0] in ("params", "batch_stats")}
  report: dict[str, Any] = {"path": path, "head": head}

  if os.path.isdir(path):
    from vidjax.train import checkpoint
    workdir, step = _workdir_and_step(path)
    tree, step = checkpoint.restore_variables(workdir, step)
    ckpt = {p: v for p, v in _flatten(tree).items() if p[0] in ("params", "batch_stats")}
    out, reinit, wrong, missing, extra = _merge(ckpt, target, head)
    if wrong or missing or extra:
      hint = ""
      if head == "keep" and any("/fc/" in w for w in wrong):
        hint += ("\n  The classifier has another number of classes: set --config.train.init_head=init to "
                 "start it from scratch.")
      raise _mismatch_error(path, name, wrong, missing, extra, hint + _signature_hint(workdir, step, config),
                            step=step)
    dropped = sorted("/".join(p) for p in ckpt if p not in target or (head == "init" and _is_head(p)))
    report.update(format="vidjax", source="vidjax", step=int(step), dropped=dropped)
  else:
    from vidjax.tools import convert
    src = source or train_cfg.get("init_source", "auto")
    try:
      sd = convert.load_state_dict(path)
      init = _flatten(jax.tree.map(np.asarray, {c: target_variables[c] for c in ("params", "batch_stats")
                                             if c in target_variables}))
      variables, rep = convert.convert_state_dict(sd, config, source=src, head=head,
                                                  init_fn=lambda: _unflatten(init))
    except convert.ConversionError as e:
      raise InitCheckpointError(
          f"config.{CONFIG_KEY}={path!r}: {e}\n  Is this checkpoint from another model? Check "
          f"--config.model.* against the model that produced it (or --config.train.init_source).") from None
    ckpt = _flatten(variables)
    out, _, wrong, missing, extra = _merge(ckpt, target, "keep")
    if wrong or missing or extra:  # convert checks against its own build of config.model: should not happen
      raise _mismatch_error(path, name, wrong, missing, extra,
                            "\n  target_variables are not the variables of config.model.")
    initialised = set(rep["initialised"])
    reinit = ["/".join(p) for p in target if "/".join(p[1:]) in initialised]
    for p in target:  # re-initialised leaves are the caller's own arrays, untouched
      if "/".join(p[1:]) in initialised:
        out[p] = target[p]
    report.update(format="pytorch", source=rep["source"], step=None, dropped=list(rep["dropped"]))

  report.update(loaded=len(target) - len(reinit), total=len(target), reinitialised=sorted(reinit))
  variables = _unflatten(out)
  return {c: variables.get(c, {}) for c in target_variables if c in ("params", "batch_stats")}, report


def format_report(report: dict) -> str:
  """One line for the log: what ``load_init_checkpoint`` did."""
  step = f" step {report['step']}" if report.get("step") is not None else ""
  line = (f"initialised from {report['path']}{step} ({report['source']}): {report['loaded']} of "
          f"{report['total']} arrays loaded")
  if report["reinitialised"]:
    line += f"; re-initialised: {', '.join(report['reinitialised'][:6])}"
    if len(report["reinitialised"]) > 6:
      line += f" (+{len(report['reinitialised']) - 6})"
  return line
