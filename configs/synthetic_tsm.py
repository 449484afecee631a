"""The TSM demo: a narrow TSM-ResNet learns the built-in motion classes on a CPU (val top-1 0.996).

8 segments x 1 frame of 32 x 32 px from 8-frame synthetic clips (input_pipeline/sources/synthetic.py),
the 6 translation / scale classes (left, right, up, down, approach, recede), which no single frame can
tell apart. The two rotation directions are left out: at this size and width TSM-ResNet stays at chance
between them (8 classes: 0.875). The backbone is TSM-ResNet with one bottleneck per stage at 1/4 width;
the shift sits before each block's 1x1 conv1 as in the reference (blockres). From scratch it needs a few
hundred steps before it picks up motion, so the recipe is a flat learning rate for all weights (the
reference's fc x5 / bias x2 groups were made for ImageNet-initialised backbones), no dropout, and 16
epochs. ``--config.model.shift=False`` with ``--config.data.num_segments=1`` is the appearance-only
control (one frame per clip, no shift: 0.176, chance 0.167).

    python train.py --config=configs/synthetic_tsm.py --workdir=runs/synthetic_tsm
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.model.name = "tsm_resnet"
  c.model.depth = 50
  c.model.stage_sizes = (1, 1, 1, 1)  # one bottleneck per stage
  c.model.width = 0.25  # 16..128 bottleneck channels
  c.model.num_classes = 6
  c.model.dropout = 0.0
  c.model.shift = True

  demo_data_and_recipe(c, num_frames=8, motion=3.0, num_segments=8, frames_per_segment=1)
  c.optim.epochs = 16  # 128 steps per epoch: 2,048 steps
  return c


def demo_data_and_recipe(c, *, num_frames: int, motion: float, num_segments: int, frames_per_segment: int):
  """The data and recipe every synthetic demo shares: 6 classes of 32 x 32 clips, 2,048 / 512 of them,
  TSN segments, no flip (a flip turns 'left' into 'right'), batches of 16, flat lr 0.05 with a cosine
  decay, no warm-up, dropout 0 (set by the model configs), no label smoothing."""
  c.data.dataset = "synthetic"
  c.data.root = ""
  c.data.synthetic = ml_collections.ConfigDict(dict(
      num_train=2048, num_val=512, num_frames=num_frames, height=32, width=32, num_classes=6, seed=0,
      noise=6.0, jitter=0.5, motion=motion, object_size=(0.12, 0.18)))
  c.data.num_segments = num_segments
  c.data.frames_per_segment = frames_per_segment
  c.data.sampling = "segment"
  c.data.crop_size = 32
  c.data.scale_size = 32
  c.data.multi_scale = (1.0, 0.875)
  c.data.flip = False
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)
  c.optim.lr = 0.05
  c.optim.batch_size = 16
  c.optim.warmup_epochs = 0.0
  c.optim.param_groups = ("bn: .* | bn | 1 | 0", "weight: .* | * | 1 | 1")
  c.optim.weight_decay = 1e-4
  c.optim.label_smoothing = 0.0
  c.train.log_every = 100
  c.train.checkpoint_every = 500
