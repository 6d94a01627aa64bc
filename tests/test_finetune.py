"""Fine-tuning recipe: layer-wise learning-rate decay, hub presets, a start from an HF dir."""
import numpy as np
import tensorflow as tf

from vivit_tfx.models import training
from vivit_tfx.models.vivit import build_vivit
from vivit_tfx.models.vivit_config import preset


def test_layer_decay_scales_each_blocks_update():
  """One AdamW step with decay 0.5 over 2 blocks: the head moves by lr, block 1 by lr/2,
  block 0 by lr/4, the tubelet embedding by lr/8 (Adam's first step is lr * sign(g))."""
  config = preset('vivit-tiny', num_layers=2, layer_decay=0.5, learning_rate=1e-2,
                  warmup_steps=0, weight_decay=0.0, clipnorm=0.0)
  model = build_vivit(config)
  opt = training.optimizer(config, model, total_steps=100)
  before = {v.path: v.numpy().copy() for v in model.trainable_variables}
  opt.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_variables])
  moved = {v.path: float(np.abs(v.numpy() - before[v.path]).max())
           for v in model.trainable_variables}
  step = {name: next(m for p, m in moved.items() if name in p)
          for name in ('head/kernel', 'block_1/mlp_in', 'block_0/mlp_in', 'tubelet_embedding')}
  np.testing.assert_allclose([step[n] for n in step], [1e-2, 5e-3, 2.5e-3, 1.25e-3], rtol=1e-3)
