"""The ``nextbehavior`` command line: one Typer app; each concern registers its commands."""

from __future__ import annotations

from typing import Annotated

import typer

from nextbehavior.stream import (
    __version__,
    cli_explain,
    cli_export,
    cli_infra,
    cli_items,
    cli_model,
    cli_ops,
    cli_replay,
    cli_worker,
)

app = typer.Typer(
    name="nextbehavior",
    help="Streaming next-behavior prediction on Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nextbehavior {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Streaming next-behavior prediction on Kafka."""


for _module in (
    cli_infra,
    cli_model,
    cli_export,
    cli_items,
    cli_worker,
    cli_replay,
    cli_explain,
    cli_ops,
):
    _module.register(app)


def main() -> None:
    app()
