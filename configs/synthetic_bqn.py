"""The embedded Busy-Quiet demo: a narrow BQN TSM-ResNet learns the built-in motion classes on a CPU.

The thesis' BQN (``configs/bqn_ssv1.py``: MBPM stem, Busy and Quiet TSM-ResNet pathways, 16 alternating
Band-Pass Lateral Connections) at one bottleneck per stage and 1/4 width, on 4 segments x 3 consecutive
frames of 12-frame 32 x 32 synthetic clips: the MBPM turns each segment's 3 frames into one Busy image
(32^2), the Quiet pathway sees the segment's first frame at 16^2 (the thesis' Quiet/Busy size ratio is
160/256). The recipe of ``configs/synthetic_tsm.py`` (flat learning rate, no dropout, no flip).

    python train.py --config=configs/synthetic_bqn.py --workdir=runs/synthetic_bqn
"""

from configs import bqn_ssv1, default, synthetic_tsm


def get_config():
  c = default.get_config()
  c.model = bqn_ssv1.bqn_model(num_classes=6, dropout=0.0)
  c.model.stage_sizes = (1, 1, 1, 1)  # one bottleneck per stage and pathway
  c.model.width = 0.25
  c.model.quiet_size = 16

  synthetic_tsm.demo_data_and_recipe(c, num_frames=12, motion=1.5, num_segments=4, frames_per_segment=3)
  c.optim.epochs = 6  # 128 steps per epoch: 768 steps (the MBPM sees motion from the first steps)
  return c
