"""Reading a request's JSON body and its fields, each refusal a 400 that names the field."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import bad_input

MAX_BODY = 1 << 20
_MISSING = object()


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise bad_input("body", f"larger than {MAX_BODY} bytes")
    try:  # JSON is UTF-8 (RFC 8259), whatever charset the Content-Type names
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_input("body", f"not UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise bad_input("body", f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise bad_input("body", "must be a JSON object")
    return doc


def field(doc: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING, *,
          choices: tuple[str, ...] = ()) -> Any:
    """`doc[name]`, of type `kind` (and one of `choices`); `default` when absent, required when none is given."""
    if name not in doc or doc[name] is None:
        if default is _MISSING:
            raise bad_input(name, "required")
        return default
    value = doc[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool) and int in kinds):
        names = " or ".join({str: "a string", bool: "true or false", int: "a whole number", float: "a number",
                             list: "a list", dict: "an object"}.get(k, k.__name__) for k in kinds)
        raise bad_input(name, f"must be {names}, not {json.dumps(value)[:40]}")
    if isinstance(value, str) and not value.strip() and default is _MISSING:
        raise bad_input(name, "must not be empty")
    if choices and value not in choices:
        raise bad_input(name, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def strings(doc: dict[str, Any], name: str) -> list[str]:
    """A list of strings (disk names...), [] when absent."""
    values = field(doc, name, list, [])
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise bad_input(f"{name}[{i}]", "must be a non-empty string")
    return values


def unknown_fields(doc: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(doc) - known)
    if extra:
        raise bad_input(extra[0], f"unknown field (known: {', '.join(sorted(known))})")
