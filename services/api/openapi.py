"""The OpenAPI 3 document of the API, built from the route table (routing.py): every API route, its parameters,
body, answers and the role it needs. Pure: the table in, the document out."""
from __future__ import annotations

import re
from typing import Any

from .routing import PUBLIC, Route

ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "string", "description": "what is wrong, in words"},
                        "field": {"type": "string", "description": "the input at fault (vm, restore_point, name...)"}}}
STATUS_WORDS = {400: "bad input (the field is named)", 401: "no login, or it expired",
                403: "the role does not allow it, or a cross-site request", 404: "no such thing (the field is named)",
                409: "already exists or in the way", 429: "too many wrong passwords: try again after Retry-After",
                502: "the engine, the repository or the broker failed", 503: "not configured (no engine)"}


def operation_id(route: Route) -> str:
    """Unique by construction: the method and the path's words (`get_restore_points_backup_id_files`)."""
    words = re.findall(r"[a-z0-9]+", route.openapi_path().removeprefix("/api").lower())
    return "_".join([route.method.lower(), *words])


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "operationId": operation_id(route)}
    if route.tag:
        op["tags"] = [route.tag]
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in route.path_params()]
    params += [{"name": p.name, "in": "query", "required": p.required, "description": p.description,
                "schema": p.schema} for p in route.query]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    ok: dict[str, Any] = {"description": "done"}
    if route.content_type == "application/json":
        ok["content"] = {"application/json": {"schema": route.returns or {"type": "object"}}}
    else:
        ok["content"] = {route.content_type: {"schema": {"type": "string", **(
            {"format": "binary"} if route.content_type == "application/octet-stream" else {})}}}
    responses: dict[str, Any] = {"200": ok}
    codes = set(route.errors) | ({400} if route.body is not None else set())
    if route.role is PUBLIC:
        op["security"] = []
    else:
        codes |= {401, 403}
        op["description"] = f"Needs the {route.role} role (or admin)." if route.role == "operator" else \
            "Needs the admin role."
    for code in sorted(codes):
        responses[str(code)] = {"description": STATUS_WORDS.get(code, "refused"),
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    op["responses"] = responses
    return op


def document(routes: list[Route], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.kind != "api":
            continue
        paths.setdefault(route.openapi_path(), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": "olvm-backup API", "version": version,
                 "description": "Back up, restore and browse oVirt/OLVM VMs; policies and the audit trail. Log in "
                                "with POST /api/login and send the token as `Authorization: Bearer TOKEN`."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "olvm_session",
                            "description": "the console's session; state-changing requests also need X-CSRF-Token"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }
