"""``GET /openapi.json``: the API's OpenAPI 3.1 description, generated from its routes.

Theory of operation. Every route of the HTTP API is a :class:`DescribedRoute`: a Starlette
route that also carries an :class:`Operation` (summary, query parameters, request body
and responses, their JSON Schemas from ledger/node/api_schemas.py). :func:`describe` walks
the application's routes and writes the document from them: paths and methods from the
routing table itself, path parameters from the route's path template (their types from
its convertors), the rest from the operation. A route without an operation, or an
operation naming path parameters its template lacks, is refused when the document is
built, so the description cannot drift from the routing table.

:func:`check` validates a value against a schema of the document (the subset of JSON
Schema the document uses): the tests hold real responses and the client's requests to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.routing import BaseRoute, Route

OPENAPI_VERSION: Final = "3.1.0"
JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


#: Every error answer's schema (JSON whatever the request's form).
ERROR_REF: Final = ref("Error")


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter."""

    name: str
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    description: str
    schema: Schema | None = None
    media_type: str = JSON


@dataclass(frozen=True, slots=True)
class Operation:
    """What one route does, for the description (its path and method come from the route)."""

    summary: str
    tag: str
    responses: dict[int, Response]
    description: str = ""
    path_params: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()
    body: Schema | None = None
    operation_id: str = ""
    #: The MessagePack form of the body (ledger/node/api_binary.py), when the route takes
    #: one; its answers then come in MessagePack too when the client's Accept asks.
    msgpack_body: Schema | None = None


class DescribedRoute(Route):
    """A Starlette route with its :class:`Operation` (one method per route)."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], method: str, operation: Operation
    ) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.operation = operation


class UndescribedRoute(ValueError):
    """A route without an operation, or whose operation does not match its path."""


_CONVERTOR_TYPES: Final = {
    "string": "string", "path": "string", "uuid": "string", "integer": "integer", "float": "number",
}  # fmt: skip


def _path_params(route: DescribedRoute) -> list[dict[str, Any]]:
    documented = {p.name: p for p in route.operation.path_params}
    in_path = route.param_convertors
    if set(documented) != set(in_path):
        raise UndescribedRoute(
            f"{route.method} {route.path}: path parameters {sorted(in_path)} but the operation "
            f"describes {sorted(documented)}"
        )
    params = []
    for name, convertor in in_path.items():
        param = documented[name]
        kind = _CONVERTOR_TYPES.get(type(convertor).__name__.removesuffix("Convertor").lower())
        schema = {"type": kind or "string", **param.schema}
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": param.description,
                "schema": schema,
            }
        )
    return params


def _operation(route: DescribedRoute) -> dict[str, Any]:
    op = route.operation
    doc: dict[str, Any] = {
        "operationId": op.operation_id or route.name,
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        doc["description"] = op.description
    params = _path_params(route) + [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": p.schema,
        }
        for p in op.query
    ]
    if params:
        doc["parameters"] = params
    if op.body is not None:
        content = {JSON: {"schema": op.body}}
        if op.msgpack_body is not None:
            content[MSGPACK] = {"schema": op.msgpack_body}
        doc["requestBody"] = {"required": True, "content": content}
    doc["responses"] = {
        str(status): {
            "description": response.description,
            **({"content": _answer_content(op, response)} if response.schema is not None else {}),
        }
        for status, response in sorted(op.responses.items())
    }
    return doc


def _answer_content(op: Operation, response: Response) -> dict[str, Any]:
    content = {response.media_type: {"schema": response.schema}}
    if op.msgpack_body is not None and response.schema != ERROR_REF:
        content[MSGPACK] = {"schema": response.schema}  # errors stay JSON
    return content


def describe(
    routes: Sequence[BaseRoute],
    *,
    title: str,
    version: str,
    description: str,
    components: dict[str, Schema],
) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (see the module docstring)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, DescribedRoute):
            raise UndescribedRoute(f"{getattr(route, 'path', route)!r} has no operation")
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": components},
    }


# ---------------------------------------------------------------------------- checking


@dataclass
class _Checker:
    components: dict[str, Schema]
    problems: list[str] = field(default_factory=list)

    def check(self, schema: Schema, value: Any, where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            self.check(self.components[name], value, where)
            return
        if "anyOf" in schema:
            if not any(not _Checker(self.components)._run(s, value) for s in schema["anyOf"]):
                self.problems.append(f"{where}: matches none of anyOf")
            return
        types = schema.get("type")
        if types is not None:
            allowed = [types] if isinstance(types, str) else list(types)
            if not any(_is_type(value, t) for t in allowed):
                self.problems.append(f"{where}: {type(value).__name__} is not {'|'.join(allowed)}")
                return
        if "enum" in schema and value not in schema["enum"]:
            self.problems.append(f"{where}: {value!r} not in {schema['enum']}")
        if isinstance(value, dict):
            self._object(schema, value, where)
        elif isinstance(value, list) and "items" in schema:
            if len(value) < schema.get("minItems", 0):
                self.problems.append(f"{where}: fewer than {schema['minItems']} items")
            for i, item in enumerate(value):
                self.check(schema["items"], item, f"{where}[{i}]")
        elif isinstance(value, str) and "pattern" in schema:
            if re.search(schema["pattern"], value) is None:
                self.problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
        elif isinstance(value, int) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                self.problems.append(f"{where}: {value} < {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                self.problems.append(f"{where}: {value} > {schema['maximum']}")

    def _object(self, schema: Schema, value: dict[str, Any], where: str) -> None:
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                self.problems.append(f"{where}: missing {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                self.check(properties[name], item, f"{where}.{name}")
            elif extra is False:
                self.problems.append(f"{where}: unexpected {name!r}")
            elif isinstance(extra, dict):
                self.check(extra, item, f"{where}.{name}")

    def _run(self, schema: Schema, value: Any) -> list[str]:
        self.check(schema, value, "$")
        return self.problems


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
    }.get(name, False)


def check(document: dict[str, Any], schema: Schema, value: Any) -> list[str]:
    """Where ``value`` breaks ``schema`` (resolving references in ``document``); [] if nowhere."""
    return _Checker(document["components"]["schemas"])._run(schema, value)
