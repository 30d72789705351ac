"""Non-resource endpoints: health, version, discovery and OpenAPI documents."""

from __future__ import annotations

import platform
from typing import Any

from kubesat import __version__, errors
from kubesat.apimachinery import codec
from kubesat.api.app import App, Request, Response, json_response
from kubesat.api import discovery, openapi

KUBERNETES_VERSION = "v1.32.4"


def version_info() -> dict[str, Any]:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": f"{KUBERNETES_VERSION}+kubesat-{__version__}",
        "gitCommit": "kubesat",
        "gitTreeState": "clean",
        "buildDate": "2026-11-22T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": f"{platform.system().lower()}/{_arch()}",
    }


def _arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _text(status: int, body: str) -> Response:
    return Response(status, body.encode(), "text/plain; charset=utf-8")


def install(app: App, server_address: str) -> None:
    """Route the health checks, /version, discovery and the OpenAPI documents on `app`."""
    _install_health(app)
    _install_version(app)
    _install_discovery(app, server_address)
    _install_openapi(app)


def _install_health(app: App) -> None:
    """/healthz, /livez and /readyz, with or without a named check after them."""

    async def healthz(req: Request) -> Response:
        if req.path == "/readyz" and not app.ready:
            return _text(500, "[-]kubesat not ready\nreadyz check failed")
        if "verbose" in req.query:  # as kube-apiserver: present, whatever its value
            name = req.path.strip("/")
            return _text(200, f"[+]ping ok\n[+]etcd ok\n{name} check passed\n")
        return _text(200, "ok")

    for p in ("/healthz", "/livez", "/readyz"):
        app.route(p, healthz)
    app.route_prefix("/healthz/", healthz)
    app.route_prefix("/livez/", healthz)
    app.route_prefix("/readyz/", healthz)


def _install_version(app: App) -> None:
    version = codec.dump_json(version_info())

    async def get_version(req: Request) -> Response:
        return Response(200, version)

    app.route("/version", get_version)
    app.route("/version/", get_version)


def _install_discovery(app: App, server_address: str) -> None:
    """The discovery documents: /api and /apis, and each group and group version below them."""

    async def api_root(req: Request) -> Response:
        agg = discovery.accept_wants_aggregated(req.headers.get("accept", ""))
        if agg:
            return _discovery_response(discovery.aggregated_discovery(True, agg), agg)
        return json_response(200, discovery.api_versions(server_address))

    async def apis_root(req: Request) -> Response:
        agg = discovery.accept_wants_aggregated(req.headers.get("accept", ""))
        if agg:
            return _discovery_response(discovery.aggregated_discovery(False, agg), agg)
        return json_response(200, discovery.api_group_list())

    app.route("/api", api_root)
    app.route("/api/", api_root)
    app.route("/apis", apis_root)
    app.route("/apis/", apis_root)

    async def group_or_version(req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        doc = None
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.api_resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.api_resource_list(parts[1], parts[2])
        if doc is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        return json_response(200, doc, req)

    app.route_prefix("/api/", group_or_version)
    app.route_prefix("/apis/", group_or_version)


def _install_openapi(app: App) -> None:
    """/openapi/v2 (JSON or protobuf, with an ETag) and /openapi/v3 (the index and each document)."""

    async def openapi_v2(req: Request) -> Response:
        content_type = openapi.openapi_v2_media_type(req.headers.get("accept", ""))
        if content_type is None:
            raise errors.not_acceptable(
                f"only {openapi.V2_JSON} and {openapi.V2_PROTOBUF} are supported for /openapi/v2")
        etag = openapi.openapi_v2_etag()
        headers = [(b"etag", etag.encode()), (b"vary", b"Accept")]
        if req.method in ("GET", "HEAD") and openapi.etag_matches(req.headers.get("if-none-match", ""), etag):
            return Response(304, b"", content_type, headers)
        body = openapi.openapi_v2() if content_type == openapi.V2_JSON else openapi.openapi_v2_protobuf()
        return Response(200, body, content_type, headers)

    async def openapi_v3(req: Request) -> Response:
        if req.path.rstrip("/") == "/openapi/v3":
            return json_response(200, openapi.openapi_v3_index(openapi.openapi_v3_hash))
        doc = openapi.openapi_v3_group(req.path[len("/openapi/v3/"):])
        if doc is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        etag = f'"{openapi.openapi_v3_hash(req.path[len("/openapi/v3/"):])}"'
        return Response(200, doc, headers=[(b"etag", etag.encode())])

    app.route("/openapi/v2", openapi_v2)
    app.route("/openapi/v3", openapi_v3)
    app.route_prefix("/openapi/v3/", openapi_v3)


def _discovery_response(doc: dict[str, Any], version: str) -> Response:
    ct = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    return Response(200, codec.dump_json(doc), ct)
