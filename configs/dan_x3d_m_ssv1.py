"""DAN with an X3D-M backbone on Something-Something V1 (thesis Table 3.6: DAN-M_{S=16,T=3}).

Section 3.6.1: PWTP (T = 3 here, D = 1, conv 9x9 stride 8, C' = 24, MLP #7); S = 16 TSN segments of
T = 3 consecutive frames (48 frames); random 224^2 crops from a short side in [256, 320]; no flip.
X3D recipe on SS V1 (Kinetics-pretrained backbone): 32 GPUs, lr 0.12, batch 256, 50 epochs, wd 4e-4,
dropout 0.8; warm-up 7 epochs (as the ResNet models, section 3.6.1), cosine schedule; MGDA joint
training. Test: 3 crops x 2 clips.
Thesis: 3.34M params, 7.0 GFLOPs / view.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "dan"
  c.model.backbone = "x3d_m"
  c.model.representation = "pwtp"
  c.model.num_classes = 174
  c.model.num_segments = 16  # S; equals c.data.num_segments
  c.model.dropout = 0.8
  c.model.width_factor = 2.0  # X3D-M: width 2.0, depth 2.2, bottleneck 2.25 (REFERENCE.md section 8)
  c.model.bottleneck_factor = 2.25
  c.model.head_dim_out = 2048
  c.model.pwtp = ml_collections.ConfigDict(dict(
      num_basis=1,  # D
      conv_setting=4,  # Table 3.11 row 4: 9x9, stride 8, C' = 24
      mlp_config=7,  # Table 3.13 #7: beta 1/4, B 1, r 2
      gelu_after_block=False, ridge=0.0, solver="cholesky"))
  c.data.num_segments = 16
  c.data.frames_per_segment = 3  # T of the PWTP
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
  c.data.mean = (0.45, 0.45, 0.45)
  c.data.std = (0.225, 0.225, 0.225)
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.12
  c.optim.batch_size = 256
  c.optim.epochs = 50
  c.optim.weight_decay = 0.0004
  c.optim.warmup_epochs = 7.0
  return c
