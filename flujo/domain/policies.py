"""How a step is run: retries, timeouts, caching, validation, processing and usage limits."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypedDict, TypeVar

from flujo.domain.errors import ConfigurationError

__all__ = [
    "DEFAULT_VERSION",
    "CacheKeyFn",
    "CacheMode",
    "Processor",
    "StepConfig",
    "StepOptions",
    "StepOutput",
    "UsageLimits",
    "ValidationResult",
    "Validator",
]

T = TypeVar("T")

CacheMode = bool | Literal["strict"]
"""``False``: no cache. ``True``: cache, and run uncached (with a warning) when no key can be
made. ``"strict"``: cache, and fail the step when no key can be made."""

DEFAULT_VERSION = "1"
"""``StepConfig.version`` unless given; any other version stands in for the code digest."""

CacheKeyFn = Callable[[Any, Any], Any]
"""``(input, context) -> JSON-serializable value`` that identifies a step's result."""

Validator = Callable[..., Any]
"""``(output) -> bool | ValidationResult`` (sync or async); it may also declare a keyword-only
``context``. A failing check counts as a failed attempt."""

Processor = Callable[..., Any]
"""``(value) -> value`` (sync or async), applied to a step's input or output; it may also
declare a keyword-only ``context``."""


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """What a validator found: ``passed``, and why not."""

    passed: bool
    feedback: str | None = None


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """Upper bounds on what one run (or one step) may spend; ``None`` means unbounded."""

    total_cost_usd_limit: float | None = None
    total_tokens_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("total_cost_usd_limit", "total_tokens_limit"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a number > 0 or None, got {value!r}")

    def exceeded_by(self, cost_usd: float, tokens: int) -> str | None:
        """Say which limit ``cost_usd`` / ``tokens`` pass, or ``None`` if neither."""
        if self.total_cost_usd_limit is not None and cost_usd > self.total_cost_usd_limit:
            return f"cost ${cost_usd:.6f} exceeds the limit of ${self.total_cost_usd_limit:.6f}"
        if self.total_tokens_limit is not None and tokens > self.total_tokens_limit:
            return f"{tokens} tokens exceed the limit of {self.total_tokens_limit}"
        return None


@dataclass(frozen=True, slots=True)
class StepOutput(Generic[T]):
    """A step's return value with the cost and tokens it used."""

    value: T
    cost_usd: float = 0.0
    tokens: int = 0


def _check_callables(name: str, items: Sequence[Any]) -> None:
    for item in items:
        if not callable(item):
            raise ConfigurationError(f"{name} must be callables, got {item!r}")


@dataclass(frozen=True, slots=True)
class StepConfig:
    """How a step is run. Every field has a default; bad values fail at construction."""

    max_retries: int = 0
    """Extra attempts after a failed one (0 = run once)."""
    timeout_s: float | None = None
    """Seconds one attempt may take; ``None`` = no limit."""
    run_in_thread: bool = False
    """Run a sync callable in a worker thread instead of inline on the event loop."""
    backoff_s: float = 0.0
    """Delay before the first retry; each later retry waits ``backoff_factor`` times longer."""
    backoff_factor: float = 2.0
    max_backoff_s: float = 60.0
    jitter: bool = True
    """Wait a random fraction of each delay ("full jitter"), so retries do not stampede."""
    cache: CacheMode = False
    cache_ttl_s: float | None = None
    """How long a cached result lives; ``None`` = until evicted."""
    version: str = DEFAULT_VERSION
    """Part of the cache key; the default is the code's digest, any other value replaces it."""
    cache_key_fields: Sequence[str] = ()
    """Context fields the step reads, made part of the cache key (stored as a tuple)."""
    cache_key_fn: CacheKeyFn | None = None
    """Makes the cache key from ``(input, context)`` instead of input and key fields."""
    validators: Sequence[Validator] = ()
    input_processors: Sequence[Processor] = ()
    output_processors: Sequence[Processor] = ()
    usage_limits: UsageLimits | None = None
    """Limits on this step's own cost and tokens."""
    plain: bool = field(init=False, repr=False, compare=False)
    """True when no processor, validator, cache, timeout, thread or limit applies (fast path)."""

    def __post_init__(self) -> None:
        self._check_types()
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigurationError(f"max_retries must be an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigurationError(f"timeout_s must be > 0 or None, got {self.timeout_s!r}")
        if self.cache_ttl_s is not None and not self.cache_ttl_s > 0:
            raise ConfigurationError(f"cache_ttl_s must be > 0 or None, got {self.cache_ttl_s!r}")
        if self.cache not in (True, False, "strict"):
            raise ConfigurationError(f"cache must be True, False or 'strict', got {self.cache!r}")
        for name in ("backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.backoff_factor >= 1:
            raise ConfigurationError(f"backoff_factor must be >= 1, got {self.backoff_factor!r}")
        if self.cache_key_fn is not None and not callable(self.cache_key_fn):
            raise ConfigurationError(f"cache_key_fn must be callable, got {self.cache_key_fn!r}")
        _check_callables("validators", self.validators)
        _check_callables("input_processors", self.input_processors)
        _check_callables("output_processors", self.output_processors)
        if self.usage_limits is not None and not isinstance(self.usage_limits, UsageLimits):
            raise ConfigurationError(f"usage_limits must be UsageLimits, got {self.usage_limits!r}")
        # Lists are accepted for convenience and stored as tuples (the config is frozen).
        for name in ("validators", "input_processors", "output_processors", "cache_key_fields"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        plain = not (
            self.validators
            or self.input_processors
            or self.output_processors
            or self.cache
            or self.timeout_s is not None
            or self.run_in_thread
            or self.usage_limits is not None
        )
        object.__setattr__(self, "plain", plain)

    def _check_types(self) -> None:
        numbers = ("timeout_s", "backoff_s", "backoff_factor", "max_backoff_s", "cache_ttl_s")
        for name in numbers:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ConfigurationError(f"{name} must be a number, got {value!r}")
        sequences = ("validators", "input_processors", "output_processors", "cache_key_fields")
        for name in sequences:
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
                raise ConfigurationError(f"{name} must be a list or tuple, got {value!r}")
        if not isinstance(self.version, str):
            raise ConfigurationError(f"version must be a string, got {self.version!r}")

    def retry_delay(self, retry: int, random: Callable[[], float]) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        if self.backoff_s <= 0:
            return 0.0
        delay = min(self.backoff_s * self.backoff_factor ** (retry - 1), self.max_backoff_s)
        return delay * random() if self.jitter else delay


class StepOptions(TypedDict, total=False):
    """Keyword options of ``Step``, ``Step.from_callable`` and ``@step``: ``StepConfig`` fields."""

    max_retries: int
    timeout_s: float | None
    run_in_thread: bool
    backoff_s: float
    backoff_factor: float
    max_backoff_s: float
    jitter: bool
    cache: CacheMode
    cache_ttl_s: float | None
    version: str
    cache_key_fields: Sequence[str]
    cache_key_fn: CacheKeyFn | None
    validators: Sequence[Validator]
    input_processors: Sequence[Processor]
    output_processors: Sequence[Processor]
    usage_limits: UsageLimits | None
