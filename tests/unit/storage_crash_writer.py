"""Helper for the kill -9 durability test: `python storage_crash_writer.py PATH COUNT`.

Opens the SqliteStore at PATH and creates keys /registry/crash/NNNNNNN (continuing after the
keys already there), printing "KEY REVISION" to stdout (flushed) after each create returns,
i.e. after the write was acknowledged. The test SIGKILLs it mid-way.
"""

from __future__ import annotations

import asyncio
import sys

from kubesat.storage.sqlite import SqliteStore

PREFIX = "/registry/crash/"


def value_for(i: int) -> bytes:
    return f'{{"i": {i}, "pad": "{"x" * (i % 97)}"}}'.encode()


async def main(path: str, count: int) -> None:
    store = SqliteStore.open(path, history=1000)
    start = await store.count(PREFIX)
    print(f"START {start}", flush=True)
    out = sys.stdout
    for i in range(start, start + count):
        key = f"{PREFIX}{i:07d}"
        rev = await store.create(key, value_for(i))
        out.write(f"{key} {rev}\n")
        out.flush()
    await store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
