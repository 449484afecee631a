"""DAN with an X3D-XS backbone on Something-Something V1 (thesis Table 3.6: DAN-XS_{S=4,T=8}).

Section 3.6.1: PWTP defaults (T = 8, D = 1, conv 9x9 stride 8, C' = 24, MLP #7); S = 4 TSN segments of
T = 8 consecutive frames (32 frames); random 160^2 crops from a short side in [182, 228] (X3D-XS recipe);
no flip. X3D recipe on SS V1 (Kinetics-pretrained backbone): 32 GPUs, lr 0.12, batch 256, 50 epochs,
wd 4e-4, dropout 0.8; warm-up 7 epochs (stated for the ResNet models in section 3.6.1, used for
X3D in REFERENCE.md section 10), cosine schedule; MGDA joint training.
Test: 3 crops x 2 clips at 160^2 (Table 3.6 "4 x 6"). Thesis: 3.34M params, 0.8 GFLOPs / view.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "dan"
  c.model.backbone = "x3d_xs"
  c.model.representation = "pwtp"
  c.model.num_classes = 174
  c.model.num_segments = 4  # S; equals c.data.num_segments
  c.model.dropout = 0.8
  c.model.width_factor = 2.0  # X3D-XS: width 2.0, depth 2.2, bottleneck 2.25 (REFERENCE.md section 8)
  c.model.bottleneck_factor = 2.25
  c.model.head_dim_out = 2048
  c.model.pwtp = ml_collections.ConfigDict(dict(
      num_basis=1,  # D
      conv_setting=4,  # Table 3.11 row 4: 9x9, stride 8, C' = 24
      mlp_config=7,  # Table 3.13 #7: beta 1/4, B 1, r 2
      gelu_after_block=False, ridge=0.0, solver="cholesky"))
  c.data.num_segments = 4
  c.data.frames_per_segment = 8  # T of the PWTP
  c.joint = ml_collections.ConfigDict(dict(
      strategy="mgda",  # section 3.6.1; Table 3.9: separate | constant | scheduler | mgda
      alpha=0.5, gamma=0.2, lam=0.3, schedule_form="printed", beta=10.0, backbone_grad="auto",
      projection_pattern=r"(^|/)(representation|tsp)(/|$)"))
  c.data.dataset = "sthv1"
  c.data.root = "data/sthv1"
  c.data.sampling = "segment"
  c.data.crop_size = 160
  c.data.scale_size = 182  # short side at validation; training short side in [182, 228]
  c.data.flip = False
  c.data.mean = (0.45, 0.45, 0.45)  # X3D normalisation (REFERENCE.md section 8)
  c.data.std = (0.225, 0.225, 0.225)
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.12
  c.optim.batch_size = 256
  c.optim.epochs = 50
  c.optim.weight_decay = 0.0004
  c.optim.warmup_epochs = 7.0
  return c
