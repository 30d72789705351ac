"""The key ring: rotation keeps old keys exactly as long as their tokens can live, whoever signed them when."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesat.pki import ClusterPKI
from kubesat.tokens.issuer import TokenIssuer, TokenOptions
from kubesat.tokens.keyring import LEEWAY, PERSIST_AHEAD, KeyRing, KeyRingError
from kubesat.tokens.keys import KeyRetired
from kubesat.tokens.source import DataDirKeySource


@pytest.fixture()
def ring(tmp_path) -> KeyRing:
    ClusterPKI(tmp_path).ensure("https://127.0.0.1:6443")
    return KeyRing(tmp_path, clock=lambda: 1_000_000.0)


def test_rotate_retires_until_the_last_token_expires(ring: KeyRing) -> None:
    ks = ring.load()
    old = ks.signing.kid
    ring.record_issued(old, 1_000_000 + 3600)
    old_kid, new_kid, not_after = ring.rotate(now=1_000_100)
    assert old_kid == old and new_kid != old
    assert not_after == 1_000_000 + 3600 + PERSIST_AHEAD + LEEWAY
    after = ring.load(now=1_000_200)
    assert after.signing.kid == new_kid
    assert after.candidates(old, 1_000_200), "the retired key still verifies"
    assert old in {k["kid"] for k in after.jwks(1_000_200)["keys"]}
    later = ring.load(now=not_after + 1)
    assert not later.candidates(old, not_after + 1)
    assert stat.S_IMODE(ring.signing_path.stat().st_mode) == 0o600


def test_a_key_that_signed_legacy_tokens_is_kept_for_good(ring: KeyRing) -> None:
    kid = ring.load().signing.kid
    ring.record_issued(kid, None, legacy=True)
    _, _, not_after = ring.rotate(now=1_000_100)
    assert not_after is None
    assert ring.load(now=10**12).candidates(kid, 10**12)


def test_record_issued_writes_rarely(ring: KeyRing, monkeypatch) -> None:
    kid = ring.load().signing.kid
    writes = []
    real = ring._write
    monkeypatch.setattr(ring, "_write", lambda keys: (writes.append(1), real(keys)))
    for i in range(1000):
        ring.record_issued(kid, 1_000_000 + 3600 + i)  # an hour of issuance, one token a second
    assert len(writes) == 1


def test_rows_and_prune(ring: KeyRing) -> None:
    ring.record_issued(ring.load().signing.kid, 1_000_000)
    old, new, not_after = ring.rotate(now=1_000_000)
    rows = ring.rows(now=1_000_000)
    assert [(r["kid"], r["status"]) for r in rows] == [(new, "signing"), (old, "verifying")]
    assert ring.rows(now=not_after + 1)[1]["status"] == "expired"
    assert ring.prune(now=not_after + 1) == [old]
    assert [r["kid"] for r in ring.rows(now=not_after + 1)] == [new]


def test_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(KeyRingError) as e:
        KeyRing(tmp_path).load()
    assert "sa.key" in str(e.value) and "kubesat serve" in str(e.value)
    ClusterPKI(tmp_path).ensure("https://127.0.0.1:6443")
    with pytest.raises(KeyRingError) as e:
        KeyRing(tmp_path).load([str(tmp_path / "nope.pem")])
    assert "nope.pem" in str(e.value)
    (tmp_path / "pki" / "sa-keys.json").write_text("{broken")
    with pytest.raises(KeyRingError) as e:
        KeyRing(tmp_path).load()
    assert "sa-keys.json" in str(e.value)


# --------------------------------------------------------------- issuing and retirement agree


def _entry(ring: KeyRing, kid: str) -> dict:
    return json.loads(ring.manifest_path.read_text())["keys"][kid]


def test_a_retired_key_records_no_new_token(ring: KeyRing) -> None:
    server = KeyRing(ring.pki.parent, clock=ring.clock)  # the server's view, another process's in life
    old = server.load().signing.kid
    server.record_issued(old, 1_000_000 + 3600)
    _, _, not_after = ring.rotate(now=1_000_100)  # `kubesat keys rotate`; the server has not reloaded yet
    before = _entry(ring, old)
    with pytest.raises(KeyRetired):
        server.record_issued(old, 1_000_200 + 48 * 3600)  # beyond what the old key's retirement covers
    with pytest.raises(KeyRetired):
        server.record_issued(old, None, legacy=True)
    assert _entry(ring, old) == before and before["not_after"] == not_after


def test_tokens_within_the_persisted_bound_are_covered_without_a_write(ring: KeyRing, monkeypatch) -> None:
    server = KeyRing(ring.pki.parent, clock=ring.clock)
    old = server.load().signing.kid
    server.record_issued(old, 1_000_000 + 48 * 3600)
    server.record_issued(old, None, legacy=True)
    _, _, not_after = ring.rotate(now=1_000_100)
    assert not_after is None  # it signed a legacy token
    writes = []
    monkeypatch.setattr(server, "_write", lambda keys: writes.append(keys))
    server.record_issued(old, 1_000_100 + 48 * 3600)  # a late token from the old key, inside the bound
    server.record_issued(old, None, legacy=True)
    assert writes == []


def test_a_record_that_was_not_written_lets_no_token_skip_the_write(ring: KeyRing, monkeypatch) -> None:
    kid = ring.load().signing.kid
    real = ring._write
    calls = []

    def full_disk(keys: dict) -> None:
        calls.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ring, "_write", full_disk)
    with pytest.raises(KeyRingError) as e:
        ring.record_issued(kid, 1_000_000 + 3600)
    assert "sa-keys.json" in str(e.value) and "No space left" in str(e.value)
    with pytest.raises(KeyRingError):
        ring.record_issued(kid, None, legacy=True)
    monkeypatch.setattr(ring, "_write", real)
    ring.record_issued(kid, 1_000_000 + 3600)
    ring.record_issued(kid, None, legacy=True)
    assert _entry(ring, kid)["max_exp"] == 1_000_000 + 3600 + PERSIST_AHEAD and _entry(ring, kid)["legacy"]
    assert len(calls) == 2


def test_the_first_key_gets_its_entry_before_it_signs(ring: KeyRing) -> None:
    assert not ring.manifest_path.exists()
    kid = ring.load().signing.kid
    assert _entry(ring, kid)["retired"] is None


def test_a_rotation_cut_short_leaves_the_old_key_signing(ring: KeyRing) -> None:
    """A rotation that stopped after the manifest and before sa.key: the key in sa.key signs on."""
    kid = ring.load().signing.kid
    ring.record_issued(kid, 1_000_000 + 3600)
    keys = json.loads(ring.manifest_path.read_text())
    keys["keys"][kid].update(retired=1_000_000, not_after=1_000_000 + 60)
    ring.manifest_path.write_text(json.dumps(keys))
    again = KeyRing(ring.pki.parent, clock=ring.clock)
    assert again.load().signing.kid == kid
    assert _entry(ring, kid)["retired"] is None and _entry(ring, kid)["max_exp"] == 1_000_000 + 3600 + PERSIST_AHEAD
    again.record_issued(kid, 1_000_000 + 48 * 3600)
    assert ring.prune(now=10**12) == []


def test_a_server_source_signs_again_with_the_new_key(tmp_path) -> None:
    """DataDirKeySource + TokenIssuer: a token signed with a key retired meanwhile is signed again."""
    ClusterPKI(tmp_path).ensure("https://127.0.0.1:6443")
    source = DataDirKeySource(tmp_path, clock=lambda: 0.0)  # never reloads on its own
    issuer = TokenIssuer(source, TokenOptions(signing_processes=0))
    kw = {"namespace": "ns", "sa_name": "sa", "sa_uid": "uid", "audiences": ["api"], "expiration_seconds": 3600}
    old = source.keyset().signing.kid
    assert _kid(issuer.issue_bound(**kw).token) == old
    _, new, _ = KeyRing(tmp_path).rotate()
    bound = issuer.issue_bound(**{**kw, "expiration_seconds": 48 * 3600})
    legacy = issuer.issue_legacy(namespace="ns", secret_name="s", sa_name="sa", sa_uid="uid")
    assert _kid(bound.token) == new and _kid(legacy) == new
    assert source.keyset().signing.kid == new


def test_an_async_issue_signs_again_with_the_new_key(tmp_path) -> None:
    ClusterPKI(tmp_path).ensure("https://127.0.0.1:6443")
    source = DataDirKeySource(tmp_path, clock=lambda: 0.0)
    issuer = TokenIssuer(source, TokenOptions(signing_processes=0))
    kw = {"namespace": "ns", "sa_name": "sa", "sa_uid": "uid", "audiences": ["api"], "expiration_seconds": 600}
    asyncio.run(issuer.issue_bound_async(**kw))
    _, new, _ = KeyRing(tmp_path).rotate()
    assert _kid(asyncio.run(issuer.issue_bound_async(**{**kw, "expiration_seconds": 48 * 3600})).token) == new


def _kid(token: str) -> str:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


# Operations on one data dir by two server processes (each with its own view, reloaded only when
# told its key was retired) and `kubesat keys rotate`, as the clock moves on.
_ops = st.lists(st.one_of(
    st.tuples(st.just("issue"), st.integers(0, 1), st.sampled_from([600, 3600, 48 * 3600, None])),  # None: legacy
    st.tuples(st.just("rotate"), st.just(0), st.just(0)),
    st.tuples(st.just("wait"), st.just(0), st.sampled_from([1, 30, 3000, 7200])),
), max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_no_answered_token_outlives_its_key(ops: list[tuple[str, int, int | None]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        data = Path(d)
        shutil.copytree(_PKI_TEMPLATE, data / "pki")
        now = [1_000_000.0]

        def clock() -> float:
            return now[0]

        cli = KeyRing(data, clock=clock)
        servers = [KeyRing(data, clock=clock) for _ in range(2)]
        signing = [s.load().signing.kid for s in servers]
        answered: list[tuple[str, int | None]] = []  # (kid, exp or None for legacy)
        for op, who, arg in ops:
            if op == "rotate":
                cli.rotate(alg="ES256")
            elif op == "wait":
                now[0] += int(arg or 0)
            else:
                exp = None if arg is None else int(now[0]) + arg
                try:
                    servers[who].record_issued(signing[who], exp, legacy=arg is None)
                except KeyRetired:
                    signing[who] = servers[who].load().signing.kid  # not answered; signed again later
                    continue
                answered.append((signing[who], exp))
        for kid, exp in answered:
            at = float(10**12) if exp is None else exp + LEEWAY
            assert cli.load(now=at).candidates(kid, at), f"token of {kid} (exp {exp}) rejected while valid"


def _pki_template() -> Path:
    d = Path(tempfile.mkdtemp(prefix="keyring-template-"))
    ClusterPKI(d).ensure("https://127.0.0.1:6443", sa_alg="ES256")
    return d / "pki"


_PKI_TEMPLATE = _pki_template()


def test_the_signing_key_is_parsed_again_only_when_its_file_changes(ring: KeyRing) -> None:
    first = ring.load()
    ring.record_issued(first.signing.kid, 1_000_000 + 7200)  # the manifest changes, sa.key does not
    again = ring.load()
    assert again.signing is first.signing
    _, new_kid, _ = ring.rotate(now=1_000_100)
    rotated = ring.load(now=1_000_200)
    assert rotated.signing is not first.signing and rotated.signing.kid == new_kid
