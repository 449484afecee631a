"""RNL TSM-R50 on Something-Something V1 (Tables 4.6, 4.8): 5 RNL blocks, 174 classes.

Thesis section 4.6: lr 0.02, batch 64, 50 epochs, wd 8e-4, dropout 0.8 (reference README: wd 1e-3,
1 warm-up epoch: ``--config.optim.weight_decay=1e-3 --config.optim.warmup_epochs=1``). TSN uniform
segment sampling, no horizontal flip (left/right labels), test 3 crops x 2 clips.
``--config.model.attention.blocks='("se","rnl")'`` gives the 5 [SE+RNL] row, ``'("nl",)'`` the NL row.
"""
from configs import rnl_tsm_k400


def get_config(arg: str = ""):
  c = rnl_tsm_k400.get_config(arg)
  c.model.num_classes = 174
  c.model.dropout = 0.8
  c.data.dataset = "sthv1"
  c.data.root = "data/sthv1"
  c.data.sampling = "segment"
  c.data.flip = False
  c.data.test_crops = 3
  c.data.test_clips = 2
  c.optim.lr = 0.02
  c.optim.batch_size = 64
  c.optim.epochs = 50
  c.optim.weight_decay = 8e-4
  return c
