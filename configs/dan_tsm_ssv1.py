"""DAN with a TSM-ResNet-50 backbone on Something-Something V1 (thesis Table 3.6: DAN TSM_{S=8,T=4}).

Section 3.6.1: PWTP with D = 1, conv 9x9 stride 8, C' = 24 (Table 3.11 row 4), MLP config #7
(Table 3.13); TSN uniform sampling of S = 8 segments of T = 4 consecutive frames (32 frames); random
224^2 crops from a short side in [256, 320]; no flip on Something-Something. ResNet recipe on SS V1:
32 GPUs, lr 0.12, batch 256 (8 per GPU), 50 epochs, wd 8e-4, dropout 0.8, linear warm-up 7 epochs, SGD
momentum 0.9, cosine schedule, classification layers x5; ImageNet-pretrained backbone; joint training
with MGDA (Algorithm 1). Test (Table 3.6): 3 crops x 2 clips. Thesis: 23.8M params, 43.1 GFLOPs / view.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "dan"
  c.model.backbone = "tsm_resnet"
  c.model.representation = "pwtp"
  c.model.num_classes = 174
  c.model.num_segments = 8  # S; equals c.data.num_segments
  c.model.dropout = 0.8
  c.model.depth = 50
  c.model.width = 1.0
  c.model.shift = True
  c.model.pwtp = ml_collections.ConfigDict(dict(
      num_basis=1,  # D
      conv_setting=4,  # Table 3.11 row 4: 9x9, stride 8, C' = 24
      mlp_config=7,  # Table 3.13 #7: beta 1/4, B 1, r 2
      gelu_after_block=False, ridge=0.0, solver="cholesky"))
  c.data.num_segments = 8
  c.data.frames_per_segment = 4  # T of the PWTP
  c.joint = ml_collections.ConfigDict(dict(
      strategy="mgda",  # section 3.6.1; Table 3.9: separate | constant | scheduler | mgda
      alpha=0.5, gamma=0.2, lam=0.3, schedule_form="printed", beta=10.0, backbone_grad="auto",
      projection_pattern=r"(^|/)(representation|tsp)(/|$)"))
  c.data.dataset = "sthv1"
  c.data.root = "data/sthv1"
  c.data.sampling = "segment"
  c.data.crop_size = 224
  c.data.scale_size = 256
  c.data.flip = False
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.12
  c.optim.batch_size = 256
  c.optim.epochs = 50
  c.optim.weight_decay = 0.0008
  c.optim.warmup_epochs = 7.0
  return c
