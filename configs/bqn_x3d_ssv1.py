"""BQN X3D-M on Something-Something V1 (thesis Table 5.9 "BQN X3D-M 48 x 3 x 2", 9.7G / 6.6M).

Model: reference ``src/bqn_x3d_reverse.py`` (REFERENCE.md section 8): 16 segments x 3 frames (48 frames),
Quiet 160^2 / Busy 256^2, 26 alternating lateral connections with 1x1 convs, one X3D head per pathway.
``python -m vidjax.tools.flops --config=configs/bqn_x3d_ssv1.py``: 7.08M parameters, 9.28 GMACs
conv/linear (the thesis' 6.6M leaves out the lateral connections, REFERENCE.md section 13).

Recipes (thesis section 5.5.1, REFERENCE.md section 10), chosen with the config argument:
* ``configs/bqn_x3d_ssv1.py`` or ``...:scratch``: from scratch, lr 0.2, batch 256, 100 epochs, wd 5e-5,
  dropout 0.5, 7 warm-up epochs (Table 5.9 "None" pre-training, 50.6%);
* ``...:k400ft``: fine-tuned from the Kinetics-400 BQN X3D-M (``train.init_checkpoint``), lr 0.12,
  batch 256, 60 epochs, wd 4e-4, dropout 0.8 (Table 5.9 "K400", 53.7%).
Cosine schedule, SGD momentum 0.9, grad clip 20, label smoothing 0.1 (BQN README ``--ls``). No flip. X3D
normalisation 0.45 / 0.225. Test: 3 crops x 2 clips.
"""
import ml_collections

from configs import default

# REFERENCE.md section 10, BQN column, X3D: the first conv is the Busy stem's spatial conv; the fc of
# both heads (pytorchvideo ``proj``) lr x5 without weight decay.
BQN_X3D_PARAM_GROUPS = (
    "fc_weight: (^|/)fc/kernel$ | kernel | 5 | 0",
    "fc_bias: (^|/)fc/bias$ | bias | 10 | 0",
    "first_conv: (^|/)busy_stem/conv_xy/kernel$ | kernel | 5 | 1",
    "stem_mbpm: (^|/)busy_mbpm/ | * | 5 | 1",
    "bn: .* | bn | 1 | 0",
    "bias: .* | bias | 2 | 0",  # SE conv biases
    "weight: .* | * | 1 | 1",  # other convs, LC 1x1 convs, LC MBPM kernels
)


def bqn_x3d_model(num_classes: int, dropout: float) -> ml_collections.ConfigDict:
  """BQN X3D-M as the reference builds it (defaults of ``vidjax.models.bqn.BusyQuietX3D``)."""
  m = ml_collections.ConfigDict()
  m.name = "bqn_x3d"
  m.variant = "m"
  m.num_classes = num_classes
  m.dropout = dropout
  m.quiet_size = 160
  m.quiet_frames = 0
  m.quiet_input = "first_frame"  # | "eq5.4"
  m.stem_sigma = 1.1
  m.stem_kernel_size = 9
  m.stem_mbpm_trainable = True
  m.lc_design = "IV"
  m.lc_blocks = "all"  # 26 BPLCs
  m.lc_stages = (1, 2, 3, 4)
  m.lc_sigma = 0.9
  m.lc_kernel_sizes = (7, 7, 7, 3)
  m.lc_phi = True  # the reference's LC 1x1 convs (Eq. 5.5 phi / Fig. 5.5 W_1)
  m.lc_w1 = True
  m.lc_phi_bottleneck = 0
  m.lc_bn_zero_init = False  # reference re-initialises the LC BN to gamma 1 (thesis: 0)
  m.lc_mbpm_trainable = True
  m.heads = "separate"  # | "shared" (thesis: shared classification layer)
  return m


def x3d_data(c, dataset: str, num_segments: int = 16):
  c.data.dataset = dataset
  c.data.root = f"data/{dataset}"
  c.data.num_segments = num_segments
  c.data.frames_per_segment = 3
  c.data.crop_size = 256
  c.data.scale_size = 256
  c.data.mean = (0.45, 0.45, 0.45)
  c.data.std = (0.225, 0.225, 0.225)
  c.data.test_crops = 3
  return c


def get_config(arg: str = "scratch"):
  if arg not in ("scratch", "k400ft"):
    raise ValueError(f"configs/bqn_x3d_ssv1.py: argument must be 'scratch' or 'k400ft', got {arg!r}")
  c = default.get_config()
  scratch = arg == "scratch"
  c.model = bqn_x3d_model(num_classes=174, dropout=0.5 if scratch else 0.8)
  x3d_data(c, "sthv1")
  c.data.sampling = "segment"
  c.data.flip = False
  c.data.test_clips = 2
  c.optim.lr = 0.2 if scratch else 0.12
  c.optim.batch_size = 256
  c.optim.epochs = 100 if scratch else 60
  c.optim.warmup_epochs = 7.0
  c.optim.weight_decay = 5e-5 if scratch else 4e-4
  c.optim.grad_clip = 20.0
  c.optim.label_smoothing = 0.1
  c.optim.param_groups = BQN_X3D_PARAM_GROUPS
  if not scratch:
    c.train.init_checkpoint = ""  # the Kinetics-400 BQN X3D-M (configs/bqn_x3d_k400.py)
  return c
