"""The Authorization header read as Kubernetes' bearer token authenticator reads it, and what follows from it."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubesat.auth.authn import AuthenticationFailed, RequestAuthenticator, TokenResult, bearer_token
from kubesat.auth.user import UserInfo

# Kubernetes' own cases (bearertoken_test.go), then the edges of the same rules.
TOKEN_CASES = [
    ("Bearer token", "token"),
    ("Bearer token a", "token"),  # fields after the token are ignored
    ("Bearer token a b c", "token"),
    ("Bearer token   a", "token"),
    ("", ""),
    ("Bearer", ""),
    ("bear token", ""),
    ("Bearer: token", ""),
    ("Basic 123", ""),
    ("Bearer ", ""),  # empty bearer token
    ("Bearer  TOKEN", ""),  # two spaces: the second field is empty
    ("Bearer TOKEN ", "TOKEN"),  # surrounding whitespace is trimmed first
    (" \tBearer TOKEN\t \r\n", "TOKEN"),
    ("bearer TOKEN", "TOKEN"),
    ("BEARER TOKEN", "TOKEN"),
    ("Bearer\tTOKEN", ""),  # only a space separates
    ("Bearer TOKEN\tx", "TOKEN\tx"),
    ("Token TOKEN", ""),
    ("Bearer TOKEN\xc2\xa0", "TOKEN"),  # UTF-8 no-break space (the header arrives latin-1 decoded): trimmed
    ("Bearer TOKEN\xa0", "TOKEN\xa0"),  # a lone 0xA0 byte is not UTF-8, so not a space to Go
]


@pytest.mark.parametrize("header,token", TOKEN_CASES)
def test_bearer_token(header: str, token: str) -> None:
    assert bearer_token(header) == token


class Tokens:
    """Accepts exactly the token "good"; says "invalid" about any other."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] | None) -> TokenResult | None:
        self.seen.append(token)
        if token == "good":
            return TokenResult(UserInfo("system:serviceaccount:ns:app"))
        raise AuthenticationFailed("invalid")


ALICE = x509.NameAttribute(NameOID.COMMON_NAME, "alice")


def certificate_der(attribute: x509.NameAttribute = ALICE) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([attribute])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def authenticate(header: str | None, *, anonymous: bool = True, cert: bytes | None = None) -> tuple[str, list[str]]:
    authn = RequestAuthenticator(anonymous=anonymous)
    tokens = Tokens()
    authn.token_authenticators.append(tokens)
    try:
        name = asyncio.run(authn.authenticate(cert, header)).user.name
    except AuthenticationFailed:
        name = "401"
    return name, tokens.seen


@pytest.mark.parametrize("header", ["Bearer good", "Bearer good ", "bearer good extra"])
def test_a_bearer_token_authenticates(header: str) -> None:
    assert authenticate(header) == ("system:serviceaccount:ns:app", ["good"])


@pytest.mark.parametrize("anonymous", [True, False])
def test_an_invalid_bearer_token_is_401_never_anonymous(anonymous: bool) -> None:
    assert authenticate("Bearer bad", anonymous=anonymous) == ("401", ["bad"])


@pytest.mark.parametrize("header", ["Bearer  good", "Bearer", "Bearer\tgood", "Basic Z29vZA=="])
def test_a_header_without_a_bearer_token_is_no_credential(header: str) -> None:
    # As in Kubernetes: the token authenticators never see it; anonymous (or 401 without it) decides.
    assert authenticate(header) == ("system:anonymous", [])
    assert authenticate(header, anonymous=False) == ("401", [])


def test_a_header_without_a_bearer_token_leaves_the_client_certificate() -> None:
    der = certificate_der()
    assert authenticate("Bearer  good", anonymous=False, cert=der) == ("alice", [])


@pytest.mark.parametrize("header", ["Bearer good", "Bearer bad"])
def test_a_client_certificate_wins_over_any_bearer_token(header: str) -> None:
    # kube-apiserver's x509 authenticator comes before the token authenticators; the first success wins.
    assert authenticate(header, anonymous=False, cert=certificate_der()) == ("alice", [])


def test_a_certificate_without_a_common_name_falls_through_to_the_token() -> None:
    der = certificate_der(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no-cn"))
    assert authenticate("Bearer good", anonymous=False, cert=der) == ("system:serviceaccount:ns:app", ["good"])
    assert authenticate(None, anonymous=True, cert=der) == ("401", [])


class _Caching:
    """A token authenticator that hands out the same result object for a token, as a caching one does."""

    def __init__(self) -> None:
        self.results: dict[str, TokenResult] = {}

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] | None) -> TokenResult | None:
        if token not in self.results:
            self.results[token] = TokenResult(UserInfo(f"user-{token}", groups=("g",)), ("api",),
                                              (("k", "v"),), ("w",))
        return self.results[token]


def test_the_same_result_comes_back_completed_and_the_same() -> None:
    authn = RequestAuthenticator()
    cached = _Caching()
    authn.token_authenticators.append(cached)
    first = asyncio.run(authn.authenticate_token("a"))
    assert first.user.groups == ("g", "system:authenticated")
    assert (first.audiences, first.annotations, first.warnings) == (("api",), (("k", "v"),), ("w",))
    assert cached.results["a"].user.groups == ("g",)  # the authenticator's own result is left as it was
    again = asyncio.run(authn.authenticate_token("a"))
    assert again is first and again.user is first.user
    other = asyncio.run(authn.authenticate_token("b"))
    assert other.user.name == "user-b" and other.user.groups == ("g", "system:authenticated")
    # A new result object for the same token (the authenticator's cache expired): completed anew.
    cached.results["a"] = TokenResult(UserInfo("user-a2"))
    assert asyncio.run(authn.authenticate_token("a")).user == UserInfo("user-a2", groups=("system:authenticated",))
