"""Read YAML safely, keeping where every value sits so errors can point at file:line:column.

PyYAML's `safe_load` forgets positions and silently keeps the last of duplicate keys;
here we compose the node tree ourselves (safe tags only) and build plain Python data
alongside a map from document path to position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import GraphDefError, Problem

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: 5x faster
MAX_VALUES = 1_000_000  # stops alias bombs ("billion laughs") before they expand
STR_TAG = "tag:yaml.org,2002:str"
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


def format_path(path: tuple) -> str:
    """('nodes', 'h1', 'inputs', 1) -> 'nodes.h1.inputs[1]'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Source:
    """A document's data together with where each of its values was written.

    A position is (line, column), or (line, column, file) for values written in another
    file (functions expanded from an include or the standard library). `calls` names, for
    a vertex made by expanding a function call, the call it came from.
    """

    data: object
    file: str | None = None
    positions: dict = field(default_factory=dict)  # path tuple -> position, 1-based
    calls: dict = field(default_factory=dict)  # vertex -> "in function 'f', called as 'h1' at m.yaml:3:5"
    members: dict = field(default_factory=dict)  # vertex -> the (innermost) call it belongs to

    def problem(self, path: tuple, message: str, hint: str | None = None) -> Problem:
        """A Problem located at `path`, or at its nearest written ancestor."""
        path = tuple(path)
        at = path
        while at and at not in self.positions:
            at = at[:-1]
        line, column, *elsewhere = self.positions.get(at, (None, None))
        call = self.calls.get(path[1]) if len(path) > 1 and isinstance(path[1], str) else None
        return Problem(f"{message} [{call}]" if call else message, elsewhere[0] if elsewhere else self.file,
                       line, column, format_path(path) or None, hint)

    def where(self, path: tuple) -> str:
        """file:line:column of a path, for messages that point at a second place."""
        p = self.problem(path, "")
        return ":".join(str(x) for x in (p.file or "<text>", p.line, p.column) if x is not None)


def read_file(path) -> Source:
    """Read and parse a YAML model file; any failure is a GraphDefError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GraphDefError(Problem("file not found", str(path), hint="check the path")) from None
    except IsADirectoryError:
        raise GraphDefError(Problem("is a directory, not a model file", str(path))) from None
    except (OSError, UnicodeDecodeError) as e:
        raise GraphDefError(Problem(f"cannot read file: {e}", str(path))) from None
    return parse(text, str(path))


def parse(text: str, file: str | None = None) -> Source:
    """Parse YAML text into a Source; syntax errors, unsafe tags and duplicate keys raise."""
    loader = SAFE_LOADER(text)
    try:
        root = loader.get_single_node()
        source = Source(None, file)
        builder = _Builder(loader, source)
        source.data = builder.build(root, ())
    except RecursionError:
        raise GraphDefError(Problem("document is nested too deeply", file, hint="flatten the YAML")) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise GraphDefError(Problem(f"invalid YAML: {e.problem or e.context}", file,
                                    mark.line + 1 if mark else None,
                                    mark.column + 1 if mark else None,
                                    hint="fix the YAML at this position")) from None
    except yaml.YAMLError as e:
        raise GraphDefError(Problem(f"invalid YAML: {e}", file)) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise GraphDefError(builder.problems)
    return source


class _Builder:
    def __init__(self, loader, source: Source):
        self.loader, self.source, self.count = loader, source, 0
        self.problems: list[Problem] = []

    def build(self, node, path: tuple):
        self.count += 1
        if self.count > MAX_VALUES:
            raise GraphDefError(self.source.problem(path, f"document expands to more than {MAX_VALUES:,} values",
                                                    "remove deeply nested YAML aliases"))
        if node is None:
            return None
        self.source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in PLAIN_TAGS:
            raise yaml.MarkedYAMLError(problem=f"tag '{node.tag}' is not allowed: graphdef reads plain YAML only",
                                       problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return node.value if node.tag == STR_TAG else self.loader.construct_object(node)

    def _mapping(self, node, path: tuple) -> dict:
        self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise GraphDefError(self.source.problem(path, "mapping keys must be plain scalars"))
            if key in out:
                first = self.source.positions.get(path + (key,), ("?",))[0]
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                self.problems.append(Problem(f"duplicate key '{key}' (first defined on line {first})",
                                             self.source.file, line, col, format_path(path + (key,)),
                                             "keep only one of them"))
                continue
            self.source.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, path + (key,))
        return out
