"""The curated schema of the raw clip records (imported by the pipeline's ImportSchemaGen)."""
import os

from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

from vivit_tfx.data import features

CLIP_SCHEMA_PATH = os.path.join(os.path.dirname(__file__), 'clip_schema.pbtxt')


def load(path: str = CLIP_SCHEMA_PATH) -> schema_pb2.Schema:
  with open(path) as f:
    return text_format.Parse(f.read(), schema_pb2.Schema())


def frame_slots(schema: schema_pb2.Schema) -> int:
  """The number of frame slots N (`ingest.ClipConfig.stored_frames`) the schema fixes for
  `frames`."""
  feature = next(f for f in schema.feature if f.name == features.FRAMES)
  return feature.shape.dim[0].size


def num_classes(schema: schema_pb2.Schema) -> int:
  """The number of classes the schema's label domain allows."""
  feature = next(f for f in schema.feature if f.name == features.LABEL)
  return feature.int_domain.max + 1


def for_clips(slots: int, n_classes: int, output_dir: str) -> str:
  """The curated schema with `frames` fixed to `slots` frame slots (N) and labels in
  [0, n_classes), written to `output_dir`. Returns the curated file itself when it already
  says so (the default clip config: 80 slots, two classes)."""
  schema = load()
  if frame_slots(schema) == slots and num_classes(schema) == n_classes:
    return CLIP_SCHEMA_PATH
  next(f for f in schema.feature if f.name == features.FRAMES).shape.dim[0].size = slots
  next(f for f in schema.feature if f.name == features.LABEL).int_domain.max = n_classes - 1
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, f'clip_schema_n{slots}_c{n_classes}.pbtxt')
  with open(path, 'w') as f:
    f.write(text_format.MessageToString(schema))
  return path


def for_frame_slots(slots: int, output_dir: str) -> str:
  """`for_clips` for a binary label."""
  return for_clips(slots, 2, output_dir)
