"""``Step.router``: branches chosen at run time, run concurrently as ``Step.parallel`` runs them.

What the construct *is* lives here; how it runs lives in the engine. The meaning the
engine gives it: ``choose(input, context)`` (sync or async) returns the names of the
branches to run — a list of names, or one name. Those branches start at once on the
step's input, each on its own copy of the context, and are merged in the order
``branches`` lists them, with the isolation, ``reference_writers`` and conflict rules
of ``Step.parallel``. The output is ``{branch: output}`` of the chosen branches (or
what ``merge`` makes of it); choosing no branch gives ``{}``. A name that is not a
key of ``branches`` fails the step, naming the known ones.

It is not a ``ParallelStep``: an engine that runs parallels would otherwise run every
branch of a router.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Unpack

from flujo.domain.dsl.control_flow import Body, CompositeStep, _branches, _check_callable
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError, ControlFlowError
from flujo.domain.policies import StepOptions

__all__ = ["RouterStep"]


class RouterStep(CompositeStep):
    """Runs the branches ``choose(input, context)`` names, concurrently, and merges them."""

    __slots__ = ("branches", "choose", "merge", "on_branch_failure", "reference_writers")

    branches: dict[str, Pipeline[Any, Any]]
    choose: Callable[..., Any]
    merge: Callable[[dict[str, Any]], Any] | None
    on_branch_failure: Literal["fail", "collect"]
    reference_writers: dict[str, str]
    """Reference field path -> the branch that may ``set()`` it (the others only read it)."""

    def __init__(
        self,
        name: str,
        choose: Callable[..., Any],
        branches: Mapping[str, Body],
        merge: Callable[[dict[str, Any]], Any] | None = None,
        on_branch_failure: Literal["fail", "collect"] = "fail",
        reference_writers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        _check_callable(choose, f"router {name!r}: choose")
        self.branches = _branches("router", name, branches)
        if merge is not None:
            _check_callable(merge, f"router {name!r}: merge")
        if on_branch_failure not in ("fail", "collect"):
            raise ConfigurationError(
                f"router {name!r}: on_branch_failure must be 'fail' or 'collect', "
                f"got {on_branch_failure!r}"
            )
        writers = dict(reference_writers or {})
        for field, branch in writers.items():
            if branch not in self.branches:
                raise ConfigurationError(
                    f"router {name!r}: reference {field!r} is given to branch {branch!r}, "
                    f"which is not one of {sorted(self.branches)}"
                )
        self.choose = choose
        self.merge = merge
        self.on_branch_failure = on_branch_failure
        self.reference_writers = writers

    def chosen(self, names: Any) -> list[str]:
        """Return ``choose``'s answer as branch names in ``branches`` order, or raise.

        One name or an iterable of names; anything else, or an unknown name, is a
        ``ControlFlowError`` naming the known branches (the step's failure).
        """
        picked = [names] if isinstance(names, str) else names
        try:
            wanted = list(picked)
        except TypeError:
            raise ControlFlowError(
                f"router {self.name!r}: choose returned {names!r}; return a branch name or a "
                f"list of them, out of {list(self.branches)}"
            ) from None
        unknown = [n for n in wanted if not isinstance(n, str) or n not in self.branches]
        if unknown:
            raise ControlFlowError(
                f"router {self.name!r}: choose returned {unknown[0]!r}, which is not one of "
                f"the branches {list(self.branches)}"
            )
        return [key for key in self.branches if key in wanted]


# --- Step's constructor (bound onto Step by flujo.domain.dsl) -----------------------------


def _router(
    choose: Callable[..., Any],
    branches: Mapping[str, Body],
    *,
    merge: Callable[[dict[str, Any]], Any] | None = None,
    on_branch_failure: Literal["fail", "collect"] = "fail",
    reference_writers: Mapping[str, str] | None = None,
    name: str = "router",
    **options: Unpack[StepOptions],
) -> Step[Any, Any]:
    """Run the branches ``choose(input, context)`` names, concurrently, as ``parallel`` does.

    ``choose`` returns one branch name or a list of them; an unknown name fails the step
    with the known ones. The output is ``{branch: output}`` of the chosen branches, or
    ``merge`` of it.
    """
    return RouterStep(
        name, choose, branches, merge, on_branch_failure, reference_writers, **options
    )
