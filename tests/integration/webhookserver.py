"""A real HTTPS admission webhook server for tests and benches: a thread running http.server over TLS with a CA of
its own, each path answering AdmissionReviews as a function of the request, every review it got recorded."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# A path's behaviour: the AdmissionReview's request -> the response fields (uid and allowed are filled in), or
# raw bytes to send as they are.
Behaviour = Callable[[dict[str, Any]], "dict[str, Any] | bytes"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_serving_cert(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                      names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)
                      ) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) for the names and addresses, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(names[0] if names else ips[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def json_patch(ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}


class WebhookServer:
    """`with WebhookServer() as s:` serves https://127.0.0.1:PORT/<path> for each path in `s.paths`."""

    def __init__(self, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
                 names: tuple[str, ...] = ("localhost",)) -> None:
        self.ca_key, self.ca = ca or make_ca("webhook-test-ca")
        self.paths: dict[str, Behaviour] = {}
        self.reviews: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        cert, key = make_serving_cert(self.ca_key, self.ca, names)
        self._dir = tempfile.TemporaryDirectory()
        d = Path(self._dir.name)
        (d / "tls.crt").write_bytes(cert)
        (d / "tls.key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def ca_bundle(self) -> str:
        """The CA as a clientConfig's caBundle (base64 of the PEM)."""
        return base64.b64encode(self.ca.public_bytes(serialization.Encoding.PEM)).decode()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path}"

    def got(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.reviews.get(path, []))

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._dir.cleanup()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle holds the body for the client's ACK.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0].lstrip("/")
                review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                review["_query"] = self.path.partition("?")[2]
                with server.lock:
                    server.reviews.setdefault(path, []).append(review)
                behaviour = server.paths.get(path, lambda _r: {})
                out = behaviour(review["request"])
                if isinstance(out, bytes):
                    body = out
                else:
                    response = {"uid": review["request"]["uid"], "allowed": True, **out}
                    body = json.dumps({"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                                       "kind": "AdmissionReview", "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def slow(seconds: float) -> Behaviour:
    def behaviour(_request: dict[str, Any]) -> dict[str, Any]:
        time.sleep(seconds)
        return {}
    return behaviour
