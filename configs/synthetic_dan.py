"""The embedded Dynamic Appearance demo: a narrow DAN trained jointly with MGDA on the motion classes.

DAN (thesis section 3.5, ``configs/dan_tsm_ssv1.py``): S = 4 segments of T = 4 consecutive frames of
16-frame 32 x 32 synthetic clips; the PWTP (D = 1, Table 3.11 row 4 conv 9x9 stride 8, C' = 24, MLP
config #7) turns each segment into one dynamic appearance, and a TSM-ResNet with one bottleneck per
stage at 1/4 width classifies the 4 of them. Joint training with MGDA (Algorithm 1, Eq. 3.18): alpha
is computed from the gradients of the ENoPR loss L1 and the cross-entropy L2 with respect to the PWTP
parameters at every step; both losses and alpha go to TensorBoard (``train/aux_loss`` = ENoPR,
``train/alpha``). The recipe of ``configs/synthetic_tsm.py`` otherwise.

    python train.py --config=configs/synthetic_dan.py --workdir=runs/synthetic_dan
"""
import ml_collections

from configs import dan_tsm_ssv1


def get_config():
  c = dan_tsm_ssv1.get_config()
  c.model.num_classes = 6
  c.model.num_segments = 4
  c.model.dropout = 0.0
  c.model.stage_sizes = (1, 1, 1, 1)
  c.model.width = 0.25

  c.data.dataset = "synthetic"
  c.data.root = ""
  c.data.synthetic = ml_collections.ConfigDict(dict(
      num_train=2048, num_val=512, num_frames=16, height=32, width=32, num_classes=6, seed=0,
      noise=6.0, jitter=0.5, motion=1.2, object_size=(0.12, 0.18)))
  c.data.num_segments = 4
  c.data.frames_per_segment = 4
  c.data.crop_size = 32
  c.data.scale_size = 32
  c.data.multi_scale = (1.0, 0.875)
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)
  c.data.test_crops = 1
  c.data.test_clips = 1

  c.optim.lr = 0.05
  c.optim.batch_size = 16
  c.optim.epochs = 16  # 128 steps per epoch: 2,048 steps
  c.optim.warmup_epochs = 0.0
  c.optim.param_groups = ("bn: .* | bn | 1 | 0", "weight: .* | * | 1 | 1")
  c.optim.weight_decay = 1e-4
  c.optim.label_smoothing = 0.0

  c.train.log_every = 100
  c.train.checkpoint_every = 500
  return c
