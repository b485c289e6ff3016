"""Read YAML safely, keeping where every value sits so errors can point at file:line:column.

PyYAML's `safe_load` forgets positions and silently keeps the last of duplicate keys;
here we compose the node tree ourselves (safe tags only) and build plain Python data
alongside a map from document path to position.
"""
from __future__ import annotations

import itertools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml import MappingNode, ScalarNode, SequenceNode

from ..errors import GraphDefError, Problem, clip

FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: 5x faster
C_SAFE_DEPTH = 1000  # libyaml's composer recurses in C: deeper documents go to the pure-Python one, which stops cleanly
STR_TAG = "tag:yaml.org,2002:str"
SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
PLAIN_TAGS = SCALAR_TAGS | {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
FLATTENED_TAGS = {"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}  # keys flatten_mapping rewrites: <<, =
BRACKET_STEPS = {"[": 1, "{": 1, "]": -1, "}": -1}
VERTEX_SECTIONS = ("inputs", "parameters", "state", "constants", "nodes")
MAX_RANK = 32  # dimensions of any value (numpy stops at 64; no model needs more than a handful)


def format_path(path: tuple) -> str:
    """('nodes', 'h1', 'inputs', 1) -> 'nodes.h1.inputs[1]'."""
    text = ""
    for part in path:
        part = part if isinstance(part, int) else clip(str(part))  # a 5 MB name is not echoed whole
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
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
    max_tensor_values: int = 2**28  # numbers in any one value whose shape is known at load (one sample)

    @staticmethod
    def exceeded(what: str) -> str:
        return f"if you trust the file, raise the limit: --limit {what}=N, or graphdef.Limits({what}=N) in Python"


LIMITS = Limits()


class _Broken:
    """The spec of a vertex whose errors are already reported: the loader keeps its name, so references
    to it resolve and every other vertex is still checked in the same round, and checks nothing more of it."""

    def __repr__(self) -> str:
        return "BROKEN"


BROKEN = _Broken()


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
        file, line, column = self._position(path)
        call = self.calls.get(path[1]) if len(path) > 1 and isinstance(path[1], str) else None
        return Problem(f"{message} [{call}]" if call else message, file, line, column, format_path(path) or None, hint)

    def where(self, path: tuple) -> str:
        """file:line:column of a path, for messages that point at a second place."""
        file, line, column = self._position(tuple(path))
        return ":".join(str(x) for x in (file or "<text>", line, column) if x is not None)

    def _position(self, path: tuple) -> tuple:
        while path and path not in self.positions:
            path = path[:-1]
        line, column, *elsewhere = self.positions.get(path, (None, None))
        return elsewhere[0] if elsewhere else self.file, line, column


def read_file(path, limits: Limits = LIMITS) -> Source:
    """Read and parse a YAML model file; any failure is a GraphDefError naming the file."""
    path = Path(path)
    data = read_regular(path, limits.max_file_bytes, limits.exceeded("max_file_bytes"))
    return parse(decode(data, str(path)), str(path), limits)


def read_regular(path: Path, max_bytes: int, hint: str) -> bytes:
    """The bytes of a regular file of at most `max_bytes`. A pipe would block forever and /dev/zero never
    ends (its size says 0), so only regular files are opened, and never more than max_bytes + 1 is read."""
    fail = lambda message, advice=None: GraphDefError(Problem(message, str(path), hint=advice))  # noqa: E731
    try:
        _regular(os.stat(path), fail)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            _regular(os.fstat(fd), fail)  # the same file as stat saw, even if it was swapped meanwhile
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(max_bytes + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise fail("file not found", "check the path") from None
    except PermissionError:
        raise fail("cannot read file: permission denied", "check the file's permissions") from None
    except OSError as e:
        raise fail(f"cannot read file: {e.strerror or e}") from None
    except GraphDefError:
        raise
    except ValueError:  # a NUL byte in the name
        raise fail("not a usable file name", "check the path") from None
    if len(data) > max_bytes:
        raise fail(f"file is larger than {max_bytes:,} bytes", hint)
    return data


def _regular(status: os.stat_result, fail) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise fail("is a directory, not a file", "give the path of a file")
    if not stat.S_ISREG(status.st_mode):
        raise fail("is not a regular file (a pipe, socket or device): graphdef reads only plain files",
                   "copy its contents into a file")


def decode(data: bytes, file: str | None) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); UTF-16, Latin-1 and binary files are named as such."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise GraphDefError(Problem("the file is not UTF-8 (it starts with a UTF-16 byte-order mark)", file,
                                    hint="save it as UTF-8"))
    at = data.find(b"\x00")
    try:
        if at >= 0:
            raise UnicodeDecodeError("utf-8", data, at, at + 1, "NUL byte")
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        kind = "it holds NUL bytes: UTF-16 or binary" if e.reason == "NUL byte" else \
            f"byte 0x{data[e.start]:02X} is not UTF-8: Latin-1 or Windows text?"
        raise GraphDefError(Problem(f"the file is not UTF-8 ({kind})", file, line, column,
                                    hint="save it as UTF-8")) from None


def parse(text: str, file: str | None = None, limits: Limits = LIMITS) -> Source:
    """Parse YAML text into a Source; syntax errors, unsafe tags, duplicate keys and limits raise.

    The work that follows (building, schema validation, expansion) only ever sees a document within the
    limits. A text with anchors is measured on the composed node tree before any value is built (its
    aliases may repeat nodes a billion times); one without is counted as it is built, in time linear in
    its length."""
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
        _check_vertices(root, limits, file)
        if "&" in text:
            _check_size(root, limits, file)
        builder = _Builder(loader, source, text, limits)
        source.positions[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
        source.data = builder.build(root, ())
    except RecursionError:
        raise GraphDefError(Problem("document is nested too deeply", file, hint="flatten the YAML")) from None
    except yaml.YAMLError as e:
        raise GraphDefError(_yaml_problem(e, text, file)) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise GraphDefError(builder.problems)
    return source


def _yaml_problem(error: yaml.YAMLError, text: str, file) -> Problem:
    """A YAML syntax error in plain words, at its line and column."""
    if isinstance(error, yaml.reader.ReaderError) and isinstance(error.character, int):
        at = text.find(chr(error.character))  # the first such character (libyaml counts positions in bytes)
        at = error.position if at < 0 else at
        return Problem(f"character #x{error.character:04x} is not allowed in YAML", file,
                       text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at), hint="remove it")
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is None:
        return Problem(f"invalid YAML: {error}", file)
    lines = text.split("\n")
    line = lines[mark.line] if mark.line < len(lines) else ""
    if "\t" in line[:len(line) - len(line.lstrip(" \t"))] or "'\\t'" in str(error.problem):
        return Problem("tabs are not allowed for indentation in YAML: use spaces", file, mark.line + 1,
                       line.index("\t") + 1 if "\t" in line else mark.column + 1, hint="replace each tab by spaces")
    return Problem(f"invalid YAML: {error.problem or error.context}", file, mark.line + 1, mark.column + 1,
                   hint="fix the YAML at this position")


def too_many_vertices(count: int, limits: Limits, file) -> GraphDefError:
    return GraphDefError(Problem(f"the model has {count:,} vertices, more than {limits.max_vertices:,}", file,
                                 hint=limits.exceeded("max_vertices")))


def _check_vertices(root, limits: Limits, file) -> None:
    """Refuse a model with too many vertices as soon as its tree is composed, before building them."""
    if not isinstance(root, MappingNode):
        return
    count = sum(len(value.value) for key, value in root.value
                if isinstance(value, MappingNode) and key.value in VERTEX_SECTIONS)
    if count > limits.max_vertices:
        raise too_many_vertices(count, limits, file)


def _nesting_bound(text: str) -> int:
    """An upper bound of the document's nesting: bracket depth plus the deepest indentation (cheap: the
    brackets are picked out and summed, and the indentations measured, by loops in C)."""
    brackets = re.sub(r"[^\[\]{}]+", "", text)
    worst = max(itertools.accumulate(map(BRACKET_STEPS.__getitem__, brackets), initial=0))
    return worst + max(map(len, re.findall(r"^[ \t-]*", text, re.M)), default=0)


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
            raise _too_deep(limits, where)
        if id(node) in open_nodes:
            raise GraphDefError(Problem("a YAML alias refers to itself", *where, hint="remove the recursive alias"))
        open_nodes.add(id(node))
        children = [c for pair in node.value for c in pair] if isinstance(node, MappingNode) else \
            node.value if isinstance(node, SequenceNode) else []
        total = 1 + sum(size(child, depth + 1) for child in children)
        if total > limits.max_values:
            raise _too_many(limits, where)
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)


def _too_deep(limits: Limits, where: tuple) -> GraphDefError:
    return GraphDefError(Problem(f"document nests deeper than {limits.max_depth} levels", *where,
                                 hint=limits.exceeded("max_depth")))


def _too_many(limits: Limits, where: tuple) -> GraphDefError:
    return GraphDefError(Problem(f"document expands to more than {limits.max_values:,} values (YAML aliases "
                                 "repeat what they refer to)", *where, hint=limits.exceeded("max_values")))


class _Builder:
    """Plain data from the node tree, each value's position recorded as it is built. With anchors in the
    text, a node used again through an alias is built once and copied: a small file of aliases costs its
    expanded size in copying, not in building and positions. Without, the values and the nesting are
    counted against the limits here. Scalars other than strings are built by their tag's constructor
    once per distinct (tag, text): a model repeats its numbers, booleans and nulls."""

    def __init__(self, loader, source: Source, text: str, limits: Limits):
        self.loader, self.source, self.positions, self.limits = loader, source, source.positions, limits
        self.problems: list[Problem] = []
        self.built = {} if "&" in text else None  # id(node) -> its value, when an alias may repeat a node
        self.merging = "<<" in text or "=" in text or "!" in text  # else no key is a merge (<<) or value (=) key
        self.scalars = {}  # (tag, text) -> value
        self.values = 1  # the root; then each container's entries (keys and values), as it is entered

    def build(self, node, path: tuple):
        if type(node) is ScalarNode and node.tag in SCALAR_TAGS:  # immutable: shared, never copied
            return node.value if node.tag == STR_TAG else self._scalar(node)
        if self.built is None:
            return self._collection(node, path)
        if id(node) in self.built:
            return _copy(self.built[id(node)])
        value = self.built[id(node)] = self._collection(node, path)
        return value

    def _collection(self, node, path: tuple):
        tag = node.tag
        if tag not in PLAIN_TAGS:
            raise yaml.MarkedYAMLError(problem=f"tag '{tag}' is not allowed: graphdef reads plain YAML only",
                                       problem_mark=node.start_mark)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return self._sequence(node, path)
        return self.loader.construct_object(node)  # a scalar tagged !!map or !!seq: PyYAML says what is wrong

    def _scalar(self, node):
        """What construct_object makes of a scalar with a safe tag other than str."""
        try:
            return self.scalars[node.tag, node.value]
        except KeyError:
            value = self.scalars[node.tag, node.value] = self.loader.yaml_constructors[node.tag](self.loader, node)
            return value

    def _count(self, node, path: tuple, entries: int) -> None:
        """Refuse a container whose entries pass max_values or max_depth (a text with aliases was measured
        before it was built)."""
        if self.built is not None or not entries:
            return
        self.values += entries
        if self.values > self.limits.max_values:
            raise _too_many(self.limits, (self.source.file, node.start_mark.line + 1, node.start_mark.column + 1))
        if len(path) >= self.limits.max_depth:
            first = node.value[0][0] if isinstance(node, MappingNode) else node.value[0]
            raise _too_deep(self.limits, (self.source.file, first.start_mark.line + 1, first.start_mark.column + 1))

    def _sequence(self, node, path: tuple) -> list:
        self._count(node, path, len(node.value))
        out, positions, build = [], self.positions, self.build
        for i, item in enumerate(node.value):
            here, mark = path + (i,), item.start_mark
            positions[here] = (mark.line + 1, mark.column + 1)
            out.append(build(item, here))
        return out

    def _mapping(self, node, path: tuple) -> dict:
        if self.merging and any(key_node.tag in FLATTENED_TAGS for key_node, _ in node.value):
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        self._count(node, path, 2 * len(node.value))
        out, positions, build = {}, self.positions, self.build
        for key_node, value_node in node.value:
            plain = type(key_node) is ScalarNode and key_node.tag == STR_TAG
            key = key_node.value if plain else self._key(key_node, path)
            here, mark = path + (key,), key_node.start_mark
            if key in out:
                first = positions.get(here, ("?",))[0]
                self.problems.append(Problem(f"duplicate key '{key}' (first defined on line {first})",
                                             self.source.file, mark.line + 1, mark.column + 1, format_path(here),
                                             "keep only one of them"))
                continue
            positions[here] = (mark.line + 1, mark.column + 1)
            out[key] = build(value_node, here)
        return out

    def _key(self, node, path: tuple):
        """A key other than a plain string: a number, a boolean or null (PyYAML builds it)."""
        scalar = type(node) is ScalarNode and node.tag in SCALAR_TAGS
        key = self._scalar(node) if scalar else self.loader.construct_object(node)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise GraphDefError(self.source.problem(path, "mapping keys must be plain scalars"))
        return key


def _copy(value):
    """A fresh copy of built data (lists and mappings; scalars are shared), so no two places share a list."""
    if isinstance(value, list):
        return [_copy(v) if isinstance(v, (list, dict)) else v for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) if isinstance(v, (list, dict)) else v for k, v in value.items()}
    return value
