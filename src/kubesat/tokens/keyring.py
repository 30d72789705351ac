"""The data dir's service-account keys over time: the signing key, retired keys and how long each must live.

Issuing and retirement meet in one record per key, its manifest entry, read and written under
one lock. A token leaves the server only once its key's entry covers it: the latest `exp` the key
may have signed (persisted an hour ahead, so a busy server writes about once an hour), or
`legacy` for a never-expiring Secret token. `rotate` fixes the old key's `not_after` from that
entry, and a retired entry takes no further records: a server still signing with the old key
(it notices a rotation within a second) is told so and signs again with the new one. So an
answered token never outlives its key, however late a server process notices the rotation.

Layout under DATA_DIR/pki: `sa.key` (current, 0600), `sa.pub`, `sa-retired/<kid>.pub`, and the
manifest `sa-keys.json`, written atomically (and durably) under `sa-keys.lock`.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubesat.tokens.keys import (
    KeyRetired,
    KeySet,
    PublicKey,
    SigningKey,
    alg_for,
    key_id,
    load_pem_keys,
    load_pem_private_key,
)

LEEWAY = 60  # the validators' clock leeway
PERSIST_AHEAD = 3600


class KeyRingError(ValueError):
    """A key file cannot be used; the message names it and the fix."""


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    # The rename is durable only once the directory is: a recorded key use must survive a crash.
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


Entry = dict[str, Any]


def may_sign(entry: Entry | None) -> bool:
    """Whether a key with this manifest entry may sign: it is known and not retired."""
    return entry is not None and not entry.get("retired")


def recorded(entry: Entry | None, kid: str, exp: int | None, legacy: bool) -> Entry:
    """The entry once it covers a token of `exp` (or a legacy token); KeyRetired if the key may no longer sign."""
    if not may_sign(entry):
        raise KeyRetired(f"service-account key {kid} was retired while it signed a token")
    assert entry is not None
    out = dict(entry)
    if legacy:
        out["legacy"] = True
    elif exp is not None:
        out["max_exp"] = max(int(entry.get("max_exp") or 0), int(exp) + PERSIST_AHEAD)
    return out


def retirement(entry: Entry, now: float) -> int | None:
    """not_after of a key retired at `now`: past the last token it can have signed; None (never) after a legacy one."""
    if entry.get("legacy"):
        return None
    return max(int(entry.get("max_exp") or 0), int(now)) + LEEWAY


class KeyRing:
    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.pki = Path(data_dir) / "pki"
        self.clock = clock
        self._max_exp: dict[str, int] = {}  # persisted bound per kid, as last read or written
        # sa.key's bytes as last read and the key parsed from them: parsing (with OpenSSL's RSA checks) takes
        # ~0.1 s, and a reload after the manifest alone changed (a token recorded) would repeat it on the loop.
        self._signing_parsed: tuple[bytes, SigningKey] | None = None
        self._legacy: set[str] = set()

    @property
    def signing_path(self) -> Path:
        return self.pki / "sa.key"

    @property
    def manifest_path(self) -> Path:
        return self.pki / "sa-keys.json"

    @property
    def retired_dir(self) -> Path:
        return self.pki / "sa-retired"

    # ------------------------------------------------------------------ manifest
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.pki.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.pki / "sa-keys.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            doc = orjson.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError:
            raise KeyRingError(f"{self.manifest_path}: not valid JSON; restore it from a backup or remove it "
                               "(retired keys are then no longer accepted)") from None
        keys = doc.get("keys") if isinstance(doc, dict) else None
        return keys if isinstance(keys, dict) else {}

    def _write(self, keys: dict[str, dict[str, Any]]) -> None:
        _write_atomic(self.manifest_path, orjson.dumps({"keys": keys}, option=orjson.OPT_INDENT_2), 0o600)

    def _signing(self) -> SigningKey:
        try:
            data = self.signing_path.read_bytes()
        except FileNotFoundError:
            raise KeyRingError(f"{self.signing_path}: no service-account signing key; run `kubesat serve` once "
                               "to create it, or pass --data-dir") from None
        parsed = self._signing_parsed
        if parsed is not None and hmac.compare_digest(parsed[0], data):
            return parsed[1]
        try:
            key = SigningKey(load_pem_private_key(data, str(self.signing_path)))
        except ValueError as e:
            raise KeyRingError(str(e)) from None
        self._signing_parsed = (data, key)
        return key

    # --------------------------------------------------------------------- reads
    def load(self, extra_key_files: list[str] | tuple[str, ...] = (), now: float | None = None) -> KeySet:
        now = self.clock() if now is None else now
        signing = self._signing()
        keys = self._read()
        if not may_sign(keys.get(signing.kid)):
            signing, keys = self._claim_signing(now)
        retired = []
        for kid, entry in keys.items():
            if kid == signing.kid or not entry.get("retired"):
                continue
            not_after = entry.get("not_after")
            if not_after is not None and not_after < now:
                continue
            path = self.retired_dir / f"{kid}.pub"
            try:
                pubs = load_pem_keys(path.read_bytes(), str(path))
            except (OSError, ValueError):
                continue  # a pruned or damaged retired key is simply no longer accepted
            retired += [(k, not_after) for k in pubs]
        extra = []
        for f in extra_key_files:
            try:
                data = Path(f).read_bytes()
            except OSError as e:
                raise KeyRingError(f"service account key file {f}: {e.strerror.lower() if e.strerror else e}") from None
            try:
                extra.extend(load_pem_keys(data, f))
            except ValueError as e:
                raise KeyRingError(str(e)) from None
        cur = keys.get(signing.kid, {})
        # The cache says only what the manifest holds: it lets a token out with no write.
        self._max_exp[signing.kid] = int(cur.get("max_exp") or 0)
        if cur.get("legacy"):
            self._legacy.add(signing.kid)
        else:
            self._legacy.discard(signing.kid)
        return KeySet(signing, retired=retired, extra=extra)

    def _claim_signing(self, now: float) -> tuple[SigningKey, dict[str, Entry]]:
        """Give the key in sa.key a manifest entry that may sign, before it signs anything.

        Needed for the first key (made without one) and after a rotation that stopped between
        writing the manifest and sa.key (the old key signs on; it only lives longer).
        """
        with self._locked():
            signing = self._signing()
            keys = self._read()
            entry = keys.get(signing.kid)
            if not may_sign(entry):
                keys[signing.kid] = {"created": int(now), "max_exp": 0, **(entry or {}), "alg": signing.alg,
                                     "retired": None, "not_after": None}
                self._write(keys)
        return signing, keys

    def fingerprint(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for p in (self.signing_path, self.manifest_path):
            try:
                st = p.stat()
                # Every write replaces the file: a new inode tells two writes apart within one mtime tick.
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        now = self.clock() if now is None else now
        signing = self._signing()
        keys = self._read()
        rows = [{"kid": signing.kid, "alg": signing.alg, "status": "signing",
                 "created": keys.get(signing.kid, {}).get("created"), "not_after": None}]
        for kid, e in sorted(keys.items(), key=lambda kv: -(kv[1].get("retired") or 0)):
            if kid == signing.kid or not e.get("retired"):
                continue
            na = e.get("not_after")
            rows.append({"kid": kid, "alg": e.get("alg", ""), "status": "expired" if na is not None and na < now
                         else "verifying", "created": e.get("created"), "not_after": na})
        return rows

    # -------------------------------------------------------------------- writes
    def record_issued(self, kid: str, exp: int | None, legacy: bool = False) -> None:
        """Called for every token signed, before it is answered; writes only when the persisted bound must move.

        Raises KeyRetired when the key was retired meanwhile (the token must be signed again), and
        KeyRingError when the record cannot be written (the token must not be answered).
        """
        if legacy:
            if kid in self._legacy:
                return
        elif exp is None or exp <= self._max_exp.get(kid, 0):
            return
        try:
            with self._locked():
                keys = self._read()
                entry = keys[kid] = recorded(keys.get(kid), kid, exp, legacy)
                self._write(keys)
        except OSError as e:
            raise KeyRingError(f"{self.manifest_path}: cannot record a use of service-account key {kid} "
                               f"({e.strerror or e}); no token is issued until it can") from None
        # Only now, with the record durable, may later tokens skip the write.
        if legacy:
            self._legacy.add(kid)
        else:
            self._max_exp[kid] = max(self._max_exp.get(kid, 0), int(entry["max_exp"]))

    def rotate(self, alg: str = "RS256", now: float | None = None) -> tuple[str, str, float | None]:
        """A new signing key; the old one is retired. Returns (old kid, new kid, old key's not_after)."""
        now = self.clock() if now is None else now
        if alg not in ("RS256", "ES256"):
            raise KeyRingError(f'--service-account-signing-alg must be RS256 or ES256, got "{alg}"')
        with self._locked():
            old = self._signing()
            keys = self._read()
            entry = keys.setdefault(old.kid, {"created": None})
            entry["alg"] = old.alg
            entry["retired"] = int(now)
            entry["not_after"] = retirement(entry, now)
            self.retired_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.retired_dir / f"{old.kid}.pub", _public_pem(old.public_key), 0o644)
            new_key = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else \
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            new_kid = key_id(new_key.public_key())
            keys[new_kid] = {"alg": alg_for(new_key), "created": int(now), "retired": None, "not_after": None,
                             "max_exp": 0}
            self._write(keys)
            _write_atomic(self.signing_path, pem, 0o600)
            _write_atomic(self.pki / "sa.pub", _public_pem(new_key.public_key()), 0o644)
        return old.kid, new_kid, entry["not_after"]

    def prune(self, now: float | None = None) -> list[str]:
        """Forget retired keys past their not_after (never the key in sa.key)."""
        now = self.clock() if now is None else now
        gone = []
        with self._locked():
            signing = self._signing().kid
            keys = self._read()
            for kid, e in list(keys.items()):
                na = e.get("not_after")
                if kid != signing and e.get("retired") and na is not None and na < now:
                    (self.retired_dir / f"{kid}.pub").unlink(missing_ok=True)
                    del keys[kid]
                    gone.append(kid)
            if gone:
                self._write(keys)
        return gone
