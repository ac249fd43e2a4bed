"""The OpenAPI document the API serves describes exactly its routes: every route documented, nothing documented
that is not routed, each with its parameters and the refusals a caller must expect."""
from __future__ import annotations

import re

from openapi_spec_validator import validate

from olvm_backup.config import Settings
from services.api.app import make_app
from services.api.openapi import document
from services.api.routing import ROUTES

METHODS = {"get", "post", "put", "patch", "delete"}


def _routed(app) -> set[tuple[str, str]]:
    """(method, path) for every route of the router under /api/, in OpenAPI's path syntax."""
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical
        if route.method in ("HEAD", "OPTIONS") or not path.startswith("/api/"):
            continue
        out.add((route.method.lower(), re.sub(r"{([^}:]+)(:[^}]*)?}", r"{\1}", path)))
    return out


def _documented(doc) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in doc["paths"].items() for method in ops if method in METHODS}


def test_the_document_matches_the_router():
    app = make_app(Settings(), connected=False)
    doc = document(app[ROUTES], "test")
    routed, documented = _routed(app), _documented(doc)
    assert routed == documented, (f"routed, not documented: {sorted(routed - documented)}; "
                                  f"documented, not routed: {sorted(documented - routed)}")
    validate(doc)  # a valid OpenAPI 3 document (unique operation ids, schemas, parameters), as tools read it
    assert len(routed) >= 20
    for path, ops in doc["paths"].items():
        names = re.findall(r"{([^}]+)}", path)
        for method, op in ops.items():
            assert op["summary"] and "200" in op["responses"], (method, path)
            declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert declared == names, (method, path, declared)
            if op.get("security") != []:  # every route but the login: a login and a role
                assert {"401", "403"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert "400" in op["responses"], (method, path)


def test_the_served_document_is_that_of_the_running_api(api):
    token = api.client.token("oper")
    served = api.client.request("GET", "/api/openapi.json", token=token)
    assert served.status == 200
    doc = served.json()
    assert doc["openapi"].startswith("3.")
    app = make_app(Settings(), connected=False)
    assert _documented(doc) == _routed(app)
    assert doc["paths"]["/api/login"]["post"]["security"] == []
