"""YAML with line numbers: parse a document and remember where each value came from.

PyYAML's composer keeps a mark on every node; we build plain Python data from the node
tree ourselves so that each JSON path (``("sections", 0, "items", 2, "check")``) maps to
its 1-based line, and so that duplicate mapping keys (silently merged by YAML loaders)
become errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emrops.errors import UsageError

PathKey = tuple[str | int, ...]


@dataclass
class SourceDoc:
    """A parsed YAML document, its file and the line of every value in it."""

    path: Path
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    values: int = 0  # values built so far (an alias counts each time it is used)

    def line(self, where: PathKey) -> int:
        """Line of ``where``, or of its nearest ancestor that has one (1 for the root)."""
        key = tuple(where)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def at(self, where: PathKey) -> str:
        return f"{self.path}:{self.line(where)}"


def parse_yaml(path: Path, text: str) -> SourceDoc:
    """Parse ``text`` (the content of ``path``). Raises UsageError naming file:line on bad YAML."""
    try:
        # the reader checks every character as it is created: NUL and other control
        # characters ("unexpected ReaderError") are reported like any other YAML problem
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(text[exc.position])
        raise UsageError(
            f"{path}:{line}: malformed YAML: character U+{char:04X} is not allowed",
            hint="remove control characters from the file (a checklist is plain text)",
        ) from None
    try:
        node = loader.get_single_node()
        doc = SourceDoc(path=path, data=None)
        if node is not None:
            doc.data = _build(loader, node, (), doc)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        column = f":{mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark:
            problem += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        raise UsageError(
            f"{path}:{line}{column}: malformed YAML: {problem}",
            hint="fix the YAML syntax at that line (indentation, quotes, colons)",
        ) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}:1: malformed YAML: {exc}") from None
    except RecursionError:
        raise UsageError(
            f"{path}: YAML nested too deeply to read",
            hint=f"a checklist nests a few levels; keep it under {MAX_DEPTH}",
        ) from None
    finally:
        loader.dispose()


# A checklist holds hundreds of values. Aliases are expanded where they are used, so a few
# lines can stand for billions of values (the "billion laughs" document): refused, with the
# file's line, long before time or memory run out.
MAX_VALUES = 100_000
MAX_DEPTH = 64


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    where: PathKey,
    doc: SourceDoc,
    above: tuple[yaml.Node, ...] = (),
) -> Any:
    line = node.start_mark.line + 1
    doc.values += 1
    if doc.values > MAX_VALUES:
        raise UsageError(
            f"{doc.path}:{line}: the checklist expands to more than {MAX_VALUES:,} values "
            "(YAML aliases repeat what they name)",
            hint="write the items out, or use fewer nested aliases",
        )
    if any(node is a for a in above):
        raise UsageError(
            f"{doc.path}:{line}: a YAML alias refers to a value that contains it",
            hint="a checklist cannot be recursive: remove the alias",
        )
    if len(above) >= MAX_DEPTH:
        raise UsageError(
            f"{doc.path}:{line}: YAML nested more than {MAX_DEPTH} levels deep",
            hint="a checklist nests a few levels: sections, items, their fields",
        )
    if node.tag not in _PLAIN_TAGS:  # a tag a safe loader would ignore here, or refuse later
        raise UsageError(
            f"{doc.path}:{line}: YAML tag {node.tag!r} is not allowed in a checklist",
            hint="remove the tag (!!python/..., !!binary, ...): a checklist is plain YAML",
        )
    doc.lines[where] = line
    above = (*above, node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _build(loader, key_node, (*where, "<key>"), doc, above)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                first = doc.lines.get((*where, key), "?")
                raise UsageError(
                    f"{doc.path}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first defined on line {first})",
                    hint="each key may appear only once in a mapping",
                )
            out[key] = _build(loader, value_node, (*where, key), doc, above)
            doc.lines[(*where, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, child, (*where, i), doc, above) for i, child in enumerate(node.value)
        ]
    value = loader.construct_object(node, deep=True)
    bad = _SURROGATE.search(value) if isinstance(value, str) else None
    if bad:  # "\ud800" escapes make text that cannot be written as UTF-8 (reports, terminals)
        raise UsageError(
            f"{doc.path}:{line}: text holds an unpaired UTF-16 surrogate "
            f"({bad.group().encode('unicode_escape').decode()})",
            hint="write the character itself, or a \\U escape of its code point",
        )
    return value


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp", "merge")
)
_SURROGATE = re.compile("[\ud800-\udfff]")
