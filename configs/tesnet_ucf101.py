"""TeSNet on UCF101 split 1 (thesis section 3.3, Tables 3.2-3.5).

``--config=configs/tesnet_ucf101.py`` (RGB stream), ``...:flow`` (optical-flow stream) or ``...:rgb+flow``
(two-stream model of Fig. 3.4, scores averaged; input = RGB and flow x/y concatenated on channels).

Section 3.3.1: Inception-ResNet-v2 backbone (ImageNet-pretrained), one TSP layer before the first conv
with K = 10 input frames and D = 3 squeezed images (Table 3.2 setting 1; ``model.tsp_setting`` picks
rows 1-5), delta1 = Sigmoid, delta2 = LeakyReLU, Phi = I; loss l_cls + beta sum l_proj with beta = 10
(Eq. 3.6, joint strategy 'weighted'); 299^2 random crops of 256 x 340 frames, K consecutive frames at a
random position; dropout 0.5; SGD momentum 0.9, batch 32, weight decay 4e-5, lr 0.001 (RGB) / 0.005
(flow), 30 epochs. The thesis divides the lr by 10 when the validation accuracy saturates; the vidjax
schedule is warm-up + cosine (``optim``), which this config keeps. Test: 20 clips per video, fully
convolutional (centre crop here).

Input (``data.modality`` = ``model.modality``): RGB ``(N, 10, 299, 299, 3)``, flow ``(..., 2)`` or both
``(..., 5)``. Flow = TV-L1 x/y grey JPEGs in each frame folder (``data.flow_template``, "" detects
``flow_x_00001.jpg`` / ``x_00001.jpg``); flow of frame i = the motion i -> i + 1 (input_pipeline/sources/
rawframes.py). Normalisation: Inception's mean = std = 0.5 for every channel (RGB and flow to [-1, 1]; for
flow this equals the reference's rule mean 0.5, std = mean RGB std). The flow stream crops with TSN's flow
scales (1, .875, .75) (``get_augmentation`` of the reference's Flow modality); the two-stream input shares
one crop, with the RGB scales. A flipped clip's flow x is inverted (255 - x).
"""
import ml_collections

from configs import default


def get_config(arg: str = "rgb"):
  modality = arg or "rgb"
  c = default.get_config()
  c.model.name = "tesnet"
  c.model.backbone = "inception_resnet_v2"
  c.model.num_classes = 101
  c.model.dropout = 0.5
  c.model.modality = modality  # rgb | flow | rgb+flow
  c.model.fusion = "logits"
  c.model.tsp_layers = ("input:3",)  # Table 3.2 setting 1 ("point:D" per TSP layer)
  c.model.tsp_activations = "sigmoid+leaky_relu"  # Table 3.1
  c.model.tsp_bias = True  # nn.Linear biases (see vidjax/modules/projection.py)
  c.model.tsp_ridge = 0.0
  c.model.num_segments = 1

  c.data.dataset = "ucf101"
  c.data.root = "data/ucf101"
  c.data.num_segments = 1
  c.data.frames_per_segment = 10  # K
  c.data.sampling = "segment"  # one segment: K consecutive frames at a random position
  c.data.crop_size = 299
  c.data.scale_size = 299
  c.data.flip = True
  channels = {"rgb": 3, "flow": 2, "rgb+flow": 5}[modality]
  c.data.mean = (0.5,) * channels  # Inception preprocessing: [-1, 1] (flow: 128 = zero motion -> 0)
  c.data.std = (0.5,) * channels
  c.data.modality = modality  # rgb | flow | rgb+flow (must equal model.modality)
  c.data.flow_template = ""  # "" = detect flow_{}_{:05d}.jpg (TSN) / {}_{:05d}.jpg (mmaction2)
  if modality == "flow":
    c.data.multi_scale = (1.0, 0.875, 0.75)
  c.data.test_crops = 1
  c.data.test_clips = 20

  c.joint = ml_collections.ConfigDict(dict(
      strategy="weighted", beta=10.0,  # Eq. 3.6
      alpha=0.5, gamma=0.2, lam=0.3, schedule_form="printed", backbone_grad="auto",
      projection_pattern=r"(^|/)(representation|tsp)(/|$)"))

  c.optim.lr = 0.005 if modality == "flow" else 0.001
  c.optim.batch_size = 32
  c.optim.epochs = 30
  c.optim.momentum = 0.9
  c.optim.weight_decay = 4e-5
  return c
