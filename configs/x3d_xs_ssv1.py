"""X3D-XS on Something-Something V1: the X3D-XS baseline of thesis Table 3.6 (4 x 6 views, 0.6G, 3.33M).

Input 4 frames (one per TSN segment) x 160^2, 174 classes. Expected counts: 3.331M params, 0.605 GMACs
conv/linear at K=400 (REFERENCE.md section 13), 0.605 at K=174 too (the fc is 2048 x K MACs).
Recipe: the X3D rows of REFERENCE.md section 10 list X3D-M only; X3D-XS on SS V1 is a chapter 3
baseline, so this follows the thesis' chapter 3 X3D SS V1 setting (section 3.6.1, "DAN model based on X3D":
Kinetics-pretrained backbone, lr 0.12, batch 256, 50 epochs, wd 4e-4, dropout 0.8), which equals the
section 10 "X3D-M SS V1 K400-ft" row except for the epoch count (60 there); 7 warm-up epochs as in every
X3D row of section 10. The thesis crops 160^2 from a short side drawn in [182, 228] (X3D's jitter) and
tests on a 160^2 centre crop (3 x 160^2 crops x 2 clips for the multi-view numbers); the shared pipeline's
multi-scale crop is used here, short side 182 at validation. Kinetics-pretrained weights are not shipped.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "x3d"
  c.model.variant = "xs"
  c.model.num_classes = 174
  c.model.dropout = 0.8
  c.model.head_pool = "global"
  for k in ("depth", "width", "shift"):
    del c.model[k]
  c.data.dataset = "sthv1"
  c.data.root = "data/sthv1"
  c.data.num_segments = 4
  c.data.frames_per_segment = 1
  c.data.sampling = "segment"
  c.data.crop_size = 160
  c.data.scale_size = 182
  c.data.flip = False
  c.data.mean = (0.45, 0.45, 0.45)
  c.data.std = (0.225, 0.225, 0.225)
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.12
  c.optim.batch_size = 256
  c.optim.epochs = 50
  c.optim.weight_decay = 4e-4
  c.optim.warmup_epochs = 7.0
  return c
