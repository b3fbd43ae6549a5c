"""``Step``: one named unit of work wrapping a callable or an agent."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    Unpack,
    overload,
)

from pydantic import BaseModel, ValidationError

from flujo.domain.dsl.identity import code_digest, qualified_name
from flujo.domain.errors import ConfigurationError, HumanInputError
from flujo.domain.policies import DEFAULT_VERSION, StepConfig, StepOptions, StepOutput
from flujo.domain.validation import summarize

if TYPE_CHECKING:
    from flujo.domain.dsl.pipeline import Pipeline

__all__ = ["AgentLike", "HumanStep", "Step", "StepInvoker", "step"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
NextT = TypeVar("NextT")
A = TypeVar("A")
B = TypeVar("B")
P = ParamSpec("P")
ModelT = TypeVar("ModelT", bound=BaseModel)

StepInvoker = Callable[[Any, Any, Any], Any]
"""``(data, context, resources) -> value or awaitable``: how the executor calls a step."""


class AgentLike(Protocol):
    """Any object with ``async run(data, ...)``.

    Its ``run`` gets ``context`` and ``resources`` keywords when it declares them
    (or ``**kwargs``).
    """

    @property
    def run(self) -> Callable[..., Awaitable[Any]]:
        """The coroutine function producing the step's output from its input."""
        ...


def _accepted_keywords(fn: Callable[..., Any], *, skip_first: bool) -> tuple[bool, bool, bool]:
    """Return (takes ``context``, takes ``resources``, takes ``**kwargs``) for ``fn``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature take only the input
        return False, False, False
    if skip_first:
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
            raise ConfigurationError(
                f"{getattr(fn, '__qualname__', fn)!r} takes no positional parameter; a step "
                "callable receives the step input as its first argument"
            )
        if positional:
            params.remove(positional[0])
    names = {p.name: p.kind for p in params}
    keyword_kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    return names.get("context") in keyword_kinds, names.get("resources") in keyword_kinds, var_kw


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def _make_invoker(fn: Callable[..., Any], with_context: bool, with_resources: bool) -> StepInvoker:
    # Each shape gets its own closure so the hot path does no branching per call.
    if with_context and with_resources:
        return lambda data, context, resources: fn(data, context=context, resources=resources)
    if with_context:
        return lambda data, context, resources: fn(data, context=context)
    if with_resources:
        return lambda data, context, resources: fn(data, resources=resources)
    return lambda data, context, resources: fn(data)


class Step(Generic[InT, OutT]):
    """One named unit of work: a sync or async callable, or an agent with ``async run``.

    Build one with :meth:`from_callable`, the :func:`step` decorator, or
    ``Step(name, agent=obj)``; compose with ``>>``.
    """

    __slots__ = (
        "_identity",
        "_wrapped",
        "agent",
        "config",
        "fallback_step",
        "invoke",
        "is_async",
        "name",
        "takes_context",
    )

    composite: ClassVar[bool] = False
    """Whether this is a control-flow step whose nested steps the executor runs."""

    name: str
    config: StepConfig
    invoke: StepInvoker
    is_async: bool
    takes_context: bool
    """Whether the callable receives the run's context (it declares ``context``)."""
    agent: AgentLike | None
    fallback_step: Step[Any, Any] | None
    """Runs on the same input when every attempt of this step failed."""
    _wrapped: Callable[..., Any] | None
    """The callable ``from_callable`` wrapped (``None`` for an agent step)."""
    _identity: str | None
    """``identity``, made on first use (a copy with another config makes its own)."""

    def __init__(
        self,
        name: str,
        agent: AgentLike | None = None,
        *,
        config: StepConfig | None = None,
        **options: Unpack[StepOptions],
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a step needs a non-empty name, got {name!r}")
        self.name = name
        self.config = _config(config, options)
        self.agent = agent
        self.fallback_step = None
        self.takes_context = False
        self._wrapped = None
        self._identity = None
        if agent is None:
            # from_callable fills invoke/is_async right after construction.
            self.invoke = _missing_invoker(name)
            self.is_async = False
            return
        run = getattr(agent, "run", None)
        if not callable(run):
            raise ConfigurationError(
                f"step {name!r}: agent {type(agent).__name__} has no callable `run(data, **kwargs)`"
            )
        with_context, with_resources, var_kw = _accepted_keywords(run, skip_first=True)
        self.invoke = _make_invoker(run, with_context or var_kw, with_resources or var_kw)
        self.is_async = _is_async_callable(run)
        self.takes_context = with_context or var_kw

    @overload
    @classmethod
    def from_callable(
        cls,
        fn: Callable[Concatenate[A, P], Awaitable[StepOutput[B]]],
        *,
        name: str | None = None,
        config: StepConfig | None = None,
        **options: Unpack[StepOptions],
    ) -> Step[A, B]: ...

    @overload
    @classmethod
    def from_callable(
        cls,
        fn: Callable[Concatenate[A, P], StepOutput[B]],
        *,
        name: str | None = None,
        config: StepConfig | None = None,
        **options: Unpack[StepOptions],
    ) -> Step[A, B]: ...

    @overload
    @classmethod
    def from_callable(
        cls,
        fn: Callable[Concatenate[A, P], Awaitable[B]],
        *,
        name: str | None = None,
        config: StepConfig | None = None,
        **options: Unpack[StepOptions],
    ) -> Step[A, B]: ...

    @overload
    @classmethod
    def from_callable(
        cls,
        fn: Callable[Concatenate[A, P], B],
        *,
        name: str | None = None,
        config: StepConfig | None = None,
        **options: Unpack[StepOptions],
    ) -> Step[A, B]: ...

    @classmethod
    def from_callable(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        config: StepConfig | None = None,
        **options: Unpack[StepOptions],
    ) -> Step[Any, Any]:
        """Wrap a sync or async callable whose first parameter is the step input.

        The callable also receives the run's context if it declares a
        keyword-only ``context`` parameter, and the runner's resources if it
        declares ``resources``. A sync callable runs inline on the event loop
        unless ``run_in_thread=True`` (or it has a timeout, which needs a thread).
        """
        if not callable(fn):
            raise ConfigurationError(
                f"Step.from_callable needs a callable, got {type(fn).__name__}: {fn!r}"
            )
        step_name = name if name is not None else getattr(fn, "__name__", type(fn).__name__)
        made: Step[Any, Any] = cls(step_name, config=config, **options)
        with_context, with_resources, _ = _accepted_keywords(fn, skip_first=True)
        made.invoke = _make_invoker(fn, with_context, with_resources)
        made.is_async = _is_async_callable(fn)
        made.takes_context = with_context
        made._wrapped = fn
        return made

    @property
    def identity(self) -> str:
        """What this step runs, stable across processes: ``module.qualname`` and a code digest.

        The name is the callable's (an agent's type's); an explicit ``version`` other
        than ``"1"`` stands in for the digest. Made once per step, on first use.
        """
        identity = self._identity
        if identity is None:
            target = self._wrapped if self._wrapped is not None else self.agent
            name = qualified_name(target if target is not None else type(self))
            version = self.config.version
            if version != DEFAULT_VERSION:
                identity = f"{name}@v{version}"
            else:
                identity = f"{name}#{code_digest(*self._code())}"
            self._identity = identity
        return identity

    def _code(self) -> tuple[object, ...]:
        """Return what the code digest covers; a control-flow step adds its nested steps."""
        if self._wrapped is not None:
            return (self._wrapped,)
        if self.agent is not None:
            return (self.agent.run,)
        return (type(self),)

    def fallback(self, other: Step[InT, OutT]) -> Step[InT, OutT]:
        """Run ``other`` on the same input when every attempt of this step fails; return self."""
        if not isinstance(other, Step):
            raise ConfigurationError(f"a fallback must be a Step, got {type(other).__name__}")
        seen: Step[Any, Any] | None = other
        while seen is not None:
            if seen is self:
                raise ConfigurationError(f"step {self.name!r}: fallbacks must not form a cycle")
            seen = seen.fallback_step
        self.fallback_step = other
        return self

    def with_config(self, **options: Unpack[StepOptions]) -> Step[InT, OutT]:
        """Return a copy of this step with some ``StepConfig`` fields changed."""
        copy: Step[InT, OutT] = object.__new__(type(self))
        for slot in _all_slots(type(self)):
            object.__setattr__(copy, slot, getattr(self, slot))
        # StepConfig turns the sequences into tuples in __post_init__.
        copy.config = dataclasses.replace(self.config, **options)
        copy._identity = None  # a new version may stand in for the code digest
        return copy

    @staticmethod
    def cached(step: Step[A, B], *, ttl_s: float | None = None, strict: bool = False) -> Step[A, B]:
        """Return a copy of ``step`` whose results are cached (for ``ttl_s`` seconds)."""
        return step.with_config(cache="strict" if strict else True, cache_ttl_s=ttl_s)

    @staticmethod
    def branch_on(
        condition: Callable[..., Any],
        branches: Mapping[str, Step[Any, Any] | Pipeline[Any, Any]],
        default: Step[Any, Any] | Pipeline[Any, Any] | None = None,
        *,
        name: str = "branch",
        **options: Unpack[StepOptions],
    ) -> Step[Any, Any]:
        """Run the branch whose key ``condition(input, context)`` returns (else ``default``)."""
        from flujo.domain.dsl.control_flow import BranchStep

        return BranchStep(name, condition, branches, default, **options)

    @staticmethod
    def loop_until(
        body: Step[Any, Any] | Pipeline[Any, Any],
        exit_condition: Callable[..., Any],
        *,
        max_loops: int,
        on_max_loops: Literal["fail", "return"] = "fail",
        name: str = "loop",
        **options: Unpack[StepOptions],
    ) -> Step[Any, Any]:
        """Run ``body`` on its own output until ``exit_condition(output, context)`` is true."""
        from flujo.domain.dsl.control_flow import LoopStep

        return LoopStep(name, body, exit_condition, max_loops, on_max_loops, **options)

    @staticmethod
    def parallel(
        branches: Mapping[str, Step[Any, Any] | Pipeline[Any, Any]],
        *,
        merge: Callable[[dict[str, Any]], Any] | None = None,
        on_branch_failure: Literal["fail", "collect"] = "fail",
        reference_writers: Mapping[str, str] | None = None,
        name: str = "parallel",
        **options: Unpack[StepOptions],
    ) -> Step[Any, Any]:
        """Run branches concurrently on copies of the context and merge what they changed.

        The output is ``{branch: output}``, or ``merge`` of it. References stay shared and
        read-only in branches, except those ``reference_writers`` (field path -> branch)
        give to one branch.
        """
        from flujo.domain.dsl.control_flow import ParallelStep

        return ParallelStep(name, branches, merge, on_branch_failure, reference_writers, **options)

    @staticmethod
    def map_over(
        body: Step[Any, Any] | Pipeline[Any, Any],
        *,
        items_from: str | Callable[..., Any] | None = None,
        concurrency: int = 1,
        name: str = "map",
        **options: Unpack[StepOptions],
    ) -> Step[Any, list[Any]]:
        """Run ``body`` for each item, ``concurrency`` at a time; outputs keep the items' order.

        The items are the input, the context field named by ``items_from``, or what
        ``items_from(input, context)`` returns.
        """
        from flujo.domain.dsl.control_flow import MapStep

        return MapStep(name, body, items_from, concurrency, **options)

    @staticmethod
    def human_in_the_loop(
        message: str,
        input_model: type[ModelT] | None = None,
        *,
        name: str = "human_input",
    ) -> HumanStep[ModelT]:
        """Return a step that pauses the run until ``resume_async(..., human_input=...)``.

        The human input (validated by ``input_model`` when given) becomes the
        step's output, and so the next step's input.
        """
        return HumanStep(name, message, input_model)

    def __rshift__(self, other: Step[OutT, NextT] | Pipeline[OutT, NextT]) -> Pipeline[InT, NextT]:
        from flujo.domain.dsl.pipeline import Pipeline

        return Pipeline.of(self) >> other

    def __repr__(self) -> str:
        return f"Step({self.name!r})"


class HumanStep(Step[Any, ModelT]):
    """A pause for human input; the runner stops here and ``resume_async`` continues."""

    __slots__ = ("input_model", "message")

    message: str
    input_model: type[ModelT] | None

    def __init__(self, name: str, message: str, input_model: type[ModelT] | None) -> None:
        super().__init__(name)
        if not isinstance(message, str) or not message.strip():
            raise ConfigurationError(f"human_in_the_loop needs a message, got {message!r}")
        if input_model is not None and not (
            isinstance(input_model, type) and issubclass(input_model, BaseModel)
        ):
            raise ConfigurationError(
                f"input_model must be a pydantic BaseModel subclass, got {input_model!r}"
            )
        self.message = message
        self.input_model = input_model
        self.invoke = _human_invoker(name)

    def validate_input(self, value: Any) -> Any:
        """Return ``value`` checked against ``input_model`` (``HumanInputError`` if it fails)."""
        if self.input_model is None:
            return value
        try:
            return self.input_model.model_validate(value)
        except ValidationError as exc:
            raise HumanInputError(
                f"human input for step {self.name!r} does not fit "
                f"{self.input_model.__name__}: {summarize(exc)}"
            ) from exc


def _human_invoker(name: str) -> StepInvoker:
    def invoke(data: Any, context: Any, resources: Any) -> Any:
        raise ConfigurationError(
            f"step {name!r} waits for a human: run it through a Flujo runner, which pauses there"
        )

    return invoke


def _missing_invoker(name: str) -> StepInvoker:
    def invoke(data: Any, context: Any, resources: Any) -> Any:
        raise ConfigurationError(f"step {name!r} has neither an agent nor a callable")

    return invoke


def _config(config: StepConfig | None, options: StepOptions) -> StepConfig:
    if config is not None:
        if options:
            raise ConfigurationError("pass either config=StepConfig(...) or its fields, not both")
        return config
    try:
        return StepConfig(**options)
    except TypeError as exc:
        raise ConfigurationError(f"unknown step option: {exc}") from exc


def _all_slots(cls: type) -> list[str]:
    return [slot for klass in cls.__mro__ for slot in getattr(klass, "__slots__", ())]


@overload
def step(fn: Callable[Concatenate[A, P], Awaitable[StepOutput[B]]], /) -> Step[A, B]: ...
@overload
def step(fn: Callable[Concatenate[A, P], StepOutput[B]], /) -> Step[A, B]: ...
@overload
def step(fn: Callable[Concatenate[A, P], Awaitable[B]], /) -> Step[A, B]: ...
@overload
def step(fn: Callable[Concatenate[A, P], B], /) -> Step[A, B]: ...
@overload
def step(
    *,
    name: str | None = None,
    config: StepConfig | None = None,
    **options: Unpack[StepOptions],
) -> Callable[[Callable[..., Any]], Step[Any, Any]]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    config: StepConfig | None = None,
    **options: Unpack[StepOptions],
) -> Step[Any, Any] | Callable[[Callable[..., Any]], Step[Any, Any]]:
    """Turn a function into a ``Step``: ``@step`` or ``@step(name=..., max_retries=...)``."""

    def wrap(func: Callable[..., Any]) -> Step[Any, Any]:
        return Step.from_callable(func, name=name, config=config, **options)

    return wrap if fn is None else wrap(fn)
