"""Read YAML safely, keeping where every value sits so errors can point at file:line:column.

PyYAML's `safe_load` forgets positions and silently keeps the last of duplicate keys;
here we compose the node tree ourselves (safe tags only) and build plain Python data
alongside a map from document path to position.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import GraphDefError, Problem

FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: 5x faster
C_SAFE_DEPTH = 1000  # libyaml's composer recurses in C: deeper documents go to the pure-Python one, which stops cleanly
STR_TAG = "tag:yaml.org,2002:str"
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


def format_path(path: tuple) -> str:
    """('nodes', 'h1', 'inputs', 1) -> 'nodes.h1.inputs[1]'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class Limits:
    """What a model file may ask of graphdef. Raise them for files you trust:
    graphdef.load(path, limits=Limits(max_vertices=...)) or `graphdef --limit max_vertices=...`."""

    max_file_bytes: int = 64 * 2**20
    max_values: int = 5_000_000  # counted after YAML aliases are expanded: a "billion laughs" file stops here
    max_depth: int = 100  # nesting of mappings and lists
    max_vertices: int = 1_000_000
    max_parameter_values: int = 2**28  # numbers in all parameters together: 2 GiB in float64

    @staticmethod
    def exceeded(what: str) -> str:
        return f"if you trust the file, raise the limit: --limit {what}=N, or graphdef.Limits({what}=N) in Python"


LIMITS = Limits()


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


def read_file(path, limits: Limits = LIMITS) -> Source:
    """Read and parse a YAML model file; any failure is a GraphDefError naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size > limits.max_file_bytes:
            raise GraphDefError(Problem(f"file is larger than {limits.max_file_bytes:,} bytes", str(path),
                                        hint=limits.exceeded("max_file_bytes")))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GraphDefError(Problem("file not found", str(path), hint="check the path")) from None
    except IsADirectoryError:
        raise GraphDefError(Problem("is a directory, not a model file", str(path))) from None
    except (OSError, UnicodeDecodeError) as e:
        raise GraphDefError(Problem(f"cannot read file: {e}", str(path))) from None
    return parse(text, str(path), limits)


def parse(text: str, file: str | None = None, limits: Limits = LIMITS) -> Source:
    """Parse YAML text into a Source; syntax errors, unsafe tags, duplicate keys and limits raise."""
    bound = _nesting_bound(text)
    if bound >= C_SAFE_DEPTH and bound > limits.max_depth:  # refuse before any parser recurses into it
        raise GraphDefError(Problem(f"document nests deeper than {limits.max_depth} levels", file,
                                    hint=limits.exceeded("max_depth")))
    loader = (FAST_LOADER if bound < C_SAFE_DEPTH else yaml.SafeLoader)(text)
    source = Source(None, file)
    try:
        root = loader.get_single_node()
        if root is None:
            raise GraphDefError(Problem("the file is empty", file, hint="a model starts with `graphdef: 1`"))
        if "&" in text or bound > limits.max_depth:  # no anchor, no alias: the text itself bounds the size
            _check_size(root, limits, file)
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


def _nesting_bound(text: str) -> int:
    """An upper bound of the document's nesting: bracket depth plus the deepest indentation (cheap)."""
    depth = worst = 0
    for match in re.finditer(r"[\[\]{}]", text):
        depth += 1 if match.group() in "[{" else -1
        worst = max(worst, depth)
    indent = max((len(m.group()) for m in re.finditer(r"^[ \t-]*", text, re.M)), default=0)
    return worst + indent


def _check_size(root, limits: Limits, file) -> None:
    """Refuse documents that expand past max_values (aliases counted as often as used) or nest past max_depth,
    without expanding anything: each distinct node is measured once."""
    sizes, open_nodes = {}, set()

    def size(node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        mark = node.start_mark
        where = (file, mark.line + 1, mark.column + 1)
        if depth > limits.max_depth:
            raise GraphDefError(Problem(f"document nests deeper than {limits.max_depth} levels", *where,
                                        hint=limits.exceeded("max_depth")))
        if id(node) in open_nodes:
            raise GraphDefError(Problem("a YAML alias refers to itself", *where, hint="remove the recursive alias"))
        open_nodes.add(id(node))
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1 + sum(size(child, depth + 1) for child in children)
        if total > limits.max_values:
            raise GraphDefError(Problem(f"document expands to more than {limits.max_values:,} values "
                                        "(YAML aliases repeat what they refer to)", *where,
                                        hint=limits.exceeded("max_values")))
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)


class _Builder:
    def __init__(self, loader, source: Source):
        self.loader, self.source = loader, source
        self.problems: list[Problem] = []

    def build(self, node, path: tuple):
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
