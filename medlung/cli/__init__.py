"""The ``medlung`` command line: a click group with one module per command.

Commands import torch and MONAI inside their functions so that ``medlung
--help`` and ``medlung info`` start quickly.
"""

from __future__ import annotations

import click

from medlung.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medlung")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug messages.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Lung segmentation on chest radiographs (DICOM, PNG), keeping pixel spacing."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def _register() -> None:
    from medlung.cli.evaluate import evaluate
    from medlung.cli.export import export
    from medlung.cli.info import info
    from medlung.cli.predict import predict, pull
    from medlung.cli.serve import serve
    from medlung.cli.train import train

    for command in (info, predict, pull, train, evaluate, export, serve):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(obj={})
