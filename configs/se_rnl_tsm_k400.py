"""5 [SE + RNL] TSM-R50 on Kinetics-400: the vision attention chain (section 4.4, Tables 4.6, 4.7).

Thesis reading (default): the additive SE of Eqs. 4.12-4.14 (reduction 16) before every one of the
5 RNL blocks: +0.46M parameters (35.95M in the thesis' counting, 28.59M effective), 40.92 GMACs
conv/linear. The reference code's reading (``get_config('code')``): its GCNet-style ChannelGate
(reduction 2) before the first RNL only (res3 block 0): 35.747M in the reference's counting.
"""
from configs import rnl_tsm_k400


def get_config(arg: str = ""):
  c = rnl_tsm_k400.get_config("noquirk" if "noquirk" in arg else "")
  if "code" in arg:
    c.model.attention.blocks = ("cg", "rnl")
    c.model.attention.channel_positions = ((2, 0),)
  else:
    c.model.attention.blocks = ("se", "rnl")
  return c
