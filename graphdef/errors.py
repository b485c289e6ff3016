"""One error type for everything a user can get wrong, carrying where it went wrong."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields

MAX_SHOWN = 20  # keep a report on one screen
MAX_WORD = 80  # a name or value echoed from a file (in quotes) is cut to this many characters
MAX_PATH = 240  # any other unbroken run of characters (a file path) to this many
MAX_TEXT = 1000  # and a whole message too: a hostile file cannot flood the terminal
QUOTED = re.compile(r"(['\"])([^'\"\s]{%d,})\1" % (MAX_WORD + 1))
LONG_WORD = re.compile(r"\S{%d,}" % (MAX_PATH + 1))
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clip(text: str, limit: int = MAX_WORD) -> str:
    """A long user string shortened around an ellipsis, keeping its start and its end (a file name)."""
    if len(text) <= limit:
        return text
    tail = min(20, limit // 4)
    return text[:limit - tail - 1] + "\u2026" + text[len(text) - tail:]


def readable(text, words: bool = True) -> str:
    """Text fit to echo: control characters written as escapes (a name "c\\n" stays on one line),
    quoted names, long words (unless not `words`: a file's path) and the whole text clipped."""
    text = CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))
    if words:
        text = QUOTED.sub(lambda m: m.group(1) + clip(m.group(2)) + m.group(1), text)
        text = LONG_WORD.sub(lambda m: clip(m.group(), MAX_PATH), text)
    return clip(text, MAX_TEXT)


@dataclass(frozen=True)
class Problem:
    """One located mistake: file:line:column, the path in the document, what and what to do."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None
    hint: str | None = None

    def __post_init__(self):
        """Every Problem echoes user strings (names, values, paths): make them safe to print, once, here."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) or f.name == "file" and value is not None:
                object.__setattr__(self, f.name, readable(value, words=f.name != "file"))

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
