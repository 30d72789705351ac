"""The key ring: rotation keeps old keys exactly as long as their tokens can live."""

from __future__ import annotations

import stat

import pytest

from kubesat.pki import ClusterPKI
from kubesat.tokens.keyring import LEEWAY, PERSIST_AHEAD, KeyRing, KeyRingError


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
