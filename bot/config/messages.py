"""Configuration problems in plain words, located by key path and, where it can be found, by line.

pydantic's messages ("Input should be 'a' or 'b'", "Extra inputs are not permitted") describe its own
validation; an operator needs what the key must look like, a suggestion for a misspelt key, and the line
to open. tomllib keeps no positions, so `TomlLines` finds them from the text: header lines and `key =`
lines, which is how a configuration file is written (a key set inside an inline table is located at its
table's line).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel
from pydantic_core import ErrorDetails

Location = tuple[int | str, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\s-]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*=")
_SECRET_WORDS = ("password", "secret", "token", "key")

_PLAIN: Mapping[str, str] = {
    "missing": "is required but missing",
    "bool_type": "must be true or false, without quotes",
    "bool_parsing": "must be true or false, without quotes",
    "int_type": "must be a whole number, without quotes",
    "int_parsing": "must be a whole number, without quotes",
    "int_from_float": "must be a whole number, without quotes",
    "float_type": "must be a number, without quotes",
    "float_parsing": "must be a number, without quotes",
    "string_type": 'must be a string in quotes ("…")',
    "path_type": 'must be a file path in quotes ("/…")',
    "list_type": 'must be a list in brackets, e.g. ["a", "b"]',
    "model_type": "must be a table ([name] or name = { … })",
    "model_attributes_type": "must be a table ([name] or name = { … })",
    "dict_type": "must be a table ([name] or name = { … })",
}


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bound(kind: str, ctx: Mapping[str, Any]) -> str | None:
    bounds = {
        "greater_than": ("gt", "must be greater than {}"),
        "greater_than_equal": ("ge", "must be at least {}"),
        "less_than": ("lt", "must be less than {}"),
        "less_than_equal": ("le", "must be at most {}"),
        "too_short": ("min_length", "must have at least {} item(s)"),
        "too_long": ("max_length", "must have at most {} item(s)"),
        "string_too_short": ("min_length", "must be at least {} character(s) long"),
        "string_too_long": ("max_length", "must be at most {} character(s) long"),
        "string_pattern_mismatch": ("pattern", "must match the pattern {}"),
    }
    if kind not in bounds:
        return None
    name, template = bounds[kind]
    return template.format(_number(ctx[name]))


def _fields_at(root: type[BaseModel], loc: Location) -> list[str]:
    """The keys the table at `loc` accepts (empty when `loc` does not lead to a model)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for inner in get_args(annotation):
        found = _model_in(inner)
        if found is not None:
            return found
    return None


def _unknown_key(loc: Location, root: type[BaseModel]) -> str:
    key = str(loc[-1])
    message = "unknown key"
    suggestion = difflib.get_close_matches(key, _fields_at(root, loc[:-1]), n=1, cutoff=0.7)
    if suggestion:
        message += f"; did you mean `{suggestion[0]}`?"
    if any(word in key.lower() for word in _SECRET_WORDS) and not key.endswith(("_env", "_file")):
        message += (
            " (secrets are never written in this file: name an environment variable with a *_env key or "
            "a file with a *_file key)"
        )
    return message


def plain_message(item: ErrorDetails, root: type[BaseModel]) -> str:
    """One pydantic error in an operator's words."""
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(tuple(item["loc"]), root)
    if kind == "literal_error":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    if kind == "value_error":
        return item["msg"].removeprefix("Value error, ")
    return _PLAIN.get(kind) or _bound(kind, ctx) or item["msg"]


def _key_parts(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split("."))


class TomlLines:
    """Line numbers of the tables and keys of one TOML text, by key path (`("accounts", 0, "id")`)."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Location, int] = {}
        self._arrays: dict[Location, int] = {}  # array-of-tables path -> index of its latest element
        table: Location = ()
        in_multiline = False
        for number, line in enumerate(text.splitlines(), 1):
            opens_or_closes = (line.count('"""') + line.count("'''")) % 2 == 1
            if in_multiline:  # inside a multi-line string: nothing here is a key
                in_multiline = not opens_or_closes
                continue
            in_multiline = opens_or_closes
            header = _HEADER.match(line)
            if header:
                table = self._table(_key_parts(header.group(2)), header.group(1) == "[[")
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault(table + _key_parts(key.group(1)), number)

    def _table(self, names: tuple[str, ...], array: bool) -> Location:
        path: Location = ()
        for name in names[:-1] if array else names:
            path += (name,)
            if path in self._arrays:
                path += (self._arrays[path],)
        if not array:
            return path
        path += (names[-1],)
        index = self._arrays.get(path, -1) + 1
        self._arrays[path] = index
        return (*path, index)

    def line(self, loc: Location) -> int | None:
        """The line of `loc`, else of the nearest table or key that contains it; None if none is found."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self._lines:
                return self._lines[loc[:end]]
        return None


def parse_location(text: str) -> Location | None:
    """`sensors[0].transport` -> ("sensors", 0, "transport"); None when `text` is not a key path."""
    if not re.fullmatch(r"[a-z_]+(?:\[\d+\])*(?:\.[a-z_]+(?:\[\d+\])*)*", text):
        return None
    loc: list[int | str] = []
    for name, index in re.findall(r"([a-z_]+)|\[(\d+)\]", text):
        loc.append(name if name else int(index))
    return tuple(loc)


def format_location(loc: Location) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
