"""One error type for everything a user can get wrong, carrying where it went wrong."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

MAX_SHOWN = 20  # keep a report on one screen


@dataclass(frozen=True)
class Problem:
    """One located mistake: file:line:column, the path in the document, what and what to do."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)
        parts = [f"{where}:" if where else "", f"{self.path}:" if self.path else "", self.message]
        text = " ".join(p for p in parts if p)
        return f"{text} ({self.hint})" if self.hint else text


class GraphDefError(ValueError):
    """A bad model, input or data; `.errors` holds every located problem found."""

    def __init__(self, errors: list[Problem] | Problem | str):
        if isinstance(errors, (str, Problem)):
            errors = [errors]
        self.errors = [e if isinstance(e, Problem) else Problem(e) for e in errors]
        super().__init__(self._report())

    def _report(self) -> str:
        lines = [str(e) for e in self.errors[:MAX_SHOWN]]
        if len(self.errors) > MAX_SHOWN:
            lines.append(f"... and {len(self.errors) - MAX_SHOWN} more errors")
        return "\n".join(lines)


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean' hint for a misspelled name, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
