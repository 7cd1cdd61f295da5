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


#: Exit status of a usage error: nothing was processed (docs/cli.md, "Exit status").
USAGE_EXIT = 2
#: Exit status when the run went on but some films failed (their rows say why).
FILM_EXIT = 1


def exit_status(exc: BaseException) -> int:
    """2 for a usage error (:class:`~medlung.errors.UsageError`, an existing output), 1 for anything else."""
    from medlung.errors import OutputExistsError, UsageError

    return USAGE_EXIT if isinstance(exc, (UsageError, OutputExistsError)) else FILM_EXIT


def fail(exc: BaseException, verbose: bool):
    """Report ``exc`` as one line and exit with its :func:`exit_status`."""
    report_exception(exc, verbose)
    raise SystemExit(exit_status(exc))


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


def memory_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Click callback: ``--max-memory`` (``4G``, ``1500M`` ...) as bytes; None for the machine's default."""
    if value is None:
        return None
    from medlung.errors import MedlungError
    from medlung.memory import parse_memory

    try:
        return parse_memory(value)
    except MedlungError as exc:
        raise click.BadParameter(str(exc)) from None


def max_memory_option(what: str, effect: str):
    """The ``--max-memory SIZE`` option of ``predict`` and ``serve`` (bytes, or None for the machine's default).

    Parameters
    ----------
    what : str
        Who uses the memory (``"the batch"``), for the help text.
    effect : str
        What the budget decides there, a sentence for the help text.
    """
    from medlung.memory import DEFAULT_FRACTION

    return click.option(
        "--max-memory",
        callback=memory_option,
        default=None,
        metavar="SIZE",
        help=f"Memory {what} may use, e.g. 4G or 1500M [default: {DEFAULT_FRACTION:.0%} of this machine's memory "
        f"or its cgroup limit]. Each film holds the cost its header declares (size x bytes per pixel). {effect}",
    )


def films_counted() -> str:
    """What a folder search takes as a film, for "no films found" (the extensions of medlung.pipeline.batch)."""
    from medlung.pipeline.batch import FILM_EXTENSIONS

    named = ", ".join(sorted(e for e in FILM_EXTENSIONS if e))
    return (
        f"Films are files named {named} or without an extension (DICOM often has none), not hidden and not "
        "DICOMDIR; give a file by its path to try it whatever its name."
    )
