"""BQN TSM-R50 on Something-Something V1 (thesis section 5.5, Table 5.9 "BQN TSM R50 24 x 1 x 1").

Model: the thesis' BQN = reference ``src/bqn_resnet_reverse.py`` (REFERENCE.md section 7): Quiet 160^2 /
Busy 256^2, 8 segments x 3 frames (24 frames), 16 alternating BPLCs. ``python -m vidjax.tools.flops
--config=configs/bqn_ssv1.py``: 47.68M parameters, 59.4 GMACs conv/linear (thesis 47.4M / 60G).
``--config.data.num_segments=16`` gives the 48-frame rows (121G).

Recipe (thesis section 5.5.1, BQN README, REFERENCE.md section 10): lr 0.12 for a batch of 256, 50 epochs,
wd 8e-4, dropout 0.8, 7 warm-up epochs then cosine, SGD momentum 0.9, grad-norm clip 20, label smoothing
0.1 (README ``--ls``, not in the thesis), all BN layers trained (``--npb``). Backbones start from
ImageNet R50 weights in the thesis (both pathways). Sampling: TSN uniform segments, 3 consecutive
frames each; no horizontal flip (left/right labels). Test: 3 full-height crops x 2 clips.

Parameter groups: the BQN (``src/model.py``) column of REFERENCE.md section 10. To freeze the stem MBPM
(Fig. 5.3 "untrained"), set ``model.stem_mbpm_trainable=False`` *and* put the rule
``"stem_mbpm: (^|/)busy_mbpm/ | * | 0 | 0"`` first, so weight decay does not move it either.
"""
import ml_collections

from configs import default

# REFERENCE.md section 10, BQN column. First match wins.
BQN_PARAM_GROUPS = (
    "fc_weight: (^|/)fc/kernel$ | kernel | 5 | 0",  # code: lr x5, no weight decay
    "fc_bias: (^|/)fc/bias$ | bias | 10 | 0",
    "first_conv: (^|/)(quiet_stem|busy_stem)/conv1/kernel$ | kernel | 5 | 1",  # both stems' conv1
    "stem_mbpm: (^|/)busy_mbpm/ | * | 5 | 1",  # stem MBPM LoG / temporal kernels
    "busy_stem_bn: (^|/)busy_stem/bn1/ | bn | 5 | 0",  # d_bn1
    "bn: .* | bn | 1 | 0",  # every other BN, lateral-connection BN included
    "bias: .* | bias | 2 | 0",
    "weight: .* | * | 1 | 1",  # other convs, LC convs, LC MBPM kernels
)


def bqn_model(num_classes: int, dropout: float) -> ml_collections.ConfigDict:
  """The thesis' BQN TSM-R50 (defaults of ``vidjax.models.bqn.BusyQuietResNet``), all ablation fields."""
  m = ml_collections.ConfigDict()
  m.name = "bqn_resnet"
  m.num_classes = num_classes
  m.depth = 50  # 101: Table 5.9 "BQN TSM R101"
  m.width = 1.0
  m.shift = True
  m.dropout = dropout
  m.quiet_size = 160  # Table 5.8: Quiet 160^2 with Busy = crop_size 256^2
  m.quiet_frames = 0  # 0: one Quiet frame per segment (Table 5.8's "x 6" / "x 4" rows set it)
  m.quiet_input = "first_frame"  # | "eq5.4" (thesis Eq. 5.4)
  m.stem_sigma = 1.1  # Fig. 5.3
  m.stem_kernel_size = 9
  m.stem_mbpm_trainable = True
  m.lc_design = "IV"  # Table 5.7: I | II | III | IV (= BPLC) | V
  m.lc_blocks = "all"  # Tables 5.5 / 5.6: all (16) | first | none | tuple of 1-based block indices
  m.lc_stages = (1, 2, 3, 4)  # res2..res5
  m.lc_sigma = 0.9
  m.lc_kernel_sizes = (7, 7, 7, 3)
  m.lc_phi = False  # Eq. 5.5 phi (1x1 conv on Busy -> Quiet); absent in the reference R50
  m.lc_w1 = False
  m.lc_phi_bottleneck = 0
  m.lc_bn_zero_init = True
  m.lc_mbpm_trainable = True
  m.fusion = "avg_after_fc"  # Table 5.4: avg_after_fc | avg_before_fc | max_after_fc | concat_before_fc
  return m


def get_config():
  c = default.get_config()
  c.model = bqn_model(num_classes=174, dropout=0.8)
  c.data.dataset = "sthv1"
  c.data.root = "data/sthv1"
  c.data.num_segments = 8
  c.data.frames_per_segment = 3
  c.data.sampling = "segment"
  c.data.crop_size = 256
  c.data.scale_size = 256
  c.data.flip = False
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.12
  c.optim.batch_size = 256
  c.optim.epochs = 50
  c.optim.warmup_epochs = 7.0
  c.optim.weight_decay = 8e-4
  c.optim.grad_clip = 20.0
  c.optim.label_smoothing = 0.1
  c.optim.param_groups = BQN_PARAM_GROUPS
  return c
