"""YAML with line numbers: parse a document and remember where each value came from.

PyYAML's composer keeps a mark on every node; we build plain Python data from the node
tree ourselves so that each JSON path (``("sections", 0, "items", 2, "check")``) maps to
its 1-based line, and so that duplicate mapping keys (silently merged by YAML loaders)
become errors.
"""

from __future__ import annotations

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
    loader = yaml.SafeLoader(text)
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
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, where: PathKey, doc: SourceDoc) -> Any:
    doc.lines[where] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                first = doc.lines.get((*where, key), "?")
                raise UsageError(
                    f"{doc.path}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first defined on line {first})",
                    hint="each key may appear only once in a mapping",
                )
            out[key] = _build(loader, value_node, (*where, key), doc)
            doc.lines[(*where, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, child, (*where, i), doc) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
