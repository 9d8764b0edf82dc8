from __future__ import annotations

from openapi_spec_validator import validate

from keep.server.app import create_app
from keep.server.openapi import openapi_document
from keep.server.settings import Settings


def test_document_is_valid_openapi() -> None:
    validate(openapi_document())


def test_every_route_is_documented(tmp_path: object) -> None:
    from pathlib import Path

    app = create_app(Settings(data_dir=Path(str(tmp_path))))
    documented = {
        (method.upper(), path)
        for path, ops in openapi_document()["paths"].items()
        for method in ops
        if method != "parameters"
    }
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/v1", "/healthz"))
        and route.resource.canonical != "/v1/openapi.json"
    }
    assert served <= documented | {("HEAD", p) for _, p in documented}
    assert {p for _, p in documented} <= {p for _, p in served}
