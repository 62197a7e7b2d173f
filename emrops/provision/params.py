"""The parameters ``main.bicep`` declares (read with pycep-parser), and checks of values.

Values from an environment file are checked against the declarations before anything
is rendered or sent to Azure: unknown names, missing required values, types,
``@allowed``, ``@minValue``/``@maxValue``/``@minLength``/``@maxLength``, and secure
parameters that must come from ``[secrets]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops.errors import UsageError

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "bool": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    required: bool
    secure: bool
    description: str = ""
    allowed: tuple[Any, ...] | None = None
    min_value: int | None = None
    max_value: int | None = None
    min_length: int | None = None
    max_length: int | None = None


@functools.cache
def _parser() -> Any:
    from pycep import BicepParser

    return BicepParser()


def parse_bicep(path: Path) -> dict[str, Any]:
    """Parse one .bicep file with pycep-parser; UsageError naming the file when it is invalid."""
    stat = path.stat()
    return _parse_cached(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parse_cached(path: Path, _mtime: int, _size: int) -> dict[str, Any]:
    from lark.exceptions import LarkError

    try:
        return _parser().parse(file_path=path)
    except (ValueError, LarkError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path} is not valid Bicep: {first}") from exc


def declared_parameters(main_bicep: Path) -> dict[str, ParamSpec]:
    """The ``param`` declarations of a Bicep file, by name."""
    parsed = parse_bicep(main_bicep)
    out: dict[str, ParamSpec] = {}
    for name, body in (parsed.get("parameters") or {}).items():
        decorators = {d.get("type"): d.get("argument") for d in body.get("decorators") or []}
        allowed = decorators.get("allowed")
        out[name] = ParamSpec(
            name=name,
            type=str(body.get("type")),
            required=body.get("default") is None,
            secure="secure" in decorators,
            description=str(decorators.get("description") or ""),
            allowed=tuple(allowed) if isinstance(allowed, list) else None,
            min_value=decorators.get("min_value"),
            max_value=decorators.get("max_value"),
            min_length=decorators.get("min_length"),
            max_length=decorators.get("max_length"),
        )
    return out


def check_values(
    specs: dict[str, ParamSpec],
    values: dict[str, Any],
    secret_names: set[str],
    origin: str,
) -> None:
    """Raise UsageError (exit 2) for the first problem found in ``values``."""
    unknown = sorted((set(values) | secret_names) - set(specs))
    if unknown:
        raise UsageError(
            f"{origin}: unknown parameter(s) {', '.join(unknown)}",
            hint="main.bicep declares: " + ", ".join(sorted(specs)),
        )
    for name in sorted(values):
        spec = specs[name]
        if spec.secure:
            raise UsageError(
                f"{origin}: {name} is a secure parameter and must not be written in [parameters]",
                hint=f'move it to [secrets.{name}] with env = "VAR" or a Key Vault reference',
            )
        _check_one(spec, values[name], origin)
    for name in sorted(secret_names):
        if not specs[name].secure:
            raise UsageError(f"{origin}: {name} is in [secrets] but is not @secure() in Bicep")
    missing = sorted(
        s.name
        for s in specs.values()
        if s.required and s.name not in values | {n: None for n in secret_names}
    )
    if missing:
        raise UsageError(f"{origin}: missing required parameter(s) {', '.join(missing)}")


def _check_one(spec: ParamSpec, value: Any, origin: str) -> None:
    where = f"{origin}: parameter {spec.name}"
    kinds = _TYPES.get(spec.type)
    if kinds and (not isinstance(value, kinds) or (spec.type == "int" and isinstance(value, bool))):
        raise UsageError(f"{where} must be {spec.type}, got {type(value).__name__} {value!r}")
    if spec.allowed is not None and value not in spec.allowed:
        choices = ", ".join(repr(v) for v in spec.allowed)
        raise UsageError(f"{where} is {value!r}; allowed: {choices}")
    if spec.min_value is not None and value < spec.min_value:
        raise UsageError(f"{where} is {value}; minimum is {spec.min_value}")
    if spec.max_value is not None and value > spec.max_value:
        raise UsageError(f"{where} is {value}; maximum is {spec.max_value}")
    if spec.min_length is not None and len(value) < spec.min_length:
        raise UsageError(f"{where} is shorter than {spec.min_length}")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise UsageError(f"{where} is longer than {spec.max_length}")
