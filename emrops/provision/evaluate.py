"""Evaluate the Bicep sources with one environment's values, without the bicep CLI.

pycep-parser gives the syntax tree; this walks it with the parameter values and returns
every resource that would be deployed (modules expanded, loops unrolled, conditions
applied) with its properties evaluated as far as they are known before deployment. Values
only Azure knows (ids, keys, host names of new resources) are :class:`Unknown` or
:class:`Ref`. This lets tests and ``provision plan`` assert what the templates say for an
environment, e.g. that production has no public network access anywhere.

Covered: the expression forms and functions the bundled templates use (see
:data:`FUNCTIONS`). Anything else raises :class:`EvaluationError` naming it, so a template
change cannot pass unexamined.

pycep gives identifiers and quoted strings the same form; the sources are therefore read
through :func:`_mark_literals`, which tags every quoted string so the two stay apart.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops.errors import UsageError

LIT = "\x01"  # prefix of every quoted string after _mark_literals


class EvaluationError(UsageError):
    """A construct the evaluator does not know (exit 2)."""


@dataclass(frozen=True)
class Unknown:
    """A value only known at deployment time."""

    what: str

    def __str__(self) -> str:
        return f"<{self.what}>"


@dataclass(frozen=True)
class Ref:
    """A resource, or one of its ids, as another resource refers to it."""

    type: str
    name: Any
    attribute: str = ""

    def __str__(self) -> str:
        suffix = f".{self.attribute}" if self.attribute else ""
        return f"<{self.type}/{self.name}{suffix}>"


@dataclass
class Resource:
    """One resource that would be deployed."""

    symbol: str
    type: str
    api_version: str
    module: str  # "main", "main/storage", "main/blobEndpoint", ...
    body: dict[str, Any]
    existing: bool = False

    @property
    def name(self) -> Any:
        return self.body.get("name")

    @property
    def properties(self) -> dict[str, Any]:
        props = self.body.get("properties")
        return props if isinstance(props, dict) else {}


@dataclass
class Evaluation:
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, rtype: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == rtype.lower() and not r.existing]

    def one(self, rtype: str) -> Resource:
        found = self.of_type(rtype)
        if len(found) != 1:
            raise AssertionError(f"{len(found)} resources of type {rtype}, expected one")
        return found[0]


# ------------------------------------------------------------------------------ source
_DECLARATION = re.compile(r"^(\s*(?:resource|module)\s+\w+\s+)'\x01", re.MULTILINE)


def _mark_literals(text: str) -> str:
    """Tag every quoted string (also inside ``${...}``) with :data:`LIT`; comments are
    dropped; multi-line strings are tagged too."""
    out: list[str] = []
    i = 0

    def string(i: int) -> int:  # at the opening quote; returns index after the closing one
        out.append("'" + LIT)
        i += 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                out.append(text[i : i + 2])
                i += 2
            elif ch == "'":
                out.append("'")
                return i + 1
            elif text.startswith("${", i):
                out.append("${")
                i = code(i + 2, "}")
                out.append("}")
                i += 1
            else:
                out.append(ch)
                i += 1
        raise EvaluationError("unterminated string in Bicep source")

    def code(i: int, stop: str | None) -> int:
        depth = 0
        while i < len(text):
            ch = text[i]
            if stop and ch == stop and depth == 0:
                return i
            if text.startswith("'''", i):
                end = text.index("'''", i + 3)
                out.append("'''" + LIT + text[i + 3 : end] + "'''")
                i = end + 3
            elif ch == "'":
                i = string(i)
            elif text.startswith("//", i) or text.startswith("#checkov", i):
                end = text.find("\n", i)
                i = len(text) if end < 0 else end
            elif text.startswith("/*", i):
                i = text.index("*/", i) + 2
            else:
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                out.append(ch)
                i += 1
        return i

    code(i, None)
    marked = "".join(out)
    # resource types, module paths and the target scope are not expressions: untag them
    marked = _DECLARATION.sub(r"\1'", marked)
    return marked.replace("targetScope = '" + LIT, "targetScope = '")


@functools.lru_cache(maxsize=64)
def _parse_text(text: str) -> dict[str, Any]:
    from lark.exceptions import LarkError
    from pycep import BicepParser

    try:
        return dict(BicepParser().parse(text=text))
    except (ValueError, LarkError) as exc:
        raise EvaluationError(f"cannot parse Bicep: {str(exc).splitlines()[0]}") from exc


def parse_marked(path: Path) -> dict[str, Any]:
    return _parse_text(_mark_literals(path.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=256)
def _parse_expression(expr: str) -> Any:
    return _parse_text(f"var x = {expr}\n")["variables"]["x"]["value"]


# ------------------------------------------------------------------------------ functions
def _unique_string(*parts: Any) -> str:
    if any(isinstance(p, (Unknown, Ref)) for p in parts):
        return "u" + hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:13]


def _guid(*parts: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(str, parts))))


def _cidr_subnet(prefix: str, bits: int, index: int) -> str:
    net = ipaddress.ip_network(prefix)
    return str(list(net.subnets(new_prefix=bits))[index])


def _union(*objs: Any) -> Any:
    if all(isinstance(o, dict) for o in objs):
        out: dict[str, Any] = {}
        for o in objs:
            out.update(o)
        return out
    if all(isinstance(o, list) for o in objs):
        merged: list[Any] = []
        for o in objs:
            merged += [v for v in o if v not in merged]
        return merged
    raise EvaluationError("union() of mixed types")


ENVIRONMENT = {
    "name": "AzureCloud",
    "suffixes": {
        "storage": "core.windows.net",
        "keyvaultDns": ".vault.azure.net",
        "sqlServerHostname": ".database.windows.net",
    },
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "cidrSubnet": _cidr_subnet,
    "guid": _guid,
    "items": lambda o: [{"key": k, "value": v} for k, v in sorted(o.items())],
    "join": lambda arr, sep: sep.join(str(v) for v in arr),
    "string": lambda v: str(v).lower() if isinstance(v, bool) else str(v),
    "take": lambda v, n: v[:n],
    "union": _union,
    "unique_string": _unique_string,
    "empty": lambda v: len(v) == 0,
    "contains": lambda c, item: item in c,
    "length": len,
    "toLower": lambda v: str(v).lower(),
    "concat": lambda *a: "".join(map(str, a)) if all(isinstance(x, str) for x in a) else sum(a, []),
    "subscription": lambda *_: {
        "id": "/subscriptions/<subscription>",
        "subscriptionId": "<subscription>",
        "tenantId": Unknown("tenant id"),
    },
    "resource_group": lambda *_: {
        "id": "/subscriptions/<subscription>/resourceGroups/<resource-group>",
        "name": "<resource-group>",
        "location": "<resource-group-location>",
    },
    "environment": lambda: ENVIRONMENT,
}
# pycep's names for the parameters of the functions it knows, in call order
_ARG_ORDER = {
    "guid": ("base_string", "extra_string_1", "extra_string_2", "extra_string_3"),
    "join": ("input_array", "delimiter"),
    "string": ("value_to_convert",),
    "take": ("original_value", "number_to_take"),
    "unique_string": ("base_string", "extra_string_1", "extra_string_2"),
    "empty": ("item_to_test",),
    "contains": ("container", "item_to_find"),
    "length": ("arg",),
}


# ------------------------------------------------------------------------------ evaluator
class _Scope:
    def __init__(self, path: Path, params: dict[str, Any], out: Evaluation, module: str):
        self.path = path
        self.folder = path.parent
        self.tree = parse_marked(path)
        self.out = out
        self.module = module
        self.values: dict[str, Any] = {}
        self.pending: dict[str, Callable[[], Any]] = {}
        self.locals: list[dict[str, Any]] = []
        declared = self.tree.get("parameters") or {}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise EvaluationError(f"{path.name}: unknown parameter(s) {', '.join(unknown)}")
        for name, spec in declared.items():
            if name in params:
                self.values[name] = params[name]
            elif spec.get("default") is not None:
                self.pending[name] = functools.partial(self.eval, spec["default"])
            else:
                raise EvaluationError(f"{path.name}: parameter {name} has no value")
        for name, spec in (self.tree.get("variables") or {}).items():
            self.pending[name] = functools.partial(self.eval, spec["value"])
        for name, spec in (self.tree.get("resources") or {}).items():
            self.pending[name] = functools.partial(self._resource, name, spec)
        for name, spec in (self.tree.get("modules") or {}).items():
            self.pending[name] = functools.partial(self._module, name, spec)

    # symbols ------------------------------------------------------------------
    def lookup(self, name: str) -> Any:
        for frame in reversed(self.locals):
            if name in frame:
                return frame[name]
        if name in self.values:
            return self.values[name]
        if name in self.pending:
            compute = self.pending.pop(name)
            self.values[name] = _IN_PROGRESS
            self.values[name] = compute()
            return self.values[name]
        raise EvaluationError(f"{self.path.name}: unknown symbol {name!r}")

    def is_symbol(self, name: str) -> bool:
        return any(name in f for f in self.locals) or name in self.values or name in self.pending

    def run(self) -> dict[str, Any]:
        for name in list(self.pending):
            if name in self.pending:
                self.lookup(name)
        return {
            name: self.eval(spec["value"])
            for name, spec in (self.tree.get("outputs") or {}).items()
        }

    # expressions --------------------------------------------------------------
    def eval(self, node: Any) -> Any:
        if isinstance(node, str):
            if node.startswith(LIT):
                return self._interpolate(node[1:])
            if node in ("null",):
                return None
            return self.lookup(node)
        if node is None or isinstance(node, (bool, int, float)):
            return node
        if isinstance(node, list):
            return [self.eval(v) for v in node]
        if isinstance(node, dict):
            if set(node) == {"operator"}:
                return self._operator(node["operator"])
            if set(node) == {"function"}:
                return self._function(node["function"])
            if "loop_type" in node:
                return self._loop(node, self.eval)
            return {self._key(k): self.eval(v) for k, v in node.items()}
        raise EvaluationError(f"{self.path.name}: cannot evaluate {node!r}")

    @staticmethod
    def _key(key: str) -> str:
        if len(key) >= 2 and key[0] == key[-1] == "'":  # pycep keeps a quoted key's quotes
            key = key[1:-1]
        return key[1:] if key.startswith(LIT) else key

    def _interpolate(self, text: str) -> Any:
        if "${" not in text:
            return text
        parts: list[Any] = []
        i = 0
        while True:
            start = text.find("${", i)
            if start < 0:
                parts.append(text[i:])
                break
            parts.append(text[i:start])
            depth, j = 0, start + 2
            while True:  # the matching brace, skipping quoted strings
                ch = text[j]
                if ch == "'":
                    j = text.index("'", j + 1)
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    if depth == 0:
                        break
                    depth -= 1
                j += 1
            value = self.eval(_parse_expression(text[start + 2 : j]))
            parts.append(value)
            i = j + 1
        if any(isinstance(p, (Unknown, Ref)) for p in parts):
            return Unknown("".join(str(p) for p in parts))
        return "".join(str(p).lower() if isinstance(p, bool) else str(p) for p in parts)

    def _operator(self, op: dict[str, Any]) -> Any:
        kind, args = op["type"], op["operands"]
        if kind == "conditional":
            cond = self.eval(args["condition"])
            if isinstance(cond, Unknown):
                return Unknown(f"condition {cond}")
            return self.eval(args["true_value" if cond else "false_value"])
        if kind == "property_accessor":
            return self._member(self.eval(args["operand_1"]), args["operand_2"])
        if kind == "index_accessor":
            base, index = self.eval(args["operand_1"]), self.eval(args["operand_2"])
            if isinstance(base, (Unknown, Ref)):
                return Unknown(f"{base}[{index}]")
            return base[index]
        if kind == "not":
            return not self.eval(args["bool_value"])
        values = [self.eval(v) for _, v in sorted(args.items())]
        if any(isinstance(v, Unknown) for v in values):
            return Unknown(f"{kind} of {values}")
        binary: dict[str, Callable[[Any, Any], Any]] = {
            "and": lambda a, b: a and b,
            "or": lambda a, b: a or b,
            "equals": lambda a, b: a == b,
            "not_equals": lambda a, b: a != b,
            "greater_than": lambda a, b: a > b,
            "greater_than_or_equals": lambda a, b: a >= b,
            "less_than": lambda a, b: a < b,
            "less_than_or_equals": lambda a, b: a <= b,
            "add": lambda a, b: a + b,
            "substract": lambda a, b: a - b,
            "multiply": lambda a, b: a * b,
            "coalesce": lambda a, b: a if a is not None else b,
        }
        if kind not in binary or len(values) != 2:
            raise EvaluationError(f"{self.path.name}: unsupported operator {kind}")
        return binary[kind](*values)

    def _member(self, base: Any, member: Any) -> Any:
        if isinstance(member, dict) and "operator" in member:  # a.b.c is nested on the right
            inner = member["operator"]
            if inner["type"] == "property_accessor":
                first = inner["operands"]["operand_1"]
                return self._member(
                    self._member(base, first), {"_rest": inner["operands"]["operand_2"]}
                )
            raise EvaluationError(f"{self.path.name}: unsupported accessor {inner['type']}")
        if isinstance(member, dict) and "_rest" in member:
            return self._member(base, member["_rest"])
        name = str(member)
        if isinstance(base, _ResourceValue):
            return base.member(name)
        if isinstance(base, _ModuleValue):
            if name == "outputs":
                return base.outputs
            if name == "name":
                return base.name
            return Unknown(f"module {base.name}.{name}")
        if isinstance(base, (Unknown, Ref)):
            return Unknown(f"{base}.{name}")
        if isinstance(base, dict):
            if name not in base:
                raise EvaluationError(f"{self.path.name}: no property {name!r}")
            return base[name]
        raise EvaluationError(f"{self.path.name}: cannot read .{name} of {base!r}")

    def _function(self, fn: dict[str, Any]) -> Any:
        kind = fn["type"]
        raw = fn.get("parameters") or {}
        if kind in ("resource_id", "subscription_resource_id"):
            rtype = self.eval(raw["resource_type"])
            names = [self.eval(raw[k]) for k in ("resource_name_1", "resource_name_2") if raw[k]]
            return Ref(rtype, "/".join(map(str, names)), "id")
        if kind not in FUNCTIONS:
            raise EvaluationError(f"{self.path.name}: unsupported function {kind}()")
        order = _ARG_ORDER.get(kind)
        keys = [k for k in order if k in raw] if order else sorted(raw)
        args = [self.eval(raw[k]) for k in keys if raw[k] is not None]
        if kind not in ("unique_string", "guid") and any(
            isinstance(a, (Unknown, Ref)) for a in args
        ):
            return Unknown(f"{kind}({', '.join(map(str, args))})")
        return FUNCTIONS[kind](*args)

    def _loop(self, node: dict[str, Any], body: Callable[[Any], Any]) -> list[Any]:
        detail = node["loop_type"]["detail"]
        items = self.eval(detail["array_name"])
        if isinstance(items, Unknown):
            raise EvaluationError(f"{self.path.name}: loop over an unknown array {items}")
        out = []
        for index, item in enumerate(items):
            frame = {detail["item_name"]: item}
            if detail.get("index_name"):
                frame[detail["index_name"]] = index
            self.locals.append(frame)
            try:
                if node.get("condition") is None or self.eval(node["condition"]):
                    out.append(body(node["config"]))
            finally:
                self.locals.pop()
        return out

    # resources and modules ----------------------------------------------------
    def _resource(self, symbol: str, spec: dict[str, Any]) -> Any:
        config = spec["config"]
        make = functools.partial(self._one_resource, symbol, spec)
        if "loop_type" in config:
            return self._loop(config, make)
        if "condition" in config and "config" in config:
            cond = self.eval(config["condition"])
            if not cond:
                return _ResourceValue(spec["type"], None, deployed=False)
            return make(config["config"])
        return make(config)

    def _one_resource(self, symbol: str, spec: dict[str, Any], config: dict[str, Any]) -> Any:
        body = {self._key(k): self.eval(v) for k, v in config.items() if k != "parent"}
        if "parent" in config:
            body["parent"] = self.eval(config["parent"])
        resource = Resource(
            symbol=symbol,
            type=spec["type"],
            api_version=spec.get("api_version") or "",
            module=self.module,
            body=body,
            existing=bool(spec.get("existing")),
        )
        self.out.resources.append(resource)
        return _ResourceValue(spec["type"], body.get("name"), body=body)

    def _module(self, symbol: str, spec: dict[str, Any]) -> Any:
        config = spec["config"]
        if "condition" in config and "config" in config:
            if not self.eval(config["condition"]):
                return _ModuleValue(symbol, {})
            config = config["config"]
        if spec.get("type") != "local":
            raise EvaluationError(f"{self.path.name}: module {symbol} is not a local file")
        path = self.folder / spec["detail"]["path"]
        params = self.eval(config.get("params") or {})
        child = _Scope(path, params, self.out, f"{self.module}/{symbol}")
        return _ModuleValue(str(self.eval(config.get("name", symbol))), child.run())


_IN_PROGRESS = Unknown("cycle")


class _ResourceValue:
    def __init__(self, rtype: str, name: Any, body: dict | None = None, deployed: bool = True):
        self.type, self.name, self.body, self.deployed = rtype, name, body or {}, deployed

    def member(self, name: str) -> Any:
        if name == "name":
            return self.name
        if name == "id":
            return Ref(self.type, self.name, "id")
        if name in ("properties", "identity"):
            return Ref(self.type, self.name, name)
        return Unknown(f"{self.type}/{self.name}.{name}")


class _ModuleValue:
    def __init__(self, name: str, outputs: dict[str, Any]):
        self.name, self.outputs = name, outputs


def evaluate(main_bicep: Path, params: dict[str, Any]) -> Evaluation:
    """Every resource ``main_bicep`` deploys with ``params`` (modules expanded)."""
    out = Evaluation()
    scope = _Scope(main_bicep, params, out, "main")
    out.outputs = scope.run()
    return out


def walk_strings(value: Any) -> list[str]:
    """Every string inside a value (for "no 0.0.0.0 anywhere" style checks)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (Unknown, Ref)):
        return [str(value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *walk_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in walk_strings(v)]
    return []
