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

from configs import dan_tsm_ssv1, synthetic_tsm


def get_config():
  c = dan_tsm_ssv1.get_config()
  c.model.num_classes = 6
  c.model.num_segments = 4
  c.model.dropout = 0.0
  c.model.stage_sizes = (1, 1, 1, 1)
  c.model.width = 0.25

  synthetic_tsm.demo_data_and_recipe(c, num_frames=16, motion=1.2, num_segments=4, frames_per_segment=4)
  c.data.test_crops = 1  # dan_tsm_ssv1 tests 3 crops x 2 clips
  c.data.test_clips = 1
  c.optim.epochs = 16  # 128 steps per epoch: 2,048 steps
  return c
