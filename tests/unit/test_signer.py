"""Token signatures made by helper processes: the frame protocol, real children, and every way back in-process."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubesat.tokens import signer as S
from kubesat.tokens.jwt import signature
from kubesat.tokens.keys import SigningKey

_KEY = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
_KEY2 = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _verifies(key: SigningKey, data: bytes, sig: bytes) -> bool:
    try:
        key.public_key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]
        return True
    except Exception:  # noqa: BLE001
        return False


def _answers(raw: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(raw):
        n = int.from_bytes(raw[i:i + 4], "big")
        out.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return out


# ------------------------------------------------------------------------------ the child's loop


def test_child_signs_in_order_and_answers_errors_in_place() -> None:
    inp = io.BytesIO(
        S._frame(b"K", _KEY.kid, S._private_der(_KEY))
        + S._frame(b"S", _KEY.kid, b"first")
        + S._frame(b"S", "no-such-kid", b"second")
        + S._frame(b"S", _KEY.kid, b"third")
    )
    out = io.BytesIO()
    assert S.serve_child(inp, out) == 0  # end of input: a clean exit
    first, second, third = _answers(out.getvalue())
    assert first[:1] == b"O" and _verifies(_KEY, b"first", first[1:])
    assert second[:1] == b"E" and b"no-such-kid" in second
    assert third[:1] == b"O" and _verifies(_KEY, b"third", third[1:])
    assert not _verifies(_KEY, b"first", third[1:])


@pytest.mark.parametrize("stream,code", [
    ((S.MAX_FRAME + 1).to_bytes(4, "big"), 2),      # a frame no parent sends
    (S._frame(b"X", _KEY.kid, b"?"), 2),             # an unknown frame type
    (b"\x00\x00\x00\x10abc", 0),                     # cut short: the parent went away
    (b"\x00\x00", 0),
], ids=["oversized frame", "unknown frame type", "cut short", "cut in the length"])
def test_child_stops_on_a_broken_stream(stream: bytes, code: int) -> None:
    out = io.BytesIO()
    assert S.serve_child(io.BytesIO(stream), out) == code
    assert out.getvalue() == b""


# ------------------------------------------------------------------------------ real children


def _with_signer(body, processes: int = 1, *, wait: bool = True, **kw):  # type: ignore[no-untyped-def]
    """Run `await body(signer)` with a fresh ProcessSigner (its children up first, if `wait`), then close it."""
    async def main():  # type: ignore[no-untyped-def]
        signer = S.ProcessSigner(processes, **kw)
        try:
            if wait:
                await _until_running(signer, processes)
            return await body(signer)
        finally:
            await signer.close()

    return asyncio.run(main())


async def _until_running(signer: S.ProcessSigner, n: int) -> None:
    await signer.sign(b"warm-up", _KEY)  # starts the children in the background
    for _ in range(200):
        if signer.running >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{signer.running} of {n} signer processes came up")


def test_children_sign_concurrently_with_rotated_keys() -> None:
    async def body(signer: S.ProcessSigner) -> list[int]:
        inputs = [b"token-%d" % i for i in range(40)]
        keys = [_KEY if i % 3 else _KEY2 for i in range(40)]
        sigs = await asyncio.gather(*(signer.sign(d, k) for d, k in zip(inputs, keys, strict=True)))
        for d, k, s in zip(inputs, keys, sigs, strict=True):
            assert _verifies(k, d, s)
        # Both children did work and learnt both keys: the load was spread.
        assert all(c.keys == {_KEY.kid, _KEY2.kid} for c in signer._children)
        # PKCS#1 v1.5 is deterministic: the children's signatures are the in-process ones.
        assert sigs[1] == signature(inputs[1], _KEY)
        return [c.proc.pid for c in signer._children]

    for pid in _with_signer(body, 2):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # closed children are gone (and reaped)


def test_a_killed_child_costs_only_speed() -> None:
    async def body(signer: S.ProcessSigner) -> None:
        child = signer._children[0]
        pending = [asyncio.ensure_future(signer.sign(b"in-flight-%d" % i, _KEY)) for i in range(5)]
        await asyncio.sleep(0)
        os.kill(child.proc.pid, signal.SIGKILL)
        sigs = await asyncio.gather(*pending)
        for i, s in enumerate(sigs):
            assert _verifies(_KEY, b"in-flight-%d" % i, s)
        await child.proc.wait()
        for _ in range(100):
            if not child.alive:
                break
            await asyncio.sleep(0.01)
        assert signer.running == 0
        # Within the respawn back-off the server signs in-process, correctly.
        assert _verifies(_KEY, b"after", await signer.sign(b"after", _KEY))

    _with_signer(body)


def test_a_child_that_cannot_start_falls_back_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")

    async def body(signer: S.ProcessSigner) -> None:
        for i in range(3):
            assert _verifies(_KEY, b"x%d" % i, await signer.sign(b"x%d" % i, _KEY))
            await asyncio.sleep(0.05)
        assert signer.running == 0

    _with_signer(body, wait=False)


def test_a_cancelled_request_does_not_shift_the_answers() -> None:
    async def body(signer: S.ProcessSigner) -> None:
        first = asyncio.ensure_future(signer.sign(b"gone", _KEY))
        second = asyncio.ensure_future(signer.sign(b"kept", _KEY))
        await asyncio.sleep(0)
        first.cancel()
        assert _verifies(_KEY, b"kept", await second)
        assert signer.running == 1

    _with_signer(body)


def test_a_stuck_child_is_replaced_by_in_process_signing() -> None:
    async def body(signer: S.ProcessSigner) -> None:
        child = signer._children[0]
        await signer.sign(b"answered", _KEY)  # the child is up and answering
        assert child.keys == {_KEY.kid}
        os.kill(child.proc.pid, signal.SIGSTOP)  # alive, but answers nothing
        sigs = await asyncio.gather(*(signer.sign(b"stuck-%d" % i, _KEY) for i in range(3)))
        for i, s in enumerate(sigs):
            assert _verifies(_KEY, b"stuck-%d" % i, s)
        assert not child.alive and signer.running == 0
        assert await asyncio.wait_for(child.proc.wait(), 5) == -signal.SIGKILL

    _with_signer(body, timeout=0.5)


@pytest.mark.parametrize("busy,to_child", [(False, False), (True, True)], ids=["idle server", "busy server"])
def test_an_idle_server_signs_in_place_and_a_busy_one_hands_over(busy: bool, to_child: bool) -> None:
    async def body(signer: S.ProcessSigner) -> None:
        # Children start on the first request even when it is signed in place.
        assert _verifies(_KEY, b"first", await signer.sign(b"first", _KEY))
        for _ in range(200):
            if signer.running:
                break
            await asyncio.sleep(0.02)
        child = signer._children[0]
        for i in range(3):
            assert _verifies(_KEY, b"n%d" % i, await signer.sign(b"n%d" % i, _KEY))
        # The child learns a key only when it is asked to sign with it.
        assert (child.keys == {_KEY.kid}) is to_child

    _with_signer(body, wait=False, busy=lambda: busy)


def test_an_error_answer_is_retried_in_process() -> None:
    async def body(signer: S.ProcessSigner) -> None:
        child = signer._children[0]
        child.keys.add(_KEY2.kid)  # the parent believes the child knows a key it was never sent
        assert _verifies(_KEY2, b"retried", await signer.sign(b"retried", _KEY2))
        assert signer.running == 1  # the child stays: it answered, in order
        assert _verifies(_KEY, b"next", await signer.sign(b"next", _KEY))

    _with_signer(body)
