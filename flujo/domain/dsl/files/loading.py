"""Loading a pipeline file: check it and the files it imports, all at once, then build it.

``check_pipeline_file(path)`` returns the loaded ``PipelineFile`` or every finding;
``load_pipeline_file(path)`` raises them as one ``PipelineFileError``;
``Pipeline.from_yaml(path)`` is the pipeline of the latter.

Loading **imports the Python modules the files name** (``uses``, ``context``,
validators, conditions ...), running their top-level code, and puts the folder of
each file on ``sys.path`` so that modules beside it import. Load only files you would
run as code. The YAML itself is read with a ``yaml.SafeLoader``: no YAML tag can
create an object or run anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flujo.domain.dsl.context_model import check_context_model, declared_context_model
from flujo.domain.dsl.files.building import FileScope
from flujo.domain.dsl.files.marks import START
from flujo.domain.dsl.files.workspace import Workspace
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.errors import ConfigurationError, Finding, PipelineFileError
from flujo.domain.models import PipelineContext

__all__ = ["PipelineFile", "check_pipeline_file", "from_yaml", "load_pipeline_file"]


@dataclass(frozen=True, slots=True)
class PipelineFile:
    """A loaded pipeline file: its pipeline, and what the file says about running it."""

    path: Path
    """The file, resolved."""
    name: str
    """The file's ``name``, else its stem: the pipeline name runs are stored under."""
    description: str | None
    context_model: type[PipelineContext] | None
    """The file's ``context``, else the one class its steps (and imports) declare."""
    pipeline: Pipeline[Any, Any]
    files: tuple[Path, ...]
    """Every file read, the root first."""


def check_pipeline_file(path: str | os.PathLike[str]) -> tuple[PipelineFile | None, list[Finding]]:
    """Check the file at ``path`` and every file it imports; return it loaded, or the findings.

    Exactly one of the two is there: the ``PipelineFile`` when nothing was found,
    else ``None`` and every finding, file by file, each in order of position.
    """
    workspace = Workspace()
    root = workspace.open(Path(path), os.fspath(path))
    pipeline = workspace.pipeline(root)
    for scope in list(workspace.files.values()):
        workspace.pipeline(scope)  # an imported file is checked whole, used whole or not
    model = _run_model(workspace, root, pipeline)
    findings = workspace.findings()
    if findings or pipeline is None:
        if not findings:  # pragma: no cover - a file that fails says why
            findings = [Finding(root.shown, 1, 1, "the pipeline could not be built")]
        return None, findings
    loaded = PipelineFile(
        path=root.path,
        name=root.name or root.path.stem,
        description=root.description,
        context_model=model,
        pipeline=pipeline,
        files=tuple(workspace.files),
    )
    return loaded, []


def load_pipeline_file(path: str | os.PathLike[str]) -> PipelineFile:
    """Return the pipeline file at ``path`` loaded; ``PipelineFileError`` lists every finding."""
    loaded, findings = check_pipeline_file(path)
    if loaded is None:
        raise PipelineFileError(findings)
    return loaded


def from_yaml(path: str | os.PathLike[str]) -> Pipeline[Any, Any]:
    """Return the pipeline of the pipeline file at ``path`` (``PipelineFileError`` if it is bad).

    Loading imports the modules the file names. The file's context model and name are
    on ``load_pipeline_file(path)``; ``flujo run FILE`` uses both.
    """
    return load_pipeline_file(path).pipeline


def _run_model(
    workspace: Workspace, root: FileScope, pipeline: Pipeline[Any, Any] | None
) -> type[PipelineContext] | None:
    """Return the context model the root runs with, checked against every file's and step's."""
    if pipeline is None:
        return root.context_model
    others = [s for s in workspace.files.values() if s is not root and s.context_model]
    model = root.context_model
    if model is None:
        try:
            from_steps = declared_context_model(pipeline)
        except ConfigurationError as exc:
            root.report.at(_at(root, "steps"), str(exc))
            return None
        declared = [s.context_model for s in others if s.context_model is not None]
        candidates = list(dict.fromkeys([*declared, *([from_steps] if from_steps else [])]))
        model = next(
            (m for m in candidates if all(issubclass(m, other) for other in candidates)), None
        )
        if candidates and model is None:
            listed = ", ".join(_name(m) for m in candidates)
            root.report.at(
                START,
                f"the files and steps declare context models that no one class is ({listed}); "
                "give this file a context: key",
            )
            return None
    for scope in others:
        wanted = scope.context_model
        if model is None or wanted is None or issubclass(model, wanted):
            continue
        scope.report.at(
            _at(scope, "context"),
            f"{root.shown} runs with context model {_name(model)}, which is not this file's "
            f"{_name(wanted)}",
        )
    if model is not None and not workspace.findings():
        try:  # what no file-level check saw: steps of files that declare no model
            check_context_model(pipeline, model)
        except ConfigurationError as exc:
            root.report.at(_at(root, "steps"), str(exc))
    return model


def _at(scope: FileScope, key: str) -> Any:
    return START if scope.data is None else scope.data.key_at(key)


def _name(model: type[Any]) -> str:
    return f"{model.__module__}.{model.__qualname__}"
