"""NL TSM-R50 on Kinetics-400: 5 embedded-Gaussian non-local blocks (Wang et al.), Table 4.6 / Fig. 4.7.

Same positions as RNL (res3 blocks 0, 2; res4 blocks 0, 2, 4). Numbers: 31.69M parameters,
49.15 GMACs conv/linear (thesis 31.69M / 49.38G; the thesis' count leaves out the 47.8 GMACs of
attention matmuls: about 97 GMACs in all with ``--config.model.attention.nl.impl=dense``).
Recipe as ``rnl_tsm_k400`` (thesis section 4.6); the reference's NL BN parameter rules apply.
"""
from configs import rnl_tsm_k400


def get_config(arg: str = ""):
  c = rnl_tsm_k400.get_config(arg)
  c.model.attention.blocks = ("nl",)
  return c
