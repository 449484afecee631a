"""TSM-ResNet-50/101 (REFERENCE.md section 2): parameter/MAC counts of Table 4.6, shapes, the head."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tsm_k400
from vidjax.backbones.resnet import TSMResNet
from vidjax.tools import flops


def test_tsm_r50_k400_params_and_macs():
  # Table 4.6 baseline: TSM-R50 8x224^2, 400 classes: thesis 24.33M params; the reference's module MACs
  # 32.70 G (REFERENCE.md section 13; the thesis' 32.89 G also counts BN/ReLU/pool).
  r = flops.report(tsm_k400.get_config())
  assert r["params"] == pytest.approx(24.33e6, rel=1e-3)
  assert r["gmacs_conv_linear"] == pytest.approx(32.70, rel=0.01)
  # XLA's count excludes padded taps of convolutions, so it is a bit below the dense count.
  assert 0.9 * r["gmacs_conv_linear"] < r["gmacs_total"] < 1.1 * r["gmacs_conv_linear"]


def test_r101_params():
  # TSM adds no parameters, so TSM-ResNet-101 with 1000 classes has torchvision ResNet-101's count.
  m = TSMResNet(num_classes=1000, depth=101)
  v = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 1, 64, 64, 3))))
  assert flops.count_params(v["params"]) == 44_549_160  # torchvision resnet101 parameter count


def test_head_is_mean_of_frame_logits():
  # TSN average consensus of logits: the clip logits equal the mean of per-frame logits.
  m = TSMResNet(num_classes=5, width=0.125, stage_sizes=(1, 1, 1, 1), shift_div=0, dropout=0.0)
  x = jax.random.normal(jax.random.key(1), (2, 4, 32, 32, 3))
  v = m.init(jax.random.key(0), x)
  clip = m.apply(v, x)
  per_frame = jnp.stack([m.apply(v, x[:, i:i + 1]) for i in range(4)], 1)
  np.testing.assert_allclose(clip, per_frame.mean(1), rtol=1e-5, atol=1e-6)


def test_shift_mixes_frames_and_no_shift_does_not():
  x = jax.random.normal(jax.random.key(1), (1, 4, 32, 32, 3))
  x2 = x.at[:, 3].set(0.0)  # change the last frame only
  for div, expect_change in ((8, True), (0, False)):
    m = TSMResNet(num_classes=5, width=0.25, stage_sizes=(1, 1, 1, 1), shift_div=div, dropout=0.0)
    v = m.init(jax.random.key(0), x)
    _, f1 = m.apply(v, x, return_features=True)
    _, f2 = m.apply(v, x2, return_features=True)
    changed = not np.allclose(f1[0], f2[0], atol=1e-6)  # features of frame 0
    assert changed == expect_change


def test_fc_init_and_stride():
  m = TSMResNet(num_classes=7, width=0.125)
  v = m.init(jax.random.key(0), jnp.zeros((1, 2, 224, 224, 3)))
  fc = v["params"]["head"]["fc"]
  assert np.all(np.asarray(fc["bias"]) == 0)
  assert 0.0005 < float(np.std(fc["kernel"])) < 0.002  # N(0, 0.001)
  _, feats = m.apply(v, jnp.zeros((1, 2, 224, 224, 3)), return_features=True)
  assert feats.shape == (2, 7, 7, 256)  # output stride 32, 2048 * 1/8 channels
