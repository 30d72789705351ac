"""Token endpoints: TokenRequest (serviceaccounts/token), TokenReview, and OIDC issuer discovery."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

import orjson

from kubesat import errors
from kubesat.apimachinery import codec
from kubesat.api.app import App, Request, Response, json_response
from kubesat.api.resources import ResourceHandler
from kubesat.auth.authn import AuthenticationFailed, RequestAuthenticator
from kubesat.auth.user import UserInfo
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry, rfc3339
from kubesat.tokens.issuer import MAX_EXPIRATION, MIN_EXPIRATION, Issued, KeySource, TokenIssuer, TokenOptions

log = logging.getLogger("kubesat.tokens")

SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
TOKEN_GROUP = "authentication.k8s.io"
_BINDABLE = {kind: builtin_kind("v1", kind) for kind in ("Pod", "Secret", "Node")}
NODES = builtin_kind("v1", "Node")


def _tr_invalid(name: str, errs: list[errors.FieldError]) -> errors.StatusError:
    return errors.invalid("TokenRequest", name, errs, TOKEN_GROUP)


_Ref = tuple[str, str] | None  # a bound object's (name, uid)


def _check_request_meta(meta: dict[str, Any], ns: str, sa_name: str) -> None:
    """A TokenRequest's own name and namespace, when given, are the service account's."""
    if meta.get("name") and meta["name"] != sa_name:
        raise _tr_invalid(sa_name, [errors.invalid_value("metadata.name", meta["name"],
                                                         "must match the service account name if specified")])
    if meta.get("namespace") and meta["namespace"] != ns:
        raise _tr_invalid(sa_name, [errors.invalid_value("metadata.namespace", meta["namespace"],
                                                         "must match the service account namespace if specified")])


def _expiration_seconds(spec: dict[str, Any]) -> int:
    """spec.expirationSeconds, an hour when absent; 422 outside Kubernetes' bounds."""
    exp = spec.get("expirationSeconds")
    if exp is None:
        return 3600
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise errors.bad_request("spec.expirationSeconds must be an integer")
    if exp < MIN_EXPIRATION:
        raise _tr_invalid("", [errors.invalid_value("spec.expirationSeconds", exp,
                                                    "may not specify a duration less than 10 minutes")])
    if exp > MAX_EXPIRATION:
        raise _tr_invalid("", [errors.invalid_value("spec.expirationSeconds", exp,
                                                    "may not specify a duration larger than 2^32 seconds")])
    return exp


def _audit_issued(req: Request, service_account: str, audiences: list[str], issued: Issued,
                  ref: dict[str, Any] | None) -> None:
    """The audit annotations of an issued token: its credential id, and what it was issued for (never the token)."""
    req.audit["authentication.kubernetes.io/issued-credential-id"] = f"JTI={issued.jti}"
    bound = f"{ref.get('kind')}/{ref.get('name')}" if ref else ""
    req.audit["kubesat.io/token-request"] = orjson.dumps({
        "serviceAccount": service_account, "audiences": audiences,
        "expirationSeconds": issued.expiration_seconds,
        "expirationTimestamp": rfc3339(issued.expiration_timestamp), "jti": issued.jti,
        **({"boundObject": bound} if bound else {}),
    }).decode()


class TokenEndpoints:
    def __init__(self, registry: Registry, issuer: TokenIssuer, authenticator: RequestAuthenticator,
                 options: TokenOptions) -> None:
        self.registry = registry
        self.issuer = issuer
        self.authenticator = authenticator
        self.options = options
        # id(user) -> (user, its UserInfo JSON): a reviewed token that authentication has cached comes back
        # with the same UserInfo, whose JSON is then made once (holding the user keeps its id unused).
        self._users: dict[int, tuple[UserInfo, orjson.Fragment]] = {}

    def _user_json(self, user: UserInfo) -> orjson.Fragment:
        hit = self._users.get(id(user))
        if hit is not None and hit[0] is user:
            return hit[1]
        fragment = orjson.Fragment(orjson.dumps(user.to_api()))
        if len(self._users) >= 1024:
            self._users.clear()
        self._users[id(user)] = (user, fragment)
        return fragment

    # --------------------------------------------------------------- TokenRequest
    async def token_request(self, req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        ns = req.info.namespace
        sa_name = req.info.name
        if not ns:
            raise errors.bad_request("namespace is required")
        codec.check_kind(body, f"{TOKEN_GROUP}/v1", "TokenRequest")
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            raise errors.bad_request("TokenRequest metadata and spec must be objects")
        _check_request_meta(meta, ns, sa_name)
        sa = await self.registry.get(SERVICEACCOUNTS, ns, sa_name)
        sa_uid = sa["metadata"]["uid"]
        if meta.get("uid") and meta["uid"] != sa_uid:
            raise errors.conflict("TokenRequest", sa_name,
                                  f"the UID in the token request ({meta['uid']}) does not match the UID of the "
                                  f"service account ({sa_uid})", TOKEN_GROUP)
        audiences = spec.get("audiences") or list(self.options.audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise errors.bad_request("spec.audiences must be a list of strings")
        exp = _expiration_seconds(spec)
        pod = secret = node = None
        ref = spec.get("boundObjectRef")
        if ref:
            if not isinstance(ref, dict):
                raise errors.bad_request("spec.boundObjectRef must be an object")
            pod, secret, node = await self._bound_object(ns, sa_name, ref)
        try:
            issued = await self.issuer.issue_bound_async(
                namespace=ns, sa_name=sa_name, sa_uid=sa_uid, audiences=audiences, expiration_seconds=exp,
                pod=pod, secret=secret, node=node,
            )
        except ValueError as e:
            raise errors.internal(str(e)) from None
        except RuntimeError as e:
            raise errors.internal(f"failed to generate token: {e}") from None
        req.warnings.extend(issued.warnings)
        _audit_issued(req, f"{ns}/{sa_name}", audiences, issued, ref)
        out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": issued.expiration_seconds}
        if ref:
            out_spec["boundObjectRef"] = ref
        return json_response(201, {
            "kind": "TokenRequest",
            "apiVersion": f"{TOKEN_GROUP}/v1",
            "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": self.registry.now()},
            "spec": out_spec,
            "status": {"token": issued.token, "expirationTimestamp": rfc3339(issued.expiration_timestamp)},
        }, req)

    async def _bound_object(self, ns: str, sa_name: str, ref: dict[str, Any]) -> tuple[_Ref, _Ref, _Ref]:
        """The (name, uid) of the pod, secret and node a token is bound to; the pod's node too."""
        kind = ref.get("kind", "")
        api_version = ref.get("apiVersion", "") or ""
        group, _, version = api_version.rpartition("/")
        if not version:
            version = api_version
        info = _BINDABLE.get(kind) if group == "" else None
        if info is None:
            raise errors.bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
        name = ref.get("name", "")
        if not name:
            raise _tr_invalid(sa_name, [errors.required("spec.boundObjectRef.name")])
        obj = await self.registry.get(info, ns if info.namespaced else "", name)
        uid = obj["metadata"]["uid"]
        want_uid = ref.get("uid")
        if want_uid and want_uid != uid:
            raise errors.StatusError(409, "Conflict",
                                     f'Operation cannot be fulfilled on {kind} "{name}": the UID in the bound object '
                                     f"reference ({want_uid}) does not match the UID in record. The object might have "
                                     "been deleted and then recreated",
                                     details={"name": name, "kind": kind})
        if kind == "Pod":
            pod_sa = (obj.get("spec") or {}).get("serviceAccountName") or "default"
            if pod_sa != sa_name:
                raise errors.bad_request(f'cannot bind token for serviceaccount "{sa_name}" to pod running with '
                                         'different serviceaccount name.')
            node_name = (obj.get("spec") or {}).get("nodeName")
            node = None
            if node_name:
                n = await self.registry.get_or_none(NODES, "", node_name)
                node = (node_name, n["metadata"]["uid"] if n else "")
            return (name, uid), None, node
        if kind == "Secret":
            return None, (name, uid), None
        return None, None, (name, uid)

    # ---------------------------------------------------------------- TokenReview
    async def token_review(self, req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        if req.info.namespace:
            raise errors.bad_request(f"namespace is not allowed on this type: {req.info.namespace}")
        codec.check_kind(body, res.api_version, "TokenReview")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        token = spec.get("token") or ""
        if not isinstance(token, str) or not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        auds = spec.get("audiences") or None
        if auds is not None and (not isinstance(auds, list) or not all(isinstance(a, str) for a in auds)):
            raise errors.bad_request("spec.audiences must be a list of strings")
        status: dict[str, Any]
        try:
            result = await self.authenticator.authenticate_token(token, tuple(auds) if auds else None)
        except AuthenticationFailed as e:
            status = {"authenticated": False, "user": {}, "error": e.reason}
        else:
            user: Any = result.user.to_api() if codec.wants_yaml(req.headers.get("accept")) \
                else self._user_json(result.user)
            status = {"authenticated": True, "user": user, "audiences": list(result.audiences)}
            req.audit.update(result.annotations)
        out_spec: dict[str, Any] = {"token": token}
        if auds:
            out_spec["audiences"] = auds
        # The token is echoed back in spec, as Kubernetes does; it never reaches a log.
        return json_response(201, {
            "kind": "TokenReview", "apiVersion": res.api_version,
            "metadata": {"creationTimestamp": None},
            "spec": out_spec,
            "status": status,
        }, req)


class Discovery:
    """OIDC issuer discovery documents, built once per key set."""

    def __init__(self, keys: KeySource, options: TokenOptions, external_address: str) -> None:
        self.keys = keys
        self.options = options
        self.external_address = external_address
        self._cache: tuple[int, bytes, bytes] | None = None

    def enabled(self) -> str:
        """'' when the endpoints are served, else why not (as kube-apiserver logs it)."""
        iss = self.options.issuers[0] if self.options.issuers else ""
        if not iss:
            return "empty issuer URL"
        u = urlparse(iss)
        if u.scheme != "https":
            return f"issuer URL must use https scheme, got: {iss}"
        if u.query:
            return f"issuer URL may not include a query, got: {iss}"
        if u.fragment:
            return f"issuer URL may not include a fragment, got: {iss}"
        return ""

    def documents(self) -> tuple[bytes, bytes]:
        ks = self.keys.keyset()
        ident = id(ks)
        if self._cache is not None and self._cache[0] == ident:
            return self._cache[1], self._cache[2]
        jwks = ks.jwks()
        jwks_uri = self.options.jwks_uri or f"https://{self.external_address}/openid/v1/jwks"
        config = {
            "issuer": self.options.issuers[0],
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ks.algorithms(),
        }
        out = (orjson.dumps(config), orjson.dumps(jwks))
        self._cache = (ident, out[0], out[1])
        return out


def install(app: App, resources: ResourceHandler, registry: Registry, issuer: TokenIssuer,
            authenticator: RequestAuthenticator, options: TokenOptions, keys: KeySource, external_address: str) -> None:
    ep = TokenEndpoints(registry, issuer, authenticator, options)
    resources.create_handlers[("", "serviceaccounts", "token")] = ep.token_request
    resources.create_handlers[(TOKEN_GROUP, "tokenreviews", "")] = ep.token_review
    disc = Discovery(keys, options, external_address)
    why = disc.enabled()
    if why:
        log.warning("OIDC issuer discovery is not served: %s", why)
        return
    cache = [(b"cache-control", b"public, max-age=3600")]

    async def openid_configuration(req: Request) -> Response:
        return Response(200, disc.documents()[0], "application/json", list(cache))

    async def jwks(req: Request) -> Response:
        return Response(200, disc.documents()[1], "application/jwk-set+json", list(cache))

    app.route("/.well-known/openid-configuration", openid_configuration)
    app.route("/openid/v1/jwks", jwks)
