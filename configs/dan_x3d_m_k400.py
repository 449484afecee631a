"""DAN with an X3D-M backbone on Kinetics-400 (thesis Table 3.7: DAN-M_{S=16,T=8}).

Section 3.6.1: PWTP defaults (T = 8, D = 1, conv 9x9 stride 8, C' = 24, MLP #7); dense sampling of
S x T = 128 consecutive frames; random 224^2 crops from a short side in [256, 320], random flip. X3D
recipe on Kinetics-400: 32 GPUs, lr 0.4, batch 256, 256 epochs, wd 5e-5, dropout 0.5; warm-up 7 epochs
(section 3.6.1 / REFERENCE.md section 10), cosine schedule; MGDA joint training. Test (Table 3.7):
3 crops x 10 clips; thesis 216 GFLOPs for 30 views.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "dan"
  c.model.backbone = "x3d_m"
  c.model.representation = "pwtp"
  c.model.num_classes = 400
  c.model.num_segments = 16  # S; equals c.data.num_segments
  c.model.dropout = 0.5
  c.model.width_factor = 2.0  # X3D-M: width 2.0, depth 2.2, bottleneck 2.25 (REFERENCE.md section 8)
  c.model.bottleneck_factor = 2.25
  c.model.head_dim_out = 2048
  c.model.pwtp = ml_collections.ConfigDict(dict(
      num_basis=1,  # D
      conv_setting=4,  # Table 3.11 row 4: 9x9, stride 8, C' = 24
      mlp_config=7,  # Table 3.13 #7: beta 1/4, B 1, r 2
      gelu_after_block=False, ridge=0.0, solver="cholesky"))
  c.data.num_segments = 16
  c.data.frames_per_segment = 8  # T of the PWTP
  c.joint = ml_collections.ConfigDict(dict(
      strategy="mgda",  # section 3.6.1; Table 3.9: separate | constant | scheduler | mgda
      alpha=0.5, gamma=0.2, lam=0.3, schedule_form="printed", beta=10.0, backbone_grad="auto",
      projection_pattern=r"(^|/)(representation|tsp)(/|$)"))
  c.data.dataset = "kinetics400"
  c.data.root = "data/kinetics400"
  c.data.sampling = "dense"
  c.data.dense_stride = 1
  c.data.crop_size = 224
  c.data.scale_size = 256
  c.data.flip = True
  c.data.mean = (0.45, 0.45, 0.45)
  c.data.std = (0.225, 0.225, 0.225)
  c.data.test_crops = 3
  c.data.test_clips = 10
  c.optim.lr = 0.4
  c.optim.batch_size = 256
  c.optim.epochs = 256
  c.optim.weight_decay = 5e-05
  c.optim.warmup_epochs = 7.0
  return c
