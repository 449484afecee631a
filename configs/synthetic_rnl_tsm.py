"""A narrow RNL-TSM learns the built-in motion classes on a CPU (thesis chapter 4 at demo size).

``configs/synthetic_tsm.py`` (TSM-ResNet, one bottleneck per stage at 1/4 width, 8 x 32^2 clips) with
a Gaussian Region-based Non-local block (Eq. 4.5, channel-wise F_theta 3x7x7 in res3 and 3x3x3 in
res4, as ``configs/rnl_tsm_k400.py``) after the res3 and the res4 bottleneck: the same insert
stages as Table 4.1, one block each because each stage has one bottleneck here. The RNL parameter
groups of the reference (``attention_net.attention_param_groups``) are not used: flat learning rate as
in the TSM demo, 16 epochs (2,048 steps: with 6 epochs' faster cosine decay it had not picked up motion
after 600 steps).

    python train.py --config=configs/synthetic_rnl_tsm.py --workdir=runs/synthetic_rnl_tsm
"""
from configs import synthetic_tsm
from vidjax.models.attention_net import default_attention_config


def get_config():
  c = synthetic_tsm.get_config()
  c.model.name = "attention_tsm_resnet"
  c.model.attention = default_attention_config()
  c.model.attention.blocks = ("rnl",)
  c.model.attention.positions = ((2, 0), (3, 0))  # res3 and res4 (stages 2 and 3, block 0)
  return c
