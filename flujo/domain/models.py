"""The data a pipeline runs over and returns: context, references, results, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import SkipJsonSchema

from flujo.domain.damaged_run import DamagedRun
from flujo.domain.errors import ReferenceNotHydratedError
from flujo.domain.state_access import ACCESS

__all__ = [
    "RUN_STATUSES",
    "ContextReference",
    "DamagedRun",
    "PipelineContext",
    "PipelineResult",
    "RunInfo",
    "RunStatus",
    "StepResult",
]

T = TypeVar("T")
ContextT = TypeVar("ContextT", bound="PipelineContext")

RunStatus = Literal["running", "paused", "completed", "failed", "cancelled"]
"""Where a run stands: going, waiting for a human, done, stopped by a failure, or cancelled."""

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
"""Every ``RunStatus``, in order: what a stored status and a status argument may be."""


class _Unset:
    """Marker type for a reference whose value was never loaded."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not hydrated>"

    # pydantic copies private defaults per instance: copies must stay the one marker.
    def __copy__(self) -> _Unset:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Unset:
        return self


_UNSET: Any = _Unset()

# BaseModel's slots, written through their descriptors: faster than object.__setattr__
# by name, and a context copy makes one reference copy per reference field.
_SET_DICT = BaseModel.__dict__["__dict__"].__set__
_SET_FIELDS = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


class ContextReference(BaseModel, Generic[T]):
    """A pointer to a value held by a ``StateProvider``; it serializes as the pointer only.

    flujo loads (hydrates) the value before the first step of a run; ``get()``
    reads it and ``set(v)`` replaces it. Inside a step attempt both go through
    the attempt's scope: a ``set()`` is saved when the attempt commits and
    dropped when it fails. ``watch=False`` turns off the content hash that
    catches changes made in place without ``set()`` (for large, hot values).
    Copies made with ``copy.deepcopy`` carry the pointer, never the value.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    provider_id: str = Field(min_length=1, description="Id of the provider in the registry.")
    key: str = Field(min_length=1, description="Key of the value inside that provider.")
    watch: SkipJsonSchema[bool] = Field(
        default=True,
        description="Detect changes made in place without set() (one content hash per run).",
    )

    _value: Any = PrivateAttr(default=_UNSET)
    _dirty: bool = PrivateAttr(default=False)
    _entry: Any = PrivateAttr(default=None)

    # Private state is read and written through __pydantic_private__ directly: pydantic's
    # attribute path costs microseconds per access, and every get() goes through here.
    # (It is never None: the class declares private attributes.)

    def get(self) -> T | None:
        """Return the value (``None`` when the provider holds none yet)."""
        access = ACCESS.get()
        if access is not None:
            entry = self.__pydantic_private__["_entry"]  # type: ignore[index]
            if entry is not None and entry.reader is access:
                return entry.value  # type: ignore[no-any-return]  # the scope said: as it is
            return access.read(self)  # type: ignore[no-any-return]
        return self._held()

    def _held(self) -> T | None:
        # The value outside any step attempt: the object's own, last given by flujo or set().
        private: Any = self.__pydantic_private__
        value = private["_value"]
        entry = private["_entry"]
        if entry is not None and not entry.read:
            entry.session.first_read(entry)  # read by hand: its in-place changes count too
        if value is _UNSET:
            raise ReferenceNotHydratedError(
                f"ContextReference(provider_id={self.provider_id!r}, key={self.key!r}) "
                "was read before it was hydrated; run it through a Flujo runner or "
                "ExecutorCore with that provider registered"
            )
        return value  # type: ignore[no-any-return]

    def set(self, value: T | None) -> None:
        """Replace the value; it is saved when the current step attempt commits."""
        access = ACCESS.get()
        if access is not None:
            access.write(self, value)
            return
        self._hold(value)

    def _hold(self, value: T | None) -> None:
        private: Any = self.__pydantic_private__
        private["_value"] = value
        private["_dirty"] = True
        entry = private["_entry"]
        if entry is not None:
            entry.session.note_held()  # the end of the run saves it

    @property
    def is_hydrated(self) -> bool:
        """Whether this object holds a value (loaded, committed or set outside a run)."""
        return self.__pydantic_private__["_value"] is not _UNSET  # type: ignore[index]

    @property
    def is_dirty(self) -> bool:
        """Whether it was ``set()`` outside a run since flujo last gave it a value."""
        return self.__pydantic_private__["_dirty"]  # type: ignore[index,no-any-return]

    def model_post_init(self, context: Any, /) -> None:
        """Tell the running attempt, if any, that a reference was made (it is loaded next)."""
        access = ACCESS.get()
        if access is not None:
            access.note_new()

    @model_serializer(mode="wrap")
    def _pointer(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        if isinstance(dumped, dict) and dumped.get("watch", True):
            dumped.pop("watch", None)  # the default stays out: the pointer is two keys
        return dumped

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ContextReference[T]:
        # Copying the pointer only keeps hydrated data out of class defaults and
        # context copies: its cost never grows with the referenced data.
        # Built as model_construct would, at a fraction of its cost (a copy per context made).
        made = object.__new__(type(self))
        fields = self.__dict__
        _SET_DICT(
            made,
            {"provider_id": fields["provider_id"], "key": fields["key"], "watch": fields["watch"]},
        )
        _SET_FIELDS(made, set(self.__pydantic_fields_set__))
        _SET_EXTRA(made, None)
        _SET_PRIVATE(made, {"_value": _UNSET, "_dirty": False, "_entry": None})
        access = ACCESS.get()  # what model_post_init does, without pydantic's private reset
        if access is not None:
            access.note_new()
        return made

    def __copy__(self) -> ContextReference[T]:
        return self.__deepcopy__()

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as the pointer only, like its JSON: a copy on a worker is unhydrated
        # (pydantic's own pickling kept the value, and marked an unhydrated one hydrated).
        meta = type(self).__pydantic_generic_metadata__
        kind = (meta["origin"] or type(self), meta["args"])  # ContextReference[X] as (origin, X)
        return (_unpickle_reference, (kind, self.provider_id, self.key, self.watch))

    def __repr__(self) -> str:
        state = "hydrated" if self.is_hydrated else "not hydrated"
        return f"ContextReference(provider_id={self.provider_id!r}, key={self.key!r}, {state})"


_POINTER_FIELDS = frozenset(("provider_id", "key", "watch"))
"""Every field of ``ContextReference``."""


def _fresh_pointer(default: ContextReference[Any]) -> Callable[[], ContextReference[Any]]:
    """Return a factory of unhydrated copies of ``default`` (what its ``__copy__`` makes).

    Its pointer is read once, here: the factory runs for every context built.
    """
    kind = type(default)
    fields = default.__dict__
    provider_id, key, watch = fields["provider_id"], fields["key"], fields["watch"]
    fields_set = default.__pydantic_fields_set__
    # A set naming every field is shared: pydantic only ever adds field names to it (an
    # assignment), which changes nothing there; any other set is copied per pointer.
    shared = fields_set if fields_set >= _POINTER_FIELDS else None
    new = object.__new__

    def fresh() -> ContextReference[Any]:
        made: ContextReference[Any] = new(kind)
        _SET_DICT(made, {"provider_id": provider_id, "key": key, "watch": watch})
        _SET_FIELDS(made, set(fields_set) if shared is None else shared)
        _SET_EXTRA(made, None)
        _SET_PRIVATE(made, {"_value": _UNSET, "_dirty": False, "_entry": None})
        access = ACCESS.get()
        if access is not None:
            access.note_new()
        return made

    return fresh


def _unpickle_reference(
    kind: tuple[Any, tuple[Any, ...]], provider_id: str, key: str, watch: bool
) -> ContextReference[Any]:
    """Rebuild a pickled reference: the pointer, unhydrated."""
    origin, args = kind
    cls = origin[args if len(args) != 1 else args[0]] if args else origin
    made: ContextReference[Any] = cls.model_construct(provider_id=provider_id, key=key, watch=watch)
    _SET_PRIVATE(made, {"_value": _UNSET, "_dirty": False, "_entry": None})
    return made


class PipelineContext(BaseModel):
    """Base of every run context: subclass it with the fields your steps share.

    Each run validates a fresh instance from ``initial_context_data``; steps that
    declare a keyword-only ``context`` parameter receive it and may change it.
    """

    # Schemas are built on first use, not at import: `import flujo` stays fast.
    # An unknown key in initial_context_data is a typo, not data to drop silently.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    run_id: str | None = Field(default=None, description="Id of the run using this context.")
    scratchpad: dict[str, Any] = Field(
        default_factory=dict, description="Free-form notes steps may share."
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Give each reference default a factory: a fresh pointer per context, made cheaply."""
        super().__pydantic_init_subclass__(**kwargs)
        # pydantic deep-copies a model default through copy.deepcopy for every context it
        # builds; a factory making the same unhydrated copy costs half as much. The schema
        # is built later (defer_build), from these fields; `.default` stays the pointer.
        for info in cls.__pydantic_fields__.values():
            default = info.default
            if isinstance(default, ContextReference) and info.default_factory is None:
                info.default_factory = _fresh_pointer(default)
                if info.json_schema_extra is None:  # a factory's result is not in the schema
                    pointer: dict[str, Any] = {
                        "provider_id": default.provider_id,
                        "key": default.key,
                    }
                    if not default.watch:
                        pointer["watch"] = False
                    info.json_schema_extra = {"default": pointer}


class StepResult(BaseModel):
    """What one step did: its output, whether it succeeded, and what it cost."""

    model_config = ConfigDict(defer_build=True)

    name: str
    output: Any = None
    success: bool = True
    attempts: int = 1
    latency_s: float = 0.0
    feedback: str | None = None
    cost_usd: float = 0.0
    token_counts: int = 0
    cache_hit: bool = False
    """Whether the output came from the step-result cache."""
    fallback: str | None = None
    """The fallback step that produced the output after the step itself failed."""
    step_history: list[StepResult] = Field(default_factory=list)
    """Results of the steps a control-flow step ran inside itself."""

    @classmethod
    def trusted(
        cls,
        name: str,
        output: Any,
        success: bool,
        attempts: int,
        latency_s: float,
        feedback: str | None,
        cost_usd: float,
        token_counts: int,
        cache_hit: bool = False,
        fallback: str | None = None,
        step_history: list[StepResult] | None = None,
    ) -> StepResult:
        """Build a result from values the executor already knows are valid (no validation)."""
        # Same end state as model_construct at a fraction of its cost: this runs once per step.
        result = object.__new__(cls)
        _set = object.__setattr__
        _set(
            result,
            "__dict__",
            {
                "name": name,
                "output": output,
                "success": success,
                "attempts": attempts,
                "latency_s": latency_s,
                "feedback": feedback,
                "cost_usd": cost_usd,
                "token_counts": token_counts,
                "cache_hit": cache_hit,
                "fallback": fallback,
                "step_history": [] if step_history is None else step_history,
            },
        )
        # Every field is set, so one shared set serves all results: pydantic only ever adds
        # names to it, and they are all there already.
        _set(result, "__pydantic_fields_set__", _STEP_RESULT_FIELDS)
        _set(result, "__pydantic_extra__", None)
        _set(result, "__pydantic_private__", None)
        return result


_STEP_RESULT_FIELDS = set(StepResult.model_fields)


class PipelineResult(BaseModel, Generic[ContextT]):
    """The outcome of one run."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    run_id: str
    status: RunStatus
    success: bool
    output: Any = None
    step_history: list[StepResult] = Field(default_factory=list)
    final_pipeline_context: ContextT | None = None
    total_cost_usd: float = 0.0
    total_tokens: int = 0
    error: str | None = None
    """Why the run failed outside any step (a usage limit, a failed final save)."""
    pause_message: str | None = None
    """What a paused run waits for (``status == "paused"``)."""

    @classmethod
    def trusted(cls, **values: Any) -> PipelineResult[Any]:
        """Build a result from values the runner already knows are valid (no validation)."""
        result = object.__new__(cls)
        object.__setattr__(result, "__dict__", values)
        object.__setattr__(result, "__pydantic_fields_set__", set(values))
        object.__setattr__(result, "__pydantic_extra__", None)
        object.__setattr__(result, "__pydantic_private__", None)
        return result

    @property
    def feedback(self) -> str | None:
        """The feedback of the last failed step, if any."""
        for result in reversed(self.step_history):
            if not result.success:
                return result.feedback
        return None


class RunInfo(BaseModel):
    """A stored run as ``Flujo.list_runs`` and ``Flujo.get_run`` report it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    run_id: str
    pipeline_name: str
    pipeline_version: str
    status: RunStatus
    steps_completed: int
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    pause_message: str | None = None
    step_history: list[StepResult] = Field(default_factory=list)
    """The stored step results (filled by ``get_run``; empty in ``list_runs``)."""
    owner: str | None = None
    """The process driving the run now (its lease holder), if any."""
    lease_until: datetime | None = None
    """When the owner's lease expires unless it renews it (UTC)."""
