"""The `kubesat` command: parse flags, call a module, print one clear line on failure.

Each command lives in the module of its side (`serve`, `node`, `keys`) and is loaded when it is run, as
click's lazily loaded subcommands are: `kubesat agent` and `kubesat run` never import the server, so an
agent process holds only what it needs and starts sooner.
"""

from __future__ import annotations

import importlib

import click

from kubesat import __version__

__all__ = ["main"]

# command name -> "module:attribute"; listed in this order by `kubesat --help`.
COMMANDS = {
    "serve": "kubesat.cli.serve:serve",
    "kubeconfig": "kubesat.cli.serve:kubeconfig",
    "agent": "kubesat.cli.node:agent",
    "run": "kubesat.cli.node:run_command",
    "keys": "kubesat.cli.keys:keys",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported from COMMANDS when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubesat")
def main() -> None:
    """kubesat: the Kubernetes service-account token system as a standalone server."""
