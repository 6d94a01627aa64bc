"""ViViT violence detection on TFX: one package, the TFX template's folders inside it."""
import os

# oneDNN's CPU kernels, unless the user chose otherwise. TensorFlow turns them on by itself only
# on CPUs with AVX-512-class features; elsewhere (an AMD EPYC or Ryzen with AVX2) it falls back
# to Eigen, whose Conv3D gradients (the tubelet embedding, the conv tokenizer) took 7-8 s a step
# on a 16-clip batch of 8 x 32 x 32 frames instead of 2-4 ms. Read once, when TensorFlow starts:
# set here, before any module of this package imports it.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
