"""BQN TSM-R50 fine-tuned from Kinetics-400 on UCF101 (thesis section 5.5.1, Table 5.11).

Recipe: lr 0.001 for a batch of 64, 10 epochs, wd 1e-4, dropout 0.8, no warm-up, cosine; every BN layer
frozen except the first one (TSN partial BN: in the reference that is the Quiet stem's ``bn1``, the first
BatchNorm2d the model registers). ``train.partial_bn`` / ``train.partial_bn_keep`` ask the training loop for
that; ``train.init_checkpoint`` names the K400 BQN to start from (``configs/bqn_k400.py``, 400 -> 101
classes: the fc is re-initialised). Test: 3 crops x 2 clips, mean class accuracy over the 3 splits.
"""
from configs import bqn_ssv1, default


def finetune_config(dataset: str, num_classes: int):
  c = default.get_config()
  c.model = bqn_ssv1.bqn_model(num_classes=num_classes, dropout=0.8)
  c.data.dataset = dataset
  c.data.root = f"data/{dataset}"
  c.data.num_segments = 8
  c.data.frames_per_segment = 3
  c.data.sampling = "segment"
  c.data.crop_size = 256
  c.data.scale_size = 256
  c.data.flip = True
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.001
  c.optim.batch_size = 64
  c.optim.epochs = 10
  c.optim.warmup_epochs = 0.0
  c.optim.weight_decay = 1e-4
  c.optim.grad_clip = 20.0
  c.optim.label_smoothing = 0.0  # the README's --ls is only shown for K400 / SS V1 training
  c.optim.param_groups = bqn_ssv1.BQN_PARAM_GROUPS
  c.train.partial_bn = True  # freeze (statistics and affine) every BN but the first
  c.train.partial_bn_keep = r"(^|/)quiet_stem/bn1/"
  c.train.init_checkpoint = ""  # the Kinetics-400 BQN checkpoint
  return c


def get_config():
  return finetune_config("ucf101", 101)
