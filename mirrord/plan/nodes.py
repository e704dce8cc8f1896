"""YAML nodes with their key path and line: the loader's typed, error-reporting view of the document.

The plan is composed to PyYAML nodes (not constructed to Python objects) so every value keeps its
line; :class:`Value` wraps a node with its key path and turns every type mistake into a
:class:`PlanError` naming file, line and key. Strings are read from the scalar text as written, so
``tags: [1.20]`` means the tag ``1.20``, not the float 1.2.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from mirrord.plan.model import PlanError

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"

_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?")
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def compose(text: str, path: str) -> Value | None:
    """Compose ``text`` to a node tree; None for an empty document; YAML errors become PlanError."""
    try:
        node = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        node = _compose_slowly(text, path)  # the pure-Python parser's messages, as before
    if node is None:
        return None
    return Value(node, "", path)


#: libyaml when it is there: composing a plan of 2,000 tags in Python costs more CPU than checking
#: them all with HEADs. Same nodes, tags and line marks; its error messages differ, so a plan it
#: rejects is parsed again in Python for the message.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_slowly(text: str, path: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its line: str(exc) quotes a snippet of the line, which may hold a secret.
        raise PlanError(path, *_describe(exc)) from None
    except yaml.YAMLError as exc:
        raise PlanError(path, None, "", f"invalid YAML: {type(exc).__name__}") from None


def _describe(exc: yaml.MarkedYAMLError) -> tuple[int | None, str, str]:
    """(line, key, message) of a YAML error: the problem's line, the context's line in the message."""
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context:
        where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message += f" ({exc.context}{where})"
    return (mark.line + 1 if mark else None), "", message


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return {
        _NULL: "null",
        _BOOL: "a boolean",
        _INT: "an integer",
        _FLOAT: "a number",
        _STR: "a string",
    }.get(node.tag, "a scalar")


@dataclass(frozen=True, slots=True)
class Value:
    """One YAML node at key path ``key`` of the plan file ``path``."""

    node: yaml.Node
    key: str
    path: str

    @property
    def line(self) -> int:
        """1-based line where the value starts."""
        return int(self.node.start_mark.line) + 1

    @property
    def kind(self) -> str:
        """What the value is, for messages: "a mapping", "a list", "a string", "null", ..."""
        return _kind(self.node)

    def error(self, message: str) -> PlanError:
        """A PlanError at this value's line and key."""
        return PlanError(self.path, self.line, self.key, message)

    def expected(self, what: str) -> PlanError:
        """``expected WHAT, got KIND`` at this value (the value itself is not quoted: it may be secret)."""
        return self.error(f"expected {what}, got {self.kind}")

    def child(self, name: str, node: yaml.Node) -> Value:
        """The value of key ``name`` under this mapping."""
        return Value(node, f"{self.key}.{name}" if self.key else name, self.path)

    @property
    def is_null(self) -> bool:
        """True for ``~``/``null``/an empty value."""
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == _NULL

    @property
    def is_mapping(self) -> bool:
        """True for a mapping node."""
        return isinstance(self.node, yaml.MappingNode)

    @property
    def is_sequence(self) -> bool:
        """True for a sequence node."""
        return isinstance(self.node, yaml.SequenceNode)

    # -- containers ---------------------------------------------------------------------------------

    def mapping(self, allowed: Collection[str] | None = None) -> dict[str, Value]:
        """The mapping's items in order (merge keys applied), keys as written.

        Raises PlanError for a non-mapping, a non-scalar key, a duplicate key, or (when ``allowed`` is
        given) a key not in ``allowed``, naming that key.
        """
        if not isinstance(self.node, yaml.MappingNode):
            raise self.expected("a mapping")
        seen: dict[str, int] = {}
        for key_node, _ in self.node.value:
            if key_node.tag == _MERGE:
                continue
            name = self._key_name(key_node)
            if name in seen:
                raise PlanError(
                    self.path,
                    key_node.start_mark.line + 1,
                    self._join(name),
                    f"duplicate key (first at line {seen[name]})",
                )
            seen[name] = key_node.start_mark.line + 1
        items = self._flattened()
        if allowed is not None:
            for name, (key_node, _) in items.items():
                if name not in allowed:
                    raise PlanError(
                        self.path,
                        key_node.start_mark.line + 1,
                        self._join(name),
                        f"unknown key (expected one of: {', '.join(allowed)})",
                    )
        return {name: self.child(name, value) for name, (_, value) in items.items()}

    def key_node(self, name: str, key: str | None = None) -> Value:
        """The key ``name`` of this mapping itself (its line is the key's line), at key path ``key``."""
        assert isinstance(self.node, yaml.MappingNode)
        for key_node, _ in self.node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == name:
                return Value(key_node, key or self._join(name), self.path)
        raise KeyError(name)

    def _join(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def _key_name(self, key_node: yaml.Node) -> str:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
            raise PlanError(self.path, key_node.start_mark.line + 1, self.key, "keys must be strings")
        return str(key_node.value)

    def _flattened(self) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Items with ``<<`` merges resolved (explicit keys win), later items overriding earlier."""
        node = self.node
        assert isinstance(node, yaml.MappingNode)
        if any(k.tag == _MERGE for k, _ in node.value):
            node = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
            try:
                SafeConstructor().flatten_mapping(node)
            except ConstructorError as exc:
                raise self.error(f"invalid merge key: {exc.problem}") from None
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value in node.value:
            items[self._key_name(key_node)] = (key_node, value)
        return items

    def sequence(self) -> list[Value]:
        """The list's items, keyed ``KEY[i]``; PlanError when not a list."""
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.expected("a list")
        return [Value(item, f"{self.key}[{i}]", self.path) for i, item in enumerate(self.node.value)]

    def scalar_texts(self) -> list[str] | None:
        """The texts of a list whose items are all non-null scalars, each as :meth:`string` reads
        it (empty ones included, for the caller to check); None for anything else. A fast path for
        long lists: no :class:`Value` per item (the caller falls back to :meth:`sequence` for the
        error of a bad item)."""
        if not isinstance(self.node, yaml.SequenceNode):
            return None
        texts = []
        for item in self.node.value:
            if not isinstance(item, yaml.ScalarNode) or item.tag == _NULL:
                return None
            texts.append(str(item.value))
        return texts

    def string_list(self) -> list[str]:
        """A list of strings, or one string taken as a list of one."""
        if isinstance(self.node, yaml.ScalarNode) and not self.is_null:
            return [self.string()]
        return [item.string() for item in self.sequence()]

    # -- scalars ------------------------------------------------------------------------------------

    def string(self, *, allow_empty: bool = False) -> str:
        """The scalar's text exactly as written (numbers and booleans too: a tag named ``1.20``)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.is_null:
            raise self.expected("a string")
        text = str(self.node.value)
        if not text and not allow_empty:
            raise self.error("must not be empty")
        return text

    def optional_string(self) -> str | None:
        """None for null, else :meth:`string`."""
        return None if self.is_null else self.string()

    def boolean(self) -> bool:
        """A YAML boolean (``true``/``false``, and YAML 1.1's ``yes``/``no``/``on``/``off``)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != _BOOL:
            raise self.expected("true or false")
        return bool(SafeConstructor().construct_yaml_bool(self.node))

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer within [minimum, maximum]."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != _INT:
            raise self.expected("an integer")
        number = int(SafeConstructor().construct_yaml_int(self.node))
        self._check_range(number, minimum, maximum)
        return number

    def number(self, *, positive: bool = True) -> float:
        """An integer or float (positive unless told otherwise)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in (_INT, _FLOAT):
            raise self.expected("a number")
        number = float(SafeConstructor().construct_object(self.node))
        if number != number or number in (float("inf"), float("-inf")):
            raise self.error("must be a finite number")
        if positive and number <= 0:
            raise self.error(f"must be greater than 0, got {number:g}")
        return number

    def _check_range(self, number: int, minimum: int | None, maximum: int | None) -> None:
        if minimum is not None and number < minimum:
            raise self.error(f"must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise self.error(f"must be at most {maximum}, got {number}")

    def duration(self) -> float:
        """Seconds from ``30s``, ``30m``, ``6h``, ``1d``, ``1h30m``, ``500ms`` or a number; > 0."""
        what = "a duration ('30s', '30m', '6h', '1d', '1h30m' or seconds)"
        if not isinstance(self.node, yaml.ScalarNode) or self.is_null:
            raise self.expected(what)
        try:
            seconds = parse_duration(str(self.node.value))
        except ValueError:
            raise self.error(f"{self.node.value!r} is not {what}") from None
        if seconds <= 0:
            raise self.error("must be longer than 0s")
        return seconds

    def size(self) -> int:
        """Bytes from an integer or ``512KiB``, ``5MiB``, ``8MB`` ...; > 0."""
        what = "a size in bytes (an integer, or like '5MiB')"
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in (_INT, _STR):
            raise self.expected(what)
        m = _SIZE_RE.fullmatch(str(self.node.value).strip())
        if m is None:
            raise self.error(f"{self.node.value!r} is not {what}")
        size = int(m[1]) * _SIZE_UNITS[m[2] or "B"]
        if size <= 0:
            raise self.error("must be greater than 0")
        return size


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"1.5"``, ``"30s"``, ``"1h30m"``, ``"1d"``, ``"500ms"``; ValueError else."""
    text = text.strip()
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else _units(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration") from None


def _units(text: str) -> float:
    pos, total = 0, 0.0
    for m in _DURATION_PART_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m[1]) * _DURATION_UNITS[m[2]]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The shortest plan spelling of ``seconds``: ``6h``, ``1h30m``, ``1d2h``, ``1.5s``."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
