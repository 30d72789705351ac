"""A list answer (a List, a Table, in JSON or YAML) written piece by piece, byte for byte what encoding it whole gives.

Kubernetes streams the encoding of large lists too (StreamingCollectionEncodingToJSON): the envelope,
then the items one by one. Pieces are gathered up to FLUSH_BYTES before each write, so a stream holds
at most that much encoded output besides what the connection buffers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubesat.apimachinery import codec
from kubesat.api.tables import to_table
from kubesat.registry.strategy import Strategy

# Encoded bytes gathered before a write: big enough that a write per object costs nothing, small
# enough that hundreds of concurrent streams hold little.
FLUSH_BYTES = 64 * 1024

Write = Callable[[bytes], Awaitable[None]]


class Buffered:
    """Pieces gathered into writes of about FLUSH_BYTES."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._pieces: list[bytes] = []
        self._size = 0

    async def add(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._size += len(piece)
        if self._size >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._pieces:
            data = b"".join(self._pieces)
            self._pieces.clear()
            self._size = 0
            await self._write(data)


class ListEncoder:
    """Encodes `envelope` (a dict whose last field is an empty list, `items` or `rows`) around elements
    that arrive one at a time; `element` makes the list element of each object."""

    def __init__(self, envelope: dict[str, Any], element: Callable[[dict[str, Any]], Any], yaml: bool) -> None:
        self._field, empty = list(envelope)[-1], envelope[list(envelope)[-1]]
        if empty != []:
            raise ValueError("the envelope's last field must be an empty list")
        self._envelope = envelope
        self._element = element
        self._yaml = yaml
        self._count = 0
        self.content_type = "application/yaml" if yaml else "application/json"

    def head(self) -> bytes:
        if self._yaml:
            return codec.dump_yaml({k: v for k, v in self._envelope.items() if k != self._field})
        whole = codec.dump_json(self._envelope)
        return whole[:-2]  # cut the empty list's `]` and the envelope's `}`

    def element(self, obj: dict[str, Any]) -> bytes:
        self._count += 1
        value = self._element(obj)
        if self._yaml:
            piece = codec.dump_yaml([value])
            return (self._field.encode() + b":\n" + piece) if self._count == 1 else piece
        piece = codec.dump_json(value)
        return piece if self._count == 1 else b"," + piece

    def tail(self) -> bytes:
        if self._yaml:
            return b"" if self._count else codec.dump_yaml({self._field: []})
        return b"]}"


def list_encoder(kind: str, api_version: str, list_meta: dict[str, Any], table: Strategy | None,
                 include_object: str, yaml: bool) -> ListEncoder:
    """The encoder of a List of `kind`, or with `table` (the kind's strategy) of its Table."""
    if table is None:
        envelope = {"kind": kind, "apiVersion": api_version, "metadata": list_meta, "items": []}
        return ListEncoder(envelope, _same, yaml)
    strategy = table
    now = datetime.now(UTC)  # one clock for every row's age, as a whole Table has

    def row(obj: dict[str, Any]) -> Any:
        return to_table(strategy, [obj], include_object=include_object, now=now)["rows"][0]

    return ListEncoder(to_table(strategy, [], include_object=include_object, list_meta=list_meta, now=now), row, yaml)


def _same(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


async def write_list(write: Write, encoder: ListEncoder, objects: AsyncIterator[dict[str, Any]]) -> None:
    out = Buffered(write)
    await out.add(encoder.head())
    async for obj in objects:
        await out.add(encoder.element(obj))
    await out.add(encoder.tail())
    await out.flush()
