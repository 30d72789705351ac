"""Large lists read in chunks from one snapshot (registry) and encoded piece by piece (API), equal to the whole."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, UTC
from typing import Any

import orjson
import pytest
import yaml

from kubesat.api import liststream
from kubesat.apimachinery import codec
from kubesat.api.tables import to_table
from kubesat.registry.kinds import lookup_kind
from kubesat.apimachinery.selectors import parse_label_selector
from kubesat.registry.store import LIST_CHUNK, Registry
from kubesat.registry.strategies import strategy_for
from kubesat.storage.memory import MemoryStore

NAMESPACES = lookup_kind("v1", "Namespace")
CONFIGMAPS = lookup_kind("v1", "ConfigMap")
COUNT = 3 * LIST_CHUNK + 17


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def seeded(count: int = COUNT) -> Registry:
    reg = Registry(MemoryStore.open())
    await reg.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
    for i in range(count):
        await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": f"cm-{i:04}", "labels": {"odd": str(i % 2)}},
                                            "data": {"i": str(i)}})
    return reg


async def stored(reg: Registry) -> list[dict[str, Any]]:
    """Every ConfigMap as the store holds it now, decoded one by one (not through the list code)."""
    res = await reg.store.list(CONFIGMAPS.list_prefix("ns"))
    out = []
    for kv in res.items:
        obj = orjson.loads(kv.value)
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        out.append(obj)
    return out


async def streamed(reg: Registry, **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    page = await reg.open_list(CONFIGMAPS, "ns", **kw)
    try:
        return [obj async for obj in page.objects()], page
    finally:
        page.close()


def test_a_small_list_is_read_whole_and_a_large_one_in_chunks() -> None:
    async def main() -> None:
        reg = await seeded(LIST_CHUNK)
        page = await reg.open_list(CONFIGMAPS, "ns")
        assert page.items == await stored(reg)
        assert not reg.store._snapshots  # a whole page leaves nothing open
        await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": "one-more"}})
        page = await reg.open_list(CONFIGMAPS, "ns")
        assert page.items is None and len(reg.store._snapshots) == 1
        assert [o async for o in page.objects()] == await stored(reg)
        page.close()
        assert not reg.store._snapshots

    run(main())


def test_writes_while_a_large_list_streams_are_not_in_it() -> None:
    async def main() -> None:
        reg = await seeded()
        before = await stored(reg)
        page = await reg.open_list(CONFIGMAPS, "ns")
        rv = int(page.resource_version)
        got = []
        rnd = random.Random(7)
        async for obj in page.objects():
            got.append(obj)
            if rnd.random() < 0.2:  # a write lands between two objects of the stream
                name = f"cm-{rnd.randrange(COUNT):04}"
                cur = await reg.get_or_none(CONFIGMAPS, "ns", name)
                if cur is None:
                    await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": name}})
                elif rnd.random() < 0.5:
                    await reg.delete(CONFIGMAPS, "ns", name)
                else:
                    cur["data"] = {"i": "changed"}
                    await reg.update(CONFIGMAPS, "ns", name, cur)
                await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": f"cm-{rnd.randrange(COUNT):04}x{len(got)}"}})
        page.close()
        assert got == before
        assert all(int(o["metadata"]["resourceVersion"]) <= rv for o in got)
        assert await stored(reg) != before  # the writes did happen

    run(main())


class YieldingStore(MemoryStore):
    """A backend whose reads suspend, so that writes can land between any two of them."""

    async def list(self, prefix: str, *, start_after: str = "", limit: int = 0):  # type: ignore[no-untyped-def]
        res = await super().list(prefix, start_after=start_after, limit=limit)
        await asyncio.sleep(0)
        return res


def test_a_write_between_the_first_chunk_and_the_snapshot_is_not_in_the_list() -> None:
    async def main() -> None:
        reg = Registry(YieldingStore())
        await reg.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        for i in range(2 * LIST_CHUNK):
            await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": f"cm-{i:04}"}})
        before = await stored(reg)

        async def writer() -> None:
            await reg.delete(CONFIGMAPS, "ns", "cm-0001")  # in the first chunk
            await reg.delete(CONFIGMAPS, "ns", "cm-0003")
            await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": "cm-0002x"}})
            await reg.delete(CONFIGMAPS, "ns", f"cm-{LIST_CHUNK + 50:04}")  # after it

        limit = LIST_CHUNK + 20  # a page that streams, so its end is measured before it is read
        opened, _ = await asyncio.gather(reg.open_list(CONFIGMAPS, "ns", limit=limit), writer())
        try:
            got = [o async for o in opened.objects()]
        finally:
            opened.close()
        now = await stored(reg)
        assert len(now) == len(before) - 2  # three deleted, one created
        assert got in (before[:limit], now[:limit])  # one revision, whichever the list was read at
        assert all(int(o["metadata"]["resourceVersion"]) <= int(opened.resource_version) for o in got)
        assert opened.last_key.endswith(got[-1]["metadata"]["name"])  # the continue token starts after it

    run(main())


@pytest.mark.parametrize("limit", [7, LIST_CHUNK, LIST_CHUNK + 1, 2 * LIST_CHUNK + 3, 10 * COUNT])
@pytest.mark.parametrize("selector", ["", "odd=1"])
def test_pages_of_every_size_cover_the_list_once(limit: int, selector: str) -> None:
    async def main() -> None:
        reg = await seeded()
        labels = parse_label_selector(selector)
        want = [o for o in await stored(reg) if not selector or o["metadata"]["labels"]["odd"] == "1"]
        got: list[dict[str, Any]] = []
        token, pages, rvs = "", 0, set()
        while True:
            items, page = await streamed(reg, labels=labels, limit=limit, continue_token=token)
            assert len(items) <= limit
            assert (page.items is None) == (len(items) > LIST_CHUNK)
            got += items
            pages += 1
            rvs.add(page.resource_version)
            token = page.continue_token
            if not token:
                break
        assert got == want
        assert len(rvs) == 1  # every page answers at the first page's revision
        # A full page says "more" when any stored object follows it, selected or not (as etcd does).
        trailing = len(want) % limit == 0 and want[-1]["metadata"]["name"] != f"cm-{COUNT - 1:04}"
        assert pages == -(-len(want) // limit) + trailing

    run(main())


def test_the_registry_list_still_returns_everything() -> None:
    async def main() -> None:
        reg = await seeded()
        page = await reg.list(CONFIGMAPS, "ns")
        assert page.items == await stored(reg) and not page.continue_token
        assert not reg.store._snapshots

    run(main())


# --- encoding piece by piece ------------------------------------------------------------------

def objs(n: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"cm-{i}", "namespace": "ns", "resourceVersion": str(i + 2),
                          "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"a": "b" * (i % 90)}},
             "data": {"long": "word " * 40, "multi": "line\none\n", "quote": "it's: \"x\""}} for i in range(n)]


async def encode(encoder: liststream.ListEncoder, items: list[dict[str, Any]]) -> tuple[bytes, list[bytes]]:
    writes: list[bytes] = []

    async def write(b: bytes) -> None:
        writes.append(b)

    async def gen():  # type: ignore[no-untyped-def]
        for o in items:
            yield o

    await liststream.write_list(write, encoder, gen())
    return b"".join(writes), writes


@pytest.mark.parametrize("n", [0, 1, 3, 800])
@pytest.mark.parametrize("yaml_out", [False, True])
def test_a_list_encoded_in_pieces_is_the_whole_document(n: int, yaml_out: bool) -> None:
    meta = {"resourceVersion": "42", "continue": "abc"}
    items = objs(n)
    whole = {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": meta, "items": items}
    enc = liststream.list_encoder("ConfigMapList", "v1", meta, None, "Metadata", yaml_out)
    body, writes = run(encode(enc, items))
    assert body == (codec.dump_yaml(whole) if yaml_out else codec.dump_json(whole))
    assert enc.content_type == ("application/yaml" if yaml_out else "application/json")
    assert all(len(w) < liststream.FLUSH_BYTES + 4096 for w in writes)
    if n == 800:
        assert len(writes) > 5  # written as it goes, not at the end


@pytest.mark.parametrize("include", ["Metadata", "Object", "None"])
@pytest.mark.parametrize("yaml_out", [False, True])
def test_a_table_encoded_in_pieces_is_the_whole_table(include: str, yaml_out: bool) -> None:
    strategy = strategy_for(CONFIGMAPS)
    meta = {"resourceVersion": "42"}
    items = objs(50)
    enc = liststream.list_encoder("ConfigMapList", "v1", meta, strategy, include, yaml_out)
    body, _ = run(encode(enc, items))
    decoded = yaml.safe_load(body) if yaml_out else orjson.loads(body)
    now = datetime.now(UTC)
    whole = to_table(strategy, items, include_object=include, list_meta=meta, now=now)
    assert list(decoded) == list(whole)
    assert decoded == whole  # ages are whole days here, so the clocks of the two encodings agree
    again = codec.dump_yaml(decoded) if yaml_out else codec.dump_json(decoded)
    assert body == again
