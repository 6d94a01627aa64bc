"""Files under any URI (`gs://`, `s3://`, TF's `ram://`, a local path) through tf.io.gfile.

Libraries that open local paths only (OpenCV, h5py) get a local temporary copy, deleted after.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator, List

_CHUNK = 1 << 22


def gfile():
  """tf.io.gfile, imported on first use: the CLI imports data/ to build its options, and must
  not wait for TensorFlow."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def is_local(path: str) -> bool:
  return '://' not in path


def exists(path: str) -> bool:
  return gfile().exists(path)


def isdir(path: str) -> bool:
  return gfile().isdir(path)


def listdir(path: str) -> List[str]:
  """Entry names (object stores list folders as 'name/': the slash is dropped)."""
  return [name.rstrip('/') for name in gfile().listdir(path)]


def open_text(path: str):
  return gfile().GFile(path, 'r')


def read_json(path: str):
  with gfile().GFile(path, 'r') as f:
    return json.load(f)


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path`, its folder made first when missing."""
  folder = os.path.dirname(path)
  if folder and not gfile().exists(folder):
    gfile().makedirs(folder)
  with gfile().GFile(path, 'w') as f:
    f.write(text)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """A local path holding `path`'s bytes: `path` itself when local, else a copy with the same
  file name (readers go by the extension, e.g. Keras' `.weights.h5`) in a temporary folder
  removed on exit."""
  if is_local(path):
    yield path
    return
  folder = tempfile.mkdtemp(prefix='vivit_tfx_')
  try:
    local = os.path.join(folder, os.path.basename(path.rstrip('/')) or 'file')
    with gfile().GFile(path, 'rb') as src, open(local, 'wb') as out:
      shutil.copyfileobj(src, out, _CHUNK)
    yield local
  finally:
    shutil.rmtree(folder, ignore_errors=True)
