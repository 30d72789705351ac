"""The service-account authenticator's cache of successful authentications: keyed, bounded, revocable."""

from __future__ import annotations

import hashlib
import hmac
import os

from kubesat.auth import serviceaccount as authsa


def test_cache_key_is_hmac_sha256_under_a_process_key() -> None:
    key = os.urandom(32)
    digest = authsa._keyed_hash(key)
    for data in (b"", b"t", b"eyJ" * 500, bytes(range(256))):
        assert digest(data) == hmac.digest(key, data, "sha256")
        assert digest(data) == digest(data)  # the precomputed states are copied, never consumed
    # Without a key given, each authenticator draws its own: no plain hash of a token to compare with.
    a, b = authsa._keyed_hash(), authsa._keyed_hash()
    assert a(b"token") != b(b"token")
    assert a(b"token") != hashlib.sha256(b"token").digest()
