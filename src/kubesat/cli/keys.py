"""`kubesat keys`: rotate and list the service-account signing keys in a server's data dir."""

from __future__ import annotations

import json
from datetime import datetime, UTC
from pathlib import Path

import click

from kubesat.cli.flags import fail
from kubesat.paths import default_data_dir
from kubesat.tokens.keyring import KeyRing, KeyRingError


@click.group()
def keys() -> None:
    """Service-account signing keys: rotate them, list them."""


def _keyring(data_dir: Path | None) -> KeyRing:
    return KeyRing((data_dir or default_data_dir()).expanduser().absolute())


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@keys.command("rotate")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The server's data dir. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("--service-account-signing-alg", "alg", type=click.Choice(["RS256", "ES256"]), default="RS256",
              show_default=True, help="Algorithm of the new key.")
def keys_rotate(data_dir: Path | None, alg: str) -> None:
    """Make a new signing key; the old one stays accepted until its last token can have expired.

    A running server picks the new key up within a second.
    """
    try:
        old, new, not_after = _keyring(data_dir).rotate(alg)
    except KeyRingError as e:
        fail(str(e))
        return
    until = "forever (it signed legacy Secret tokens)" if not_after is None else _when(not_after)
    click.echo(f"rotated service-account signing key: {old} -> {new}; {old} is accepted until {until}")


@keys.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The server's data dir. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def keys_list(data_dir: Path | None, output: str) -> None:
    """The signing key and every retired key still accepted."""
    try:
        rows = _keyring(data_dir).rows()
    except KeyRingError as e:
        fail(str(e))
        return
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    widths = (44, 6, 10, 21)
    headers = ("KID", "ALG", "STATUS", "CREATED")
    click.echo("".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "NOT-AFTER")
    for r in rows:
        cells = (r["kid"], r["alg"], r["status"], _when(r["created"]))
        click.echo("".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + _when(r["not_after"]))
