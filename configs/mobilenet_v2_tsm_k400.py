"""TSM-MobileNetV2 on Kinetics-400 (8 x 224^2, 400 classes).

The thesis trains TSM-MobileNetV2 only on SS V1 (Table 5.2, ImageNet-pretrained, 8 segments); this config
is the Kinetics counterpart of the TSM code base: its released MobileNetV2 Kinetics model is
``..._mobilenetv2_shift8_blockres_avg_segment8_e100_dense`` (shift 1/8 in residual blocks, average
consensus, 8 segments, 100 epochs, dense sampling of 8 frames with stride 8). The other hyper-parameters
follow the TSM Kinetics training script (lr 0.02 for batch 128, i.e. 0.01 for batch 64; wd 1e-4; dropout
0.5; grad clip 20); the schedule is this repo's cosine one. Expected counts: 2.736M params, 2.40 GMACs
conv/linear per clip (0.300 per frame).
"""
from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "mobilenet_v2_tsm"
  c.model.num_classes = 400
  c.model.dropout = 0.5
  c.model.shift = True
  c.model.shift_div = 8
  for k in ("depth", "width"):
    del c.model[k]
  c.data.dataset = "kinetics400"
  c.data.root = "data/kinetics400"
  c.data.num_segments = 8
  c.data.frames_per_segment = 1
  c.data.sampling = "dense"
  c.data.dense_stride = 8
  c.data.crop_size = 224
  c.data.test_crops = 3
  c.data.test_clips = 10
  c.optim.lr = 0.01
  c.optim.batch_size = 64
  c.optim.epochs = 100
  c.optim.weight_decay = 1e-4
  return c
