"""TSM-ResNet-50 on Kinetics-400: the baseline of Table 4.6 (8 x 224^2, 400 classes).

Thesis: 24.33M params, 32.89 GFLOPs (MACs); the reference code: 24.328M, 32.70 GMACs conv/linear
(REFERENCE.md section 13). Recipe: thesis section 4.6 (lr 0.01, batch 64, 50 epochs, wd 1e-4, dropout 0.5).
"""
from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "tsm_resnet"
  c.model.depth = 50
  c.model.num_classes = 400
  c.model.dropout = 0.5
  c.data.dataset = "kinetics400"
  c.data.root = "data/kinetics400"
  c.data.num_segments = 8
  c.data.frames_per_segment = 1
  c.data.sampling = "dense"
  c.data.dense_stride = 8  # TSM dense: T frames with stride 64 // T in a 64-frame window
  c.data.crop_size = 224
  c.data.test_crops = 3
  c.data.test_clips = 10
  c.optim.lr = 0.01
  c.optim.batch_size = 64
  c.optim.epochs = 50
  c.optim.weight_decay = 1e-4
  return c
