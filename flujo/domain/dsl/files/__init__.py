"""Pipeline files: a pipeline as YAML data (``version: 1``), read, checked and written.

The modules, in the order they build on each other::

    format      the format as data: sections, keys, kinds of values, descriptions
    marks       YAML read safely, with the position of every key and value
    values      one section's keys and plain values checked against ``format``
    resolve     import paths (``module:attr``) to objects; signatures that fit
    constructs  branch, loop, parallel, map, human, state_machine, router sections
    building    one step: what it uses, its policies, lists of steps
    workspace   the files of one load: imports, parts of other files, import cycles
    loading     check_pipeline_file / load_pipeline_file / Pipeline.from_yaml
    writing     pipeline.to_yaml()
    schema      the JSON Schema of the format (shipped as pipeline-file.schema.json)

``flujo.domain.dsl`` binds ``Pipeline.from_yaml`` and ``Pipeline.to_yaml`` from here.
"""

from flujo.domain.dsl.files.loading import (
    PipelineFile,
    check_pipeline_file,
    from_yaml,
    load_pipeline_file,
)
from flujo.domain.dsl.files.schema import pipeline_schema, shipped_schema_text
from flujo.domain.dsl.files.writing import to_data, to_yaml

__all__ = [
    "PipelineFile",
    "check_pipeline_file",
    "from_yaml",
    "load_pipeline_file",
    "pipeline_schema",
    "shipped_schema_text",
    "to_data",
    "to_yaml",
]
