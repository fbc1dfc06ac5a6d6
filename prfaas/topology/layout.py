"""How the topology's typed settings map onto the lines of its TOML file, and back.

Every setting is a pydantic field annotated with `At(section, key)`, its place in the file; that
annotation is the only table of keys: reading (`nest`), writing (`dump`) and error messages
(`describe`) all derive from it. A nested `Settings` field (`Topology.link`) contributes its own
fields. Models reject unknown keys (`extra="forbid"`); scalars are strict (no "8000" for 8000,
no true for 1; an integer is a fine float).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, ValidationError
from pydantic_core import ErrorDetails

from prfaas.config_error import ConfigError

# The scalar types of the file, strict (see the module docstring).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


class TopologyError(ConfigError):
    """The topology is malformed; the message names the offending key (`section.key`)."""


@dataclass(frozen=True)
class At:
    """Where a setting lives in the file: `key` of table `[section]`."""

    section: str
    key: str
    relative_path: bool = False
    """A path resolved against the directory of the file that names it (`load.py`)."""


FieldPath = tuple[str, ...]
"""Field names from the top model down to a setting, e.g. ("link", "rate_gbps")."""


def one_of(choices: tuple[str, ...]) -> AfterValidator:
    """A string that must be one of `choices` (the message lists them, e.g. "must be a, b or c")."""
    listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be {listed}, got {value!r}")
        return value

    return AfterValidator(check)


class Settings(BaseModel):
    """A group of file settings: frozen, unknown keys rejected, and any invalid value raised as a
    `TopologyError` that names the key (also when built in code, not only when read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise TopologyError(describe(exc, type(self))) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, validated like a new one."""
        return type(self)(
            **{**{name: getattr(self, name) for name in type(self).model_fields}, **changes}
        )


def file_places(model: type[Settings], prefix: FieldPath = ()) -> Iterator[tuple[FieldPath, At]]:
    """Every setting of `model` with its place in the file, in declaration order."""
    for name, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, Settings):
            yield from file_places(nested, (*prefix, name))
            continue
        (at,) = [m for m in info.metadata if isinstance(m, At)]
        yield (*prefix, name), at


def nest(
    raw: dict[str, Any], model: type[Settings], resolve: Callable[[str], str]
) -> dict[str, Any]:
    """A parsed TOML document as `model`'s (nested) input; relative paths through `resolve`.
    Raises `TopologyError` for an unknown section or key, or a section that is not a table."""
    places = {(at.section, at.key): (path, at) for path, at in file_places(model)}
    sections = {section for section, _ in places}
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if section not in sections:
            raise TopologyError(f"[{section}]: unknown section")
        if not isinstance(table, dict):
            raise TopologyError(f"{section}: expected a table ([{section}])")
        for key, value in table.items():
            if (section, key) not in places:
                raise TopologyError(f"{section}.{key}: unknown key")
            path, at = places[section, key]
            if at.relative_path and isinstance(value, str) and value:
                value = resolve(value)
            target = values
            for name in path[:-1]:
                target = target.setdefault(name, {})
            target[path[-1]] = value
    return values


def dump(values: Settings) -> str:
    """The settings as a TOML file that `nest` + validation read back to equal settings."""
    tables: dict[str, list[str]] = {}
    for path, at in file_places(type(values)):
        value: Any = values
        for name in path:
            value = getattr(value, name)
        tables.setdefault(at.section, []).append(f"{at.key} = {_toml_value(value)}")
    return "".join(
        f"[{section}]\n" + "\n".join(lines) + "\n\n" for section, lines in tables.items()
    )


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "extra_forbidden": "unknown key",
}


def describe(exc: ValidationError, model: type[Settings]) -> str:
    """The first error as one line: `section.key[index]: what is wrong`."""
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, TopologyError):  # from a nested `Settings`, whose message names its key
        return str(cause)
    return f"{_key(error['loc'], model)}: {_what(error)}".removeprefix(": ")


def _key(loc: tuple[int | str, ...], model: type[Settings]) -> str:
    keys = {path: f"{at.section}.{at.key}" for path, at in file_places(model)}
    names = tuple(str(part) for part in loc)
    for n in range(len(names), 0, -1):
        if names[:n] in keys:
            return keys[names[:n]] + "".join(f"[{i}]" for i in names[n:])
    return ".".join(names)


def _what(error: ErrorDetails) -> str:
    if error["type"] in ("value_error", "assertion_error"):
        return str(error.get("ctx", {}).get("error", error["msg"]))
    expected = _EXPECTED.get(error["type"])
    if expected is None:
        return error["msg"]
    if error["type"] == "extra_forbidden":
        return expected
    return f"{expected}, got {error['input']!r}"
