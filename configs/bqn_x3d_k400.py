"""BQN X3D-M on Kinetics-400 (thesis Table 5.10 "BQN X3D-M 48 x 30", 77.1%).

Model as ``configs/bqn_x3d_ssv1.py`` with 400 classes. Recipe (thesis section 5.5.1, BQN README,
REFERENCE.md section 10): lr 0.4 for a batch of 256, 256 epochs, wd 5e-5, dropout 0.5, 7 warm-up epochs,
cosine, grad clip 20, label smoothing 0.1. Dense sampling (3T = 48 consecutive frames), horizontal flip,
test 10 clips x 3 crops.
"""
from configs import bqn_x3d_ssv1, default


def get_config():
  c = default.get_config()
  c.model = bqn_x3d_ssv1.bqn_x3d_model(num_classes=400, dropout=0.5)
  bqn_x3d_ssv1.x3d_data(c, "kinetics400")
  c.data.sampling = "dense"
  c.data.dense_stride = 1
  c.data.flip = True
  c.data.test_clips = 10
  c.optim.lr = 0.4
  c.optim.batch_size = 256
  c.optim.epochs = 256
  c.optim.warmup_epochs = 7.0
  c.optim.weight_decay = 5e-5
  c.optim.grad_clip = 20.0
  c.optim.label_smoothing = 0.1
  c.optim.param_groups = bqn_x3d_ssv1.BQN_X3D_PARAM_GROUPS
  return c
