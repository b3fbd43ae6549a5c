"""Finding a test server from the environment, or saying how to start one."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest


async def require_server(
    kind: str,
    variables: tuple[str, ...],
    probe: Callable[[str], Awaitable[str | None]],
    how_to_start: str,
) -> str:
    """Return the address in the first set variable if ``probe`` reaches it.

    Otherwise skip with ``how_to_start`` — or fail under CI, which must run these tests.
    """
    address = next((os.environ[v] for v in variables if os.environ.get(v)), None)
    if address is None:
        problem = f"no {kind} address in {' or '.join(variables)}"
    else:
        problem = await probe(address)
    if problem is None and address is not None:
        return address
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run the {kind} tests: {how_to_start}")
    pytest.skip(f"{problem}; {how_to_start}")
