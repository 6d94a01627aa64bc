"""ImportSchemaGen keyed on the schema file's content, not only its path.

TFX's ImportSchemaGen has one exec property, `schema_file`, so an edited schema at the same
path is served from the cache. This one adds `schema_sha256` (TFX's executor reads only
`schema_file`); the node keeps the id `ImportSchemaGen`.
"""
from tfx import types
from tfx.components.schema_gen.import_schema_gen import component
from tfx.dsl.components.base import base_component
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from vivit_tfx.components import fingerprint


class ImportSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
  PARAMETERS = {**standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
                'schema_sha256': ExecutionParameter(type=str)}


class ImportSchemaGen(component.ImportSchemaGen):
  """`ImportSchemaGen(schema_file=…)` whose cache key includes the file's content."""
  SPEC_CLASS = ImportSchemaGenSpec

  def __init__(self, schema_file: str):  # pylint: disable=super-init-not-called
    spec = ImportSchemaGenSpec(schema_file=schema_file,
                               schema_sha256=fingerprint.file_content(schema_file),
                               schema=types.Channel(type=standard_artifacts.Schema))
    base_component.BaseComponent.__init__(self, spec=spec)
