"""CPA TSM-R50 on Kinetics-400: 5 Convolution Pyramid Attention blocks (Eqs. 4.10-4.11, Tables 4.5, 4.6).

Pyramid 1x1x1 + 3x3x3 + 3x7x7 + 3x9x9 (best row of Table 4.5, 74.27%), softmax over T, H, W scaled
by THW (our reading, see ``ConvPyramidAttention``; ``--config.model.attention.cpa.scale=none`` is
Eq. 4.10 as printed). No reference code exists; the thesis gives no parameter or FLOP numbers
("-" in Table 4.6). Table 4.5 rows: ``--config.model.attention.cpa.kernel_sizes='((3,7,7),)'`` etc.
"+5 [SE+CPA]": ``--config.model.attention.blocks='("se","cpa")'``.
"""
from configs import rnl_tsm_k400


def get_config(arg: str = ""):
  c = rnl_tsm_k400.get_config(arg)
  c.model.attention.blocks = ("cpa",)
  return c
