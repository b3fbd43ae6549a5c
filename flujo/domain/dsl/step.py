"""``Step``: one named unit of work wrapping a callable or an agent; and ``HumanStep``.

``Step`` is the base of every kind of step. Its control-flow constructors
(``branch_on``, ``loop_until``, ``parallel``, ``map_over``; ``state_machine`` and
``router``) build subclasses defined in ``control_flow.py`` (``state_machine.py``,
``router.py``), which import this module; so they are defined there, beside the
nodes they build, and the ``flujo.domain.dsl`` package puts them on ``Step`` when it is
imported (this module only declares them for the type checker). ``>>`` builds a
``Pipeline``, imported from ``pipeline.py``, which does not import this module back.
``human_in_the_loop`` builds a ``HumanStep``, defined here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    TypeVar,
    Unpack,
    overload,
)

from pydantic import BaseModel, ValidationError

from flujo.domain.dsl.identity import code_digest, qualified_name
from flujo.domain.dsl.invoker import (
    AgentLike,
    StepInvoker,
    accepted_keywords,
    invoker_of,
    is_async_callable,
    make_invoker,
)
from flujo.domain.dsl.node import Node
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.errors import ConfigurationError, HumanInputError
from flujo.domain.policies import DEFAULT_VERSION, StepConfig, StepOptions, StepOutput
from flujo.domain.validation import summarize

if TYPE_CHECKING:
    from flujo.domain.dsl import control_flow
    from flujo.domain.dsl import router as router_module
    from flujo.domain.dsl import state_machine as state_machine_module

# AgentLike and StepInvoker are defined in invoker.py and named here too: they are the
# types of ``Step(agent=...)`` and ``Step.invoke``, documented at this path.
__all__ = ["AgentLike", "HumanStep", "Step", "StepInvoker", "step"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
NextT = TypeVar("NextT")
A = TypeVar("A")
B = TypeVar("B")
P = ParamSpec("P")
ModelT = TypeVar("ModelT", bound=BaseModel)


class Step(Node, Generic[InT, OutT]):
    """One named unit of work: a sync or async callable, or an agent with ``async run``.

    Build one with :meth:`from_callable`, the :func:`step` decorator, or
    ``Step(name, agent=obj)``; compose with ``>>``. ``branch_on``, ``loop_until``,
    ``parallel``, ``map_over``, ``state_machine``, ``router`` and ``human_in_the_loop``
    build the other kinds of step.
    """

    __slots__ = (
        "_identity",
        "_wrapped",
        "agent",
        "config",
        "fallback_step",
        "invoke",
        "is_async",
        "takes_context",
    )

    composite: ClassVar[bool] = False
    """Whether this is a control-flow step whose nested steps the executor runs."""

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
        super().__init__(name)
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
        with_context, with_resources, var_kw = accepted_keywords(run)
        self.invoke = make_invoker(run, with_context or var_kw, with_resources or var_kw)
        self.is_async = is_async_callable(run)
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
        with_context, with_resources, _ = accepted_keywords(fn)
        made.invoke = make_invoker(fn, with_context, with_resources)
        made.is_async = is_async_callable(fn)
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

    def __getstate__(self) -> dict[str, Any]:
        """Pickle what the step is; its invoker (a closure) is made again where it lands."""
        return {
            slot: getattr(self, slot)
            for slot in _all_slots(type(self))
            if slot != "invoke" and hasattr(self, slot)
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled step and make its invoker for the callable or agent it holds."""
        for slot, value in state.items():
            object.__setattr__(self, slot, value)
        invoke = invoker_of(self._wrapped, self.agent) or _missing_invoker(self.name)
        object.__setattr__(self, "invoke", invoke)

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

    if TYPE_CHECKING:
        # Defined in control_flow.py beside the steps they build (it imports this module),
        # and bound onto Step by flujo/domain/dsl/__init__.py, once, when it is imported.
        branch_on = staticmethod(control_flow._branch_on)
        loop_until = staticmethod(control_flow._loop_until)
        parallel = staticmethod(control_flow._parallel)
        map_over = staticmethod(control_flow._map_over)
        state_machine = staticmethod(state_machine_module._state_machine)
        router = staticmethod(router_module._router)

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
