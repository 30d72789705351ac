"""Buffered random UUIDs: canonical version-4 text, unique, and not shared with a forked child."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from kubesat import ids

_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuids_are_canonical_version_4_and_unique() -> None:
    made = [ids.uuid4() for _ in range(3 * ids._POOL_BYTES // 16 + 7)]  # across several refills
    assert len(set(made)) == len(made)
    for text in made:
        assert _CANONICAL.match(text), text
        u = uuid.UUID(text)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    ids.uuid4()  # the pool now holds bytes the parent will use next
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        os.write(w, ids.uuid4().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert _CANONICAL.match(child)
    assert child != ids.uuid4()
