"""The embedded Busy-Quiet demo: a narrow BQN TSM-ResNet learns the built-in motion classes on a CPU.

The thesis' BQN (``configs/bqn_ssv1.py``: MBPM stem, Busy and Quiet TSM-ResNet pathways, 16 alternating
Band-Pass Lateral Connections) at one bottleneck per stage and 1/4 width, on 4 segments x 3 consecutive
frames of 12-frame 32 x 32 synthetic clips: the MBPM turns each segment's 3 frames into one Busy image
(32^2), the Quiet pathway sees the segment's first frame at 16^2 (the thesis' Quiet/Busy size ratio is
160/256). The recipe of ``configs/synthetic_tsm.py`` (flat learning rate, no dropout, no flip).

    python train.py --config=configs/synthetic_bqn.py --workdir=runs/synthetic_bqn
"""
import ml_collections

from configs import bqn_ssv1, default


def get_config():
  c = default.get_config()
  c.model = bqn_ssv1.bqn_model(num_classes=6, dropout=0.0)
  c.model.stage_sizes = (1, 1, 1, 1)  # one bottleneck per stage and pathway
  c.model.width = 0.25
  c.model.quiet_size = 16

  c.data.dataset = "synthetic"
  c.data.synthetic = ml_collections.ConfigDict(dict(
      num_train=2048, num_val=512, num_frames=12, height=32, width=32, num_classes=6, seed=0,
      noise=6.0, jitter=0.5, motion=1.5, object_size=(0.12, 0.18)))
  c.data.num_segments = 4
  c.data.frames_per_segment = 3
  c.data.sampling = "segment"
  c.data.crop_size = 32
  c.data.scale_size = 32
  c.data.multi_scale = (1.0, 0.875)
  c.data.flip = False  # a flip turns 'left' into 'right'
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)

  c.optim.lr = 0.05
  c.optim.batch_size = 16
  c.optim.epochs = 6  # 128 steps per epoch: 768 steps (the MBPM sees motion from the first steps)
  c.optim.warmup_epochs = 0.0
  c.optim.param_groups = ("bn: .* | bn | 1 | 0", "weight: .* | * | 1 | 1")
  c.optim.weight_decay = 1e-4
  c.optim.label_smoothing = 0.0

  c.train.log_every = 100
  c.train.checkpoint_every = 500
  return c
