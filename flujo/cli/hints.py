"""What the CLI tells a user to type next: resume commands, and flags for the runner's words.

The engine's messages name the Python API (``human_input=...``, ``on_pending='rerun'``);
a shell user needs the flag that does the same, so the CLI swaps one for the other.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["Invocation"]


@dataclass(frozen=True, slots=True)
class Invocation:
    """A target as the user gave it, with the options a resume of its runs needs again."""

    target: str
    profile: str | None = None
    context: str | None = None

    def resume_command(self, run_id: str, *, human_input: bool = False) -> str:
        """Return the exact ``flujo runs resume`` command for ``run_id``, quoted for a shell."""
        words = ["flujo", "runs", "resume", run_id, self.target]
        if self.profile is not None:
            words += ["--profile", str(self.profile)]
        if self.context is not None:
            words += ["--context", self.context]
        if human_input:
            words += ["--human-input", "<json>"]
        return shlex.join(words)

    def for_the_shell(self, message: str, run_id: str) -> str:
        """Return ``message`` with the Python arguments it names replaced by their flags."""
        swaps = (
            (
                "pass human_input=... to resume_async",
                "answer with --human-input: " + self.resume_command(run_id, human_input=True),
            ),
            ("on_pending='rerun'", "--on-pending rerun"),
            ("on_pending='accept'", "--on-pending accept"),
        )
        for python, flag in swaps:
            message = message.replace(python, flag)
        return message
