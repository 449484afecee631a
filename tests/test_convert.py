"""Weight import (vidjax/tools/convert.py): PyTorch modules written here with the reference's state_dict
names, converted, must give the same logits (REFERENCE.md section 1 layouts; sections 2-4, 6-8 names).

The torch modules below are written for this test from the equations of REFERENCE.md (TSM shift of
section 2, RNL / ChannelGate / NL of sections 3-4, MBPM of section 6, BQN of section 7, pytorchvideo X3D
and BQN-X3D of section 8); no reference code is copied. Every BatchNorm gets random affine parameters and
running statistics so that zero-initialised blocks carry signal, and outputs are compared in eval mode.
Needs the ``torch`` extra (skipped without it). Networks are narrow (4-48 channels) and one block per stage.
"""
import os
import struct
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from configs import default  # noqa: E402
from vidjax.models import registry  # noqa: E402
from vidjax.tools import convert  # noqa: E402

torch.set_num_threads(1)
TOL = 1e-4


# ======================================================================================= torch modules
def tsm_shift(x, t, div=8):
  """REFERENCE.md section 2: 1/8 of the channels from t+1, 1/8 from t-1, zeros at the clip ends."""
  nt, c, h, w = x.shape
  x = x.view(nt // t, t, c, h, w)
  f = c // div
  out = torch.zeros_like(x)
  out[:, :-1, :f] = x[:, 1:, :f]
  out[:, 1:, f:2 * f] = x[:, :-1, f:2 * f]
  out[:, :, 2 * f:] = x[:, :, 2 * f:]
  return out.view(nt, c, h, w)


class Shifted(nn.Module):
  """The TSM wrapper: ``conv1`` becomes ``conv1.net``."""

  def __init__(self, net, t):
    super().__init__()
    self.net, self.t = net, t

  def forward(self, x):
    return self.net(tsm_shift(x, self.t))


class Bottleneck(nn.Module):
  """torchvision v1.5 bottleneck; ``shift_t`` > 0 shifts the residual input (inline, as BQN's blocks)."""

  def __init__(self, cin, planes, stride=1, shift_t=0):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = None
    if stride != 1 or cin != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                      nn.BatchNorm2d(planes * 4))
    self.shift_t = shift_t

  def forward(self, x):
    h = tsm_shift(x, self.shift_t) if self.shift_t else x
    h = F.relu(self.bn1(self.conv1(h)))
    h = F.relu(self.bn2(self.conv2(h)))
    h = self.bn3(self.conv3(h))
    return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
  """torchvision layout (conv1, bn1, layer1..4, fc), channel widths ``stem`` x (1, 2, 4, 8)."""

  def __init__(self, layers=(1, 1, 1, 1), stem=4, classes=1000, shift_t=0):
    super().__init__()
    self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(stem)
    cin = stem
    for i, n in enumerate(layers):
      planes = stem * 2 ** i
      blocks = []
      for b in range(n):
        blocks.append(Bottleneck(cin, planes, 2 if (i > 0 and b == 0) else 1, shift_t))
        cin = planes * 4
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.fc = nn.Linear(cin, classes)

  def features(self, x):
    x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))

  def forward(self, x):
    return self.fc(self.features(x).mean((2, 3)))


class Penta(nn.Module):
  """RNL's F_theta as the reference stores it: dense grouped ``weight`` x fixed diagonal ``mask``."""

  def __init__(self, c, ks):
    super().__init__()
    self.groups = max(c // 32, 1)
    g = c // self.groups
    mask = torch.zeros(c, g, *ks)
    mask[torch.arange(c), torch.arange(c) % g] = 1
    self.mask = nn.Parameter(mask, requires_grad=False)
    self.weight = nn.Parameter(torch.randn(c, g, *ks) * 0.05)
    self.pad = [(k - 1) // 2 for k in ks]

  def forward(self, x):
    return F.conv3d(x, self.weight * self.mask, padding=self.pad, groups=self.groups)


class RNL(nn.Module):
  """Gaussian RNL (REFERENCE.md section 3): P = F_theta(theta x), softmax(P^T P) over keys, z = BN(W y) + x."""

  def __init__(self, c, ks):
    super().__init__()
    self.theta = nn.Conv3d(c, c // 2, 1)
    self.penta = Penta(c // 2, ks)
    self.W = nn.Sequential(nn.Conv3d(c // 2, c, 1), nn.BatchNorm3d(c))

  def forward(self, x):
    b, c = x.shape[:2]
    th = self.theta(x)
    p = self.penta(th).reshape(b, c // 2, -1)
    th = th.reshape(b, c // 2, -1)
    w = F.softmax(p.transpose(1, 2) @ p, dim=1)  # [key j, query i]
    y = (th @ w).view(b, c // 2, *x.shape[2:])
    return self.W(y) + x


class NL(nn.Module):
  """Embedded-Gaussian NL (REFERENCE.md section 4)."""

  def __init__(self, c):
    super().__init__()
    self.g, self.theta, self.phi = (nn.Conv3d(c, c // 2, 1) for _ in range(3))
    self.W = nn.Sequential(nn.Conv3d(c // 2, c, 1), nn.BatchNorm3d(c))

  def forward(self, x):
    b, c = x.shape[:2]
    g = self.g(x).view(b, c // 2, -1).transpose(1, 2)
    th = self.theta(x).view(b, c // 2, -1).transpose(1, 2)
    ph = self.phi(x).view(b, c // 2, -1)
    y = (F.softmax(th @ ph, dim=-1) @ g).transpose(1, 2).reshape(b, c // 2, *x.shape[2:])
    return self.W(y) + x


class ChannelGate(nn.Module):
  """REFERENCE.md section 3: context = sum softmax(W_k x) x; x + W_v2 relu(BN(W_v1 ctx))."""

  def __init__(self, c):
    super().__init__()
    self.W_k = nn.Conv3d(c, 1, 1)
    self.W_v1 = nn.Linear(c, c // 2)
    self.bn1 = nn.BatchNorm1d(c // 2, momentum=0.01)
    self.W_v2 = nn.Linear(c // 2, c)

  def forward(self, x):
    b, c = x.shape[:2]
    a = F.softmax(self.W_k(x).view(b, -1, 1), dim=1)
    ctx = (x.reshape(b, c, -1) @ a).view(b, c)
    s = self.W_v2(F.relu(self.bn1(self.W_v1(ctx))))
    return x + s[:, :, None, None, None]


class Wrapper(nn.Module):
  """``NL3DWrapper``: block, then (N*T, C, H, W) -> (N, C, T, H, W), cg and/or nl, and back."""

  def __init__(self, block, t, cg=None, nl=None):
    super().__init__()
    self.block, self.t = block, t
    if cg is not None:
      self.cg = cg
    if nl is not None:
      self.nl = nl

  def forward(self, x):
    x = self.block(x)
    nt, c, h, w = x.shape
    x = x.view(nt // self.t, self.t, c, h, w).transpose(1, 2)
    if hasattr(self, "cg"):
      x = self.cg(x)
    if hasattr(self, "nl"):
      x = self.nl(x)
    return x.transpose(1, 2).reshape(nt, c, h, w)


class TSN(nn.Module):
  """TSN wrapper: ``base_model`` (fc removed), ``new_fc``, average of the T frames' logits."""

  def __init__(self, base, feat, classes, t, mbpm=None):
    super().__init__()
    base.fc = nn.Identity()
    self.base_model, self.t = base, t
    self.new_fc = nn.Linear(feat, classes)
    if mbpm is not None:
      self.mbpf = mbpm

  def forward(self, x):  # x (N, F, 3, H, W)
    if hasattr(self, "mbpf"):
      x = self.mbpf(x)
    n = x.shape[0]
    out = self.new_fc(self.base_model.features(x.reshape(-1, *x.shape[2:])).mean((2, 3)))
    return out.view(n, self.t, -1).mean(1)


class Kernel(nn.Module):
  def __init__(self, shape):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(*shape) * 0.2)


class MBPM(nn.Module):
  """REFERENCE.md section 6: depthwise LoG (reflect padding) then depthwise [-1,2,-1]-like temporal conv."""

  def __init__(self, c, k, three_steps):
    super().__init__()
    self.conv_s, self.conv_t = Kernel((c, 1, k, k)), Kernel((c, 1, 3))
    self.k, self.three = k, three_steps

  def forward(self, x, t=None):
    if self.three:  # (N, 3T, C, H, W) -> (N, T, C, H, W)
      n, f, c, h, w = x.shape
      y = x.reshape(n * f, c, h, w)
    else:  # (N*T, C, H, W) -> same
      nt, c, h, w = x.shape
      n, f, y = nt // t, t, x
    p = (self.k - 1) // 2
    y = F.conv2d(F.pad(y, (p, p, p, p), mode="reflect"), self.conv_s.weight, groups=c)
    y = y.view(n, f, c, h, w).permute(0, 3, 4, 2, 1).reshape(n * h * w, c, f)
    if self.three:
      y, tout = F.conv1d(y, self.conv_t.weight, stride=3, groups=c), f // 3
    else:
      y, tout = F.conv1d(F.pad(y, (1, 1), mode="replicate"), self.conv_t.weight, groups=c), f
    y = y.view(n, h, w, c, tout).permute(0, 4, 3, 1, 2)
    return y if self.three else y.reshape(n * tout, c, h, w)


def resize(x, size):
  return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DuoPathR50(nn.Module):
  """BQN block (``bqn_resnet_reverse.py`` layout): odd id Busy -> Quiet ``down``, even Quiet -> Busy ``up``."""

  def __init__(self, block_id, cin, planes, stride, t, k):
    super().__init__()
    self.path_c = Bottleneck(cin, planes, stride, t)
    self.path_f = Bottleneck(cin, planes, stride, t)
    self.id, self.t = block_id, t
    if block_id % 2 == 0:
      self.mbpf = MBPM(planes * 4, k, False)
      self.up = nn.Sequential(nn.Identity(), nn.BatchNorm2d(planes * 4))
    else:
      self.down = nn.Sequential(nn.Identity(), nn.BatchNorm2d(planes * 4))

  def forward(self, x):
    c, f = self.path_c(x[0]), self.path_f(x[1])
    if self.id % 2 == 0:
      f = f + self.up(resize(self.mbpf(c, self.t), f.shape[-2:]))
    else:
      c = c + self.down(resize(f, c.shape[-2:]))
    return c, f


class BQNR50(nn.Module):
  def __init__(self, t, classes, quiet, stem=4, ks=(7, 7, 7, 3)):
    super().__init__()
    self.t, self.quiet = t, quiet
    self.mbpf1 = MBPM(3, 9, True)
    self.conv1, self.bn1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem)
    self.d_conv1, self.d_bn1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem)
    cin = stem
    for i in range(4):
      planes = stem * 2 ** i
      setattr(self, f"layer{i + 1}", nn.Sequential(DuoPathR50(i + 1, cin, planes, 1 if i == 0 else 2, t, ks[i])))
      cin = planes * 4
    self.fc = nn.Linear(cin, classes)

  def forward(self, video):  # (N, 3T, 3, H, W)
    n = video.shape[0]
    busy = self.mbpf1(video).reshape(n * self.t, 3, *video.shape[-2:])
    quiet = resize(video[:, 0::3].reshape(n * self.t, 3, *video.shape[-2:]), (self.quiet, self.quiet))
    c = F.max_pool2d(F.relu(self.bn1(self.conv1(quiet))), 3, 2, 1)
    f = F.max_pool2d(F.relu(self.d_bn1(self.d_conv1(busy))), 3, 2, 1)
    x = (c, f)
    for i in range(4):
      x = getattr(self, f"layer{i + 1}")(x)
    logits = self.fc(torch.cat([x[0].mean((2, 3)), x[1].mean((2, 3))], 0))
    logits = (logits[: n * self.t] + logits[n * self.t:]) / 2
    return logits.view(n, self.t, -1).mean(1)


# -------------------------------------------------------------------------------- X3D (pytorchvideo names)
# (stage, block, dim_in, dim_inner, dim_out, spatial stride, SE) for width 0.5, depth 0.5, bottleneck 2.25
X3D_LAYOUT = [(1, 0, 8, 18, 8, 2, True), (2, 0, 8, 36, 16, 2, True), (3, 0, 16, 54, 24, 2, True),
              (3, 1, 24, 54, 24, 1, False), (3, 2, 24, 54, 24, 1, True), (4, 0, 24, 108, 48, 2, True),
              (4, 1, 48, 108, 48, 1, False)]
X3D_CFG = dict(variant="xs", width_factor=0.5, depth_factor=0.5, bottleneck_factor=2.25, head_dim_out=32)


class X3DStemConv(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.conv_t = nn.Conv3d(3, c, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)  # spatial (swapped name)
    self.conv_xy = nn.Conv3d(c, c, (5, 1, 1), 1, (2, 0, 0), groups=c, bias=False)  # temporal


class X3DStem(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.conv, self.norm = X3DStemConv(c), nn.BatchNorm3d(c)

  def forward(self, x):
    return F.relu(self.norm(self.conv.conv_xy(self.conv.conv_t(x))))


class SE(nn.Module):
  def __init__(self, c, r):
    super().__init__()
    self.block = nn.Sequential(nn.Conv3d(c, r, 1), nn.ReLU(), nn.Conv3d(r, c, 1), nn.Sigmoid())

  def forward(self, x):
    return x * self.block(x.mean((2, 3, 4), keepdim=True))


class Branch2(nn.Module):
  def __init__(self, din, dinner, dout, stride, se):
    super().__init__()
    self.conv_a, self.norm_a = nn.Conv3d(din, dinner, 1, bias=False), nn.BatchNorm3d(dinner)
    self.conv_b = nn.Conv3d(dinner, dinner, 3, (1, stride, stride), 1, groups=dinner, bias=False)
    self.norm_b = nn.Sequential(nn.BatchNorm3d(dinner), SE(dinner, 8)) if se else nn.BatchNorm3d(dinner)
    self.conv_c, self.norm_c = nn.Conv3d(dinner, dout, 1, bias=False), nn.BatchNorm3d(dout)

  def forward(self, x):
    x = F.relu(self.norm_a(self.conv_a(x)))
    x = self.norm_b(self.conv_b(x))
    return self.norm_c(self.conv_c(x * torch.sigmoid(x)))


class X3DBlock(nn.Module):
  def __init__(self, din, dinner, dout, stride, se):
    super().__init__()
    if din != dout or stride > 1:
      self.branch1_conv = nn.Conv3d(din, dout, 1, (1, stride, stride), bias=False)
      if din != dout:
        self.branch1_norm = nn.BatchNorm3d(dout)
    self.branch2 = Branch2(din, dinner, dout, stride, se)

  def forward(self, x):
    s = x
    if hasattr(self, "branch1_conv"):
      s = self.branch1_conv(x)
      if hasattr(self, "branch1_norm"):
        s = self.branch1_norm(s)
    return F.relu(self.branch2(x) + s)


class Stage(nn.Module):
  def __init__(self, blocks):
    super().__init__()
    self.res_blocks = nn.ModuleList(blocks)


class HeadPool(nn.Module):
  def __init__(self, din, dinner, dout):
    super().__init__()
    self.pre_conv, self.pre_norm = nn.Conv3d(din, dinner, 1, bias=False), nn.BatchNorm3d(dinner)
    self.post_conv = nn.Conv3d(dinner, dout, 1, bias=False)


class X3DHead(nn.Module):
  def __init__(self, din, dinner, dout, classes):
    super().__init__()
    self.pool, self.proj = HeadPool(din, dinner, dout), nn.Linear(dout, classes)

  def forward(self, x):
    x = F.relu(self.pool.pre_norm(self.pool.pre_conv(x))).mean((2, 3, 4), keepdim=True)
    x = F.relu(self.pool.post_conv(x))
    return self.proj(x.permute(0, 2, 3, 4, 1)).mean((1, 2, 3))


def _x3d_blocks(head_classes):
  stages = []
  for s in range(1, 5):
    stages.append(Stage([X3DBlock(di, dn, do, st, se) for (ss, _, di, dn, do, st, se) in X3D_LAYOUT if ss == s]))
  return X3DStem(8), stages, X3DHead(48, 108, 32, head_classes)


class X3D(nn.Module):
  def __init__(self, classes):
    super().__init__()
    stem, stages, head = _x3d_blocks(classes)
    self.blocks = nn.ModuleList([stem] + stages + [head])

  def forward(self, x):  # (N, 3, T, H, W)
    for b in self.blocks:
      x = b(x) if not isinstance(b, Stage) else _run_stage(b, x)
    return x


def _run_stage(stage, x):
  for blk in stage.res_blocks:
    x = blk(x)
  return x


class Duo(nn.Module):
  def __init__(self, c, f):
    super().__init__()
    self.path_c, self.path_f = c, f


class DuoPathX3D(nn.Module):
  """``bqn_x3d_reverse.py`` block: X3D blocks + (odd) Busy -> Quiet resize/1x1/BN or (even) MBPM + up."""

  def __init__(self, block_id, layout, t, k):
    super().__init__()
    _, _, di, dn, do, st, se = layout
    self.path_c, self.path_f = X3DBlock(di, dn, do, st, se), X3DBlock(di, dn, do, st, se)
    self.id, self.t = block_id, t
    if block_id % 2 == 0:
      self.mbpf = MBPM(do, k, False)
      self.up = nn.Sequential(nn.Identity(), nn.Conv2d(do, do, 1, bias=False), nn.BatchNorm2d(do))
    else:
      self.down = nn.Sequential(nn.Identity(), nn.Conv2d(do, do, 1, bias=False), nn.BatchNorm2d(do))

  def forward(self, x):
    c, f = self.path_c(x[0]), self.path_f(x[1])
    to2d = lambda v: v.transpose(1, 2).reshape(-1, *v.shape[1:2], *v.shape[3:])
    back = lambda v, ref: v.view(ref.shape[0], ref.shape[2], ref.shape[1], *v.shape[-2:]).transpose(1, 2)
    c2, f2 = to2d(c), to2d(f)
    if self.id % 2 == 0:
      f2 = f2 + self.up[2](self.up[1](resize(self.mbpf(c2, self.t), f2.shape[-2:])))
    else:
      c2 = c2 + self.down[2](self.down[1](resize(f2, c2.shape[-2:])))
    return back(c2, c), back(f2, f)


class BQNX3D(nn.Module):
  def __init__(self, t, classes, quiet, ks=(7, 7, 7, 3)):
    super().__init__()
    self.t, self.quiet = t, quiet
    stages = []
    for s in range(1, 5):
      stages.append(Stage([DuoPathX3D(i + 1, lay, t, ks[s - 1])
                           for i, lay in enumerate(X3D_LAYOUT) if lay[0] == s]))
    self.blocks = nn.ModuleList([Duo(X3DStem(8), X3DStem(8))] + stages +
                                [Duo(X3DHead(48, 108, 32, classes), X3DHead(48, 108, 32, classes))])
    self.mbpf1 = MBPM(3, 9, True)

  def forward(self, video):  # (N, 3T, 3, H, W)
    n, _, _, h, w = video.shape
    busy = self.mbpf1(video).transpose(1, 2)  # (N, 3, T, H, W)
    q = resize(video[:, 0::3].reshape(n * self.t, 3, h, w), (self.quiet, self.quiet))
    quiet = q.view(n, self.t, 3, self.quiet, self.quiet).transpose(1, 2)
    x = (self.blocks[0].path_c(quiet), self.blocks[0].path_f(busy))
    for st in self.blocks[1:5]:
      x = _run_stage(st, x)
    return (self.blocks[5].path_c(x[0]) + self.blocks[5].path_f(x[1])) / 2


def randomise(model, seed=0):
  """Random BN affine/statistics, biases and classifier so that no block is the identity."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.modules.batchnorm._BatchNorm):
        c = m.num_features
        m.weight.copy_(0.6 + 0.8 * torch.rand(c, generator=g))
        m.bias.copy_(0.2 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))
      elif isinstance(m, nn.Linear):
        m.weight.copy_(0.1 * torch.randn(m.weight.shape, generator=g))
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
      elif isinstance(m, nn.Conv3d) and m.bias is not None:
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
  return model.eval()


# ======================================================================================== helpers
def tiny_config(name, **model):
  c = default.get_config()
  c.model.name = name
  c.model.num_classes = 5
  c.model.dropout = 0.0
  c.model.width = 0.0625  # stem 4 channels
  c.model.stage_sizes = (1, 1, 1, 1)
  c.data.num_segments = 2
  c.data.frames_per_segment = 1
  c.data.crop_size = 32
  for k, v in model.items():
    c.model[k] = v
  return c


def nthwc(video_t):
  """torch (N, F, 3, H, W) -> numpy (N, F, H, W, 3)."""
  return np.ascontiguousarray(video_t.numpy().transpose(0, 1, 3, 4, 2))


def state(module):
  return {k: v.detach().clone() for k, v in module.state_dict().items()}


def logits_of(config, variables, video):
  model = registry.build(config.model)
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(video)))


def assert_close(got, want, what):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  scale = max(1.0, float(np.abs(want).max()))
  err = float(np.abs(got - want).max())
  print(f"{what}: max |diff| {err:.2e}, max |ref| {float(np.abs(want).max()):.3g}")
  assert err <= TOL * scale, f"{what}: max |diff| {err:.2e} (max |ref| {scale:.2e})"
  assert float(np.abs(want).std()) > 1e-3, f"{what}: degenerate reference output"


def video(n, f, size, seed=0):
  return torch.randn(n, f, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ============================================================================================ tests
def test_author_tsm_pth_tar_to_checkpoint(tmp_path):
  """TSM-R50 (REFERENCE.md section 2) saved as the reference's main.py does: {'state_dict': ...} with
  DataParallel's ``module.`` prefix, ``.net`` shift wrappers and ``new_fc``; the CLI path writes an orbax
  checkpoint whose ``params`` item restores to the same logits."""
  from vidjax.train import checkpoint
  t = 2
  base = ResNet(stem=4, shift_t=0)
  for name, m in list(base.named_modules()):
    if isinstance(m, Bottleneck):
      m.conv1 = Shifted(m.conv1, t)
  net = randomise(TSN(base, 128, 5, t))
  x = video(2, t, 32)
  with torch.no_grad():
    want = net(x).numpy()
  path = tmp_path / "tsm.pth.tar"
  torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state(net).items()}}, path)
  c = tiny_config("tsm_resnet")
  report = convert.convert_file(str(path), c, str(tmp_path / "run"), verbose=False)
  assert report["source"] == "tsn" and not report["initialised"]
  variables, step = checkpoint.restore_variables(str(tmp_path / "run"))
  assert step == 0
  assert_close(logits_of(c, variables, nthwc(x)), want, "TSM logits")
  # train.py resumes from it: the 'state' item holds the same parameters and step 0
  mgr = checkpoint.manager(str(tmp_path / "run"), read_only=True)
  assert mgr.latest_step() == 0 and set(mgr.item_metadata(0).keys()) >= {"state", "params", "model"}


def test_author_rnl_tsm_with_channel_gate_and_nl():
  """RNL-TSM (REFERENCE.md section 3): ChannelGate + Gaussian RNL (3x7x7, C' = 32, one group) after
  layer2.0, RNL (3x3x3, C' = 64: the dense weight in 2 groups of 32) after layer3.0; and the NL network
  (section 4) with the same placement."""
  t = 2
  for kind in ("rnl", "nl"):
    torch.manual_seed(1)
    base = ResNet(stem=8, shift_t=0)
    for m in base.modules():
      if isinstance(m, Bottleneck):
        m.conv1 = Shifted(m.conv1, t)
    if kind == "rnl":
      base.layer2[0] = Wrapper(base.layer2[0], t, cg=ChannelGate(64), nl=RNL(64, [3, 7, 7]))
      base.layer3[0] = Wrapper(base.layer3[0], t, nl=RNL(128, [3, 3, 3]))
    else:
      base.layer2[0] = Wrapper(base.layer2[0], t, nl=NL(64))
      base.layer3[0] = Wrapper(base.layer3[0], t, nl=NL(128))
    net = randomise(TSN(base, 256, 5, t), seed=2)
    x = video(1, t, 32, seed=3)
    with torch.no_grad():
      want = net(x).numpy()
    c = tiny_config("attention_tsm_resnet", width=0.125)
    from vidjax.models.attention_net import default_attention_config
    c.model.attention = default_attention_config()
    c.model.attention.positions = ((2, 0), (3, 0))
    if kind == "rnl":
      c.model.attention.blocks = ("cg", "rnl")
      c.model.attention.channel_positions = ((2, 0),)
      c.model.attention.rnl.impl = "dense"
    else:
      c.model.attention.blocks = ("nl",)
      c.model.attention.nl.impl = "dense"
    variables, report = convert.convert_state_dict(state(net), c)
    assert report["source"] == "tsn" and not report["initialised"]
    assert_close(logits_of(c, variables, nthwc(x)), want, f"{kind.upper()}-TSM logits")
  # the RNL checkpoint into a config without the ChannelGate: the error names the cg keys and the config
  c.model.attention.blocks = ("rnl",)
  c.model.attention.channel_positions = ()
  with pytest.raises(convert.ConversionError, match=r"layer2\.0\.cg\.W_k\.weight(.|\n)*se_rnl_tsm_k400"):
    convert.convert_state_dict(state(_rnl_net(t)), c)


def _rnl_net(t):
  base = ResNet(stem=8)
  base.layer2[0] = Wrapper(base.layer2[0], t, cg=ChannelGate(64), nl=RNL(64, [3, 7, 7]))
  base.layer3[0] = Wrapper(base.layer3[0], t, nl=RNL(128, [3, 3, 3]))
  return TSN(base, 256, 5, t)


def test_imagenet_resnet_initialises_tsm_rnl_and_both_bqn_pathways():
  """torchvision ResNet (fc of 1000 classes) as ImageNet initialisation: the TSN-ResNet's features equal
  the torch ResNet's; new parts (classifier, RNL blocks, MBPMs, lateral connections) keep the values
  ``train.py`` would start from; both BQN pathways receive the same ImageNet weights."""
  torch.manual_seed(4)
  resnet = randomise(ResNet(stem=4, classes=1000), seed=4)
  sd = state(resnet)
  x = video(1, 2, 32, seed=5)
  with torch.no_grad():
    want = resnet.features(x.reshape(-1, 3, 32, 32)).numpy().transpose(0, 2, 3, 1)
  c = tiny_config("tsm_resnet", shift=False)
  variables, report = convert.convert_state_dict(sd, c)
  assert report["source"] == "imagenet" and report["dropped"] == ["fc.bias", "fc.weight"]
  assert report["initialised"] == ["head/fc/bias", "head/fc/kernel"]
  model = registry.build(c.model)
  _, feats = model.apply(variables, jnp.asarray(nthwc(x)), train=False, return_features=True)
  assert_close(feats, want, "ImageNet ResNet features")
  init = convert.initial_variables(model, c)
  np.testing.assert_array_equal(variables["params"]["head"]["fc"]["kernel"],
                                init["params"]["head"]["fc"]["kernel"])

  # RNL-TSM: the backbone from ImageNet, the attention blocks at their initial values
  from vidjax.models.attention_net import default_attention_config
  ca = tiny_config("attention_tsm_resnet")
  ca.model.attention = default_attention_config()
  ca.model.attention.positions = ((2, 0),)
  zeros = lambda cfg: (lambda: jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), convert.target_shapes(cfg)[1]))
  va, ra = convert.convert_state_dict(sd, ca, init_fn=zeros(ca))
  assert {p.split("/")[0] for p in ra["initialised"]} == {"head", "layer2_0_attn"}
  jax.tree.map(np.testing.assert_array_equal, va["params"]["layer3_0"], variables["params"]["layer3_0"])

  # BQN: both stems and both pathways' blocks are the ImageNet ResNet; MBPMs, LCs and head at init
  cb = tiny_config("bqn_resnet")
  cb.data.frames_per_segment = 3
  cb.data.crop_size = 64
  vb, rb = convert.convert_state_dict(sd, cb, init_fn=zeros(cb))
  assert {p.split("/")[0] for p in rb["initialised"]} >= {"busy_mbpm", "head"}
  assert all(p.startswith(("busy_mbpm/", "head/")) or "/lc/" in p for p in rb["initialised"])
  for pathway in ("quiet", "busy"):
    jax.tree.map(np.testing.assert_array_equal, vb["params"]["layer2_0"][pathway], variables["params"]["layer2_0"])
    jax.tree.map(np.testing.assert_array_equal, vb["batch_stats"][f"{pathway}_stem"],
                 variables["batch_stats"]["stem"])

  # a deeper checkpoint into this config: extra keys listed, with the depth in the message
  deep = state(ResNet(layers=(1, 1, 2, 1), stem=4))
  pattern = r"extra(.|\n)*layer3\.1\.conv1\.weight(.|\n)*2 blocks in layer3"
  with pytest.raises(convert.ConversionError, match=pattern):
    convert.convert_state_dict(deep, c)


def test_author_bqn_r50_and_busy_only_model():
  """BQN TSM-R50 (REFERENCE.md section 7, ``bqn_resnet_reverse.py`` names: mbpf1, conv1/d_conv1,
  path_c/path_f, mbpf + up.1 / down.1, shared fc) with Busy 64^2 / Quiet 40^2, 2 segments x 3 frames,
  4 alternating BPLCs (the last with MBPM k 3); and the Busy-only MBPM + TSM model (``mbpf`` + TSN)."""
  torch.manual_seed(6)
  t = 2
  net = randomise(BQNR50(t, 5, quiet=40), seed=6)
  x = video(1, 3 * t, 64, seed=7)
  with torch.no_grad():
    want = net(x).numpy()
  c = tiny_config("bqn_resnet", quiet_size=40)
  c.data.frames_per_segment = 3
  c.data.crop_size = 64
  sd = {f"module.base_model.{k}": v for k, v in state(net).items()}
  variables, report = convert.convert_state_dict(sd, c)
  assert report["source"] == "bqn_resnet" and not report["initialised"]
  assert_close(logits_of(c, variables, nthwc(x)), want, "BQN-R50 logits")

  # Busy-only: MBPM stem + TSM-ResNet in the TSN wrapper (BQN ops/models.py, modality 'HP')
  base = ResNet(stem=4)
  for m in base.modules():
    if isinstance(m, Bottleneck):
      m.conv1 = Shifted(m.conv1, t)
  busy = randomise(TSN(base, 128, 5, t, mbpm=MBPM(3, 9, True)), seed=8)
  with torch.no_grad():
    want = busy(x).numpy()
  cb = tiny_config("busy_tsm_resnet")
  cb.data.frames_per_segment = 3
  cb.data.crop_size = 64
  variables, _ = convert.convert_state_dict(state(busy), cb)
  assert_close(logits_of(cb, variables, nthwc(x)), want, "MBPM + TSM logits")


def test_x3d_and_bqn_x3d_from_npz_and_safetensors(tmp_path):
  """pytorchvideo X3D names (REFERENCE.md section 8: swapped stem names, SE in norm_b.1.block, shortcut
  without BN on a 24 -> 24 stride-2 block) read from .npz and from .safetensors without torch; then
  BQN X3D (``bqn_x3d_reverse.py`` names: path_c/path_f, 1x1 conv + BN lateral connections, two heads),
  Busy 64^2 / Quiet 40^2 with LC MBPM kernels 3 (k 7 needs Quiet maps of at least 4 pixels)."""
  torch.manual_seed(9)
  net = randomise(X3D(5), seed=9)
  x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(10))
  with torch.no_grad():
    want = net(x).numpy()
  c = tiny_config("x3d", **X3D_CFG)
  c.data.num_segments, c.data.crop_size = 4, 32
  arrays = {k: v.numpy() for k, v in state(net).items()}
  np.savez(tmp_path / "x3d.npz", **arrays)
  _write_safetensors(tmp_path / "x3d.safetensors", arrays)
  clip = np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 4, 1))
  variables, report = convert.convert_state_dict(convert.load_state_dict(str(tmp_path / "x3d.npz")), c)
  assert report["source"] == "x3d"
  assert_close(logits_of(c, variables, clip), want, "X3D logits")
  from_st, _ = convert.convert_state_dict(convert.load_state_dict(str(tmp_path / "x3d.safetensors")), c)
  jax.tree.map(np.testing.assert_array_equal, from_st, variables)
  # pytorchvideo's *_nofc weights: --head=init leaves the classifier at its initial value
  nofc = {k: v for k, v in arrays.items() if not k.startswith("blocks.5.proj")}
  with pytest.raises(convert.ConversionError, match="missing(.|\n)*head/fc/kernel"):
    convert.convert_state_dict(nofc, c)
  _, report = convert.convert_state_dict(nofc, c, head="init",
                                         init_fn=lambda: jax.tree.map(np.zeros_like, variables))
  assert report["initialised"] == ["head/fc/bias", "head/fc/kernel"]

  t = 2
  bqn = randomise(BQNX3D(t, 5, quiet=40, ks=(3, 3, 3, 3)), seed=11)
  xb = video(1, 3 * t, 64, seed=12)
  with torch.no_grad():
    want = bqn(xb).numpy()
  cb = tiny_config("bqn_x3d", lc_kernel_sizes=(3, 3, 3, 3), **X3D_CFG)
  cb.data.frames_per_segment, cb.data.crop_size = 3, 64
  variables, report = convert.convert_state_dict(state(bqn), cb)
  assert report["source"] == "bqn_x3d" and not report["initialised"]
  assert_close(logits_of(cb, variables, nthwc(xb)), want, "BQN X3D logits")


def test_mismatch_lists_keys():
  """A missing key, an extra key and a classifier of another size are reported by name."""
  t = 2
  base = ResNet(stem=4)
  for m in base.modules():
    if isinstance(m, Bottleneck):
      m.conv1 = Shifted(m.conv1, t)
  sd = state(TSN(base, 128, 7, t))
  sd.pop("base_model.layer2.0.bn2.running_var")
  sd["base_model.layer2.0.conv9.weight"] = torch.zeros(3, 3, 1, 1)
  with pytest.raises(convert.ConversionError) as e:
    convert.convert_state_dict(sd, tiny_config("tsm_resnet"))
  msg = str(e.value)
  assert "batch_stats:layer2_0/bn2/var" in msg  # missing
  assert "base_model.layer2.0.conv9.weight" in msg  # extra
  assert "new_fc.weight -> params:head/fc/kernel: checkpoint (128, 7)" in msg and "model (128, 5)" in msg
  assert "--head=init" in msg


def _write_safetensors(path, arrays):
  """The safetensors format written from its specification (u64 header length, JSON header, data)."""
  header, blobs, off = {}, [], 0
  for k, v in arrays.items():
    b = np.ascontiguousarray(v, "<f4").tobytes()
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
  h = json.dumps(header).encode()
  with open(path, "wb") as fh:
    fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_command_line_with_npz(tmp_path):
  """``python -m vidjax.tools.convert`` on an .npz state_dict (no torch needed to read it): writes the
  checkpoint; a model with another class count stops with exit status 2 and the key listing."""
  import subprocess
  import sys
  t = 2
  base = ResNet(stem=4)
  for m in base.modules():
    if isinstance(m, Bottleneck):
      m.conv1 = Shifted(m.conv1, t)
  np.savez(tmp_path / "tsm.npz", **{f"module.{k}": v.numpy() for k, v in state(TSN(base, 128, 5, t)).items()})
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  base_cmd = [sys.executable, "-m", "vidjax.tools.convert", "--config=configs/tsm_k400.py",
              "--config.model.width=0.0625", "--config.model.stage_sizes=(1,1,1,1)",
              "--config.data.num_segments=2", "--config.data.crop_size=32", f"--checkpoint={tmp_path / 'tsm.npz'}"]
  ok = subprocess.run(base_cmd + ["--config.model.num_classes=5", f"--workdir={tmp_path / 'out'}"], cwd=root,
                      env=env, capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "source: tsn -> tsm_resnet" in ok.stdout and os.path.isdir(tmp_path / "out" / "checkpoints" / "0")
  bad = subprocess.run(base_cmd + [f"--workdir={tmp_path / 'bad'}"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode == 2 and "new_fc.weight -> params:head/fc/kernel" in bad.stderr
  assert not os.path.exists(tmp_path / "bad" / "checkpoints")
