"""The `kubesat` command: parse flags, call a module, print one clear line on failure."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from kubesat import __version__


def _fail(message: str) -> None:
    click.echo(f"kubesat: error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubesat")
def main() -> None:
    """kubesat: the Kubernetes service-account token system as a standalone server."""


def _parse_bool(value: str, flag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise click.BadParameter(f"{flag} takes true or false, got {value!r}")


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the store, keys and admin.kubeconfig live. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("--bind", "bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=6443, show_default=True, help="HTTPS port.")
@click.option("--anonymous-auth", default="true", show_default=True, metavar="BOOL",
              help="Treat requests without credentials as system:anonymous (false: answer them 401).")
@click.option("--tls-san", "tls_sans", multiple=True, metavar="NAME",
              help="Extra DNS name or IP for the serving certificate (repeatable).")
@click.option("--event-history", type=click.IntRange(100, 10_000_000), default=10000, show_default=True,
              metavar="N", help="How many past changes a watch can resume from; older resourceVersions get 410 Gone.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
def serve(data_dir: Path | None, bind: str, port: int, anonymous_auth: str, tls_sans: tuple[str, ...],
          event_history: int, log_level: str) -> None:
    """Serve the Kubernetes API over HTTPS on an embedded SQLite store."""
    from kubesat.pki import PKIError
    from kubesat.server import ServeError, ServeOptions, default_data_dir, serve as run

    logging.basicConfig(level=getattr(logging, log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = ServeOptions(
        data_dir=(data_dir or default_data_dir()).expanduser().absolute(),
        bind=bind,
        port=port,
        anonymous_auth=_parse_bool(anonymous_auth, "--anonymous-auth"),
        log_level=log_level,
        extra_sans=tls_sans,
        event_history=event_history,
    )

    def ready(kubeconfig: str) -> None:
        click.echo(f"kubesat ready at {opts.url}; kubeconfig: {kubeconfig}", err=False)
        sys.stdout.flush()

    try:
        code = run(opts, on_ready=ready)
    except (ServeError, PKIError) as e:
        _fail(str(e))
    except OSError as e:
        if e.errno == 98:
            _fail(f"cannot listen on {bind}:{port}: address already in use; pass another --port")
        _fail(f"cannot start: {e}")
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
