"""DAN with a TSM-ResNet-50 backbone on Kinetics-400 (thesis Table 3.7: DAN TSM_{S=16,T=8}).

Section 3.6.1: PWTP defaults (T = 8, D = 1, conv 9x9 stride 8, C' = 24, MLP #7); dense sampling of
S x T = 128 consecutive frames, one dynamic appearance per 8 frames; random 224^2 crops from a short side
in [256, 320], random horizontal flip. ResNet recipe on Kinetics-400 (ImageNet-pretrained backbone):
64 GPUs, lr 0.08, batch 512, 100 epochs, wd 2e-4, dropout 0.5, linear warm-up 7 epochs, cosine
schedule; MGDA joint training. Test (Table 3.7): 3 crops x 10 clips.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "dan"
  c.model.backbone = "tsm_resnet"
  c.model.representation = "pwtp"
  c.model.num_classes = 400
  c.model.num_segments = 16  # S; equals c.data.num_segments
  c.model.dropout = 0.5
  c.model.depth = 50
  c.model.width = 1.0
  c.model.shift = True
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
  c.data.dense_stride = 1  # S x T consecutive frames
  c.data.crop_size = 224
  c.data.scale_size = 256
  c.data.flip = True
  c.data.test_crops = 3
  c.data.test_clips = 10
  c.optim.lr = 0.08
  c.optim.batch_size = 512
  c.optim.epochs = 100
  c.optim.weight_decay = 0.0002
  c.optim.warmup_epochs = 7.0
  return c
