"""BQN TSM-R50 on Kinetics-400 (thesis section 5.5, Table 5.10 "BQN TSM R50 48 x 10").

Model as ``configs/bqn_ssv1.py`` with 400 classes and 16 segments (48 frames; the BQN README trains
K400 with ``--num_segments 16``; ``--config.data.num_segments=24`` gives the 72-frame row).
Recipe (thesis section 5.5.1, REFERENCE.md section 10): lr 0.08 for a batch of 512, 100 epochs, wd 2e-4,
dropout 0.5, 7 warm-up epochs then cosine, grad clip 20, label smoothing 0.1 (README). Dense sampling:
3T consecutive frames from a random start (frame stride 1); test: 10 clips x 3 full-height crops.
Horizontal flip on. Parameter groups: BQN column of REFERENCE.md section 10.
"""
from configs import bqn_ssv1, default


def get_config():
  c = default.get_config()
  c.model = bqn_ssv1.bqn_model(num_classes=400, dropout=0.5)
  c.data.dataset = "kinetics400"
  c.data.root = "data/kinetics400"
  c.data.num_segments = 16
  c.data.frames_per_segment = 3
  c.data.sampling = "dense"
  c.data.dense_stride = 1
  c.data.crop_size = 256
  c.data.scale_size = 256
  c.data.flip = True
  c.data.test_crops = 3
  c.data.test_clips = 10
  c.optim.lr = 0.08
  c.optim.batch_size = 512
  c.optim.epochs = 100
  c.optim.warmup_epochs = 7.0
  c.optim.weight_decay = 2e-4
  c.optim.grad_clip = 20.0
  c.optim.label_smoothing = 0.1
  c.optim.param_groups = bqn_ssv1.BQN_PARAM_GROUPS
  return c
