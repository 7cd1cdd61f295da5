"""Helpers shared by the commands: error lines, warnings capture."""

from __future__ import annotations

import traceback
import warnings
from contextlib import contextmanager

import click


def error_line(message: str) -> None:
    """Print one ``error: ...`` line on standard error."""
    click.echo(f"error: {message}", err=True)


def report_exception(exc: BaseException, verbose: bool) -> None:
    """Print an expected error as one line; with ``verbose`` the traceback too."""
    if verbose:
        click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
    error_line(str(exc))


@contextmanager
def quiet_warnings():
    """Silence Python warnings: film warnings are reported with the film instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def spacing_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: check a ``--spacing`` value (MM or ROW,COL) and keep it as given."""
    from medlung.errors import MedlungError
    from medlung.spacing import parse_user_spacing

    if value is not None:
        try:
            parse_user_spacing(value)
        except MedlungError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def is_verbose(ctx: click.Context) -> bool:
    """Whether ``medlung --verbose`` was given."""
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("verbose"))
