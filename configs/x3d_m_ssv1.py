"""X3D-M trained from scratch on Something-Something V1: the X3D-M rows of thesis Tables 5.2 / 5.9.

Input 16 frames (one per TSN segment) x 256^2 (the BQN pipeline's crop, ``input_size=256``, validation
short side 256 + centre crop), 174 classes. Expected counts: 3.331M params, 6.18 GMACs conv/linear
(REFERENCE.md section 13; thesis Table 5.9: 3.3M / 6.4G).
Recipe: REFERENCE.md section 10, X3D-M SS V1 from scratch (thesis section 5.5.1: lr 0.2, batch 256,
100 epochs, wd 5e-5, dropout 0.5, 7 warm-up epochs; README: grad clip 20). The BQN README also adds label
smoothing 0.1 (``--ls``), which the thesis does not mention: left at 0 here (``--config.optim.label_smoothing``).
No horizontal flip (Something-Something labels are left/right sensitive). X3D normalisation 0.45/0.225.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "x3d"
  c.model.variant = "m"
  c.model.num_classes = 174
  c.model.dropout = 0.5
  c.model.head_pool = "global"  # = pytorchvideo's fixed pool at the training size (see vidjax/backbones/x3d.py)
  for k in ("depth", "width", "shift"):  # TSM-ResNet fields of the default model, unused by X3D
    del c.model[k]
  c.data.dataset = "sthv1"
  c.data.root = "data/sthv1"
  c.data.num_segments = 16
  c.data.frames_per_segment = 1
  c.data.sampling = "segment"
  c.data.crop_size = 256
  c.data.scale_size = 256
  c.data.flip = False
  c.data.mean = (0.45, 0.45, 0.45)
  c.data.std = (0.225, 0.225, 0.225)
  c.data.test_crops = 3  # thesis multi-view: 3 crops x 2 clips on SS V1
  c.data.test_clips = 2
  c.optim.lr = 0.2
  c.optim.batch_size = 256
  c.optim.epochs = 100
  c.optim.weight_decay = 5e-5
  c.optim.warmup_epochs = 7.0
  return c
