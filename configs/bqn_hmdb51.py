"""BQN TSM-R50 fine-tuned from Kinetics-400 on HMDB51 (thesis section 5.5.1, Table 5.11).

Same recipe as ``configs/bqn_ucf101.py`` (lr 0.001, batch 64, 10 epochs, wd 1e-4, dropout 0.8, partial BN),
51 classes.
"""
from configs import bqn_ucf101


def get_config():
  return bqn_ucf101.finetune_config("hmdb51", 51)
