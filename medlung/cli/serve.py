"""``medlung serve``: run the DICOM node, or print the queue counts of one (``--status DIR``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from medlung import defaults
from medlung.cli.common import is_verbose, max_memory_option, report_exception
from medlung.cli.security import tls_config, tls_options
from medlung.cli.segmenting import build_settings, model_options
from medlung.errors import MedlungError


def _titles(ctx, param, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    from medlung.pacs.send import AE_TITLE_PATTERN

    titles = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    bad = [t for t in titles if not AE_TITLE_PATTERN.match(t)]
    if bad or not titles:
        raise click.BadParameter(f"give AE titles of 1-16 printable characters, separated by commas (got {value!r})")
    return titles


def _networks(ctx, param, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    from medlung.services.node import parse_networks

    texts = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    try:
        parse_networks(texts)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return texts


@click.command()
@click.option("--ae-title", default=defaults.DEFAULT_AE_TITLE, show_default=True, help="This node's AE title.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=defaults.DEFAULT_PORT,
    show_default=True,
    help="TCP port to listen on.",
)
@click.option(
    "--bind",
    default="0.0.0.0",
    show_default=True,
    help="Address to listen on. The default, every interface, lets any host that reaches the port "
    "connect unless --allow-host or --tls-ca limits who; 127.0.0.1: this machine only.",
)
@click.option("--forward", metavar="AE@HOST:PORT", help="Where each DICOM-SEG is stored (usually the PACS).")
@model_options
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("medlung-serve"),
    show_default=True,
    help="Queue folder: incoming/, outgoing/, done/, failed/ (created).",
)
@click.option(
    "--allow",
    callback=_titles,
    metavar="AE,...",
    help="Accept only these calling AE titles (default: any). AE titles are not authentication: "
    "any host can claim one; use --allow-host and TLS to decide who may store.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    callback=_networks,
    metavar="CIDR,...",
    help="Accept connections only from these addresses or networks, e.g. 10.1.2.0/24,10.1.3.7 (default: any).",
)
@tls_options(
    "This node's certificate (PEM): turns DICOM TLS on, for listening (plain associations are then "
    "refused) and for --forward. Default: plain text.",
    "CA bundle (PEM): callers must show a certificate it signed (mutual TLS), and --forward's "
    "certificate must be signed by it.",
)
@click.option("--forward-plain", is_flag=True, help="Forward the SEGs without TLS even with --tls-cert.")
@click.option(
    "--max-films-per-association",
    type=click.IntRange(1),
    default=defaults.DEFAULT_MAX_FILMS_PER_ASSOCIATION,
    show_default=True,
    help="C-STOREs one association may make; later ones are refused with 0xA702.",
)
@click.option(
    "--max-film-mb",
    type=click.FloatRange(0, min_open=True),
    default=defaults.DEFAULT_MAX_FILM_MB,
    show_default=True,
    help="Largest film accepted in MB; larger ones are refused with 0xA701.",
)
@click.option(
    "--min-free-mb",
    type=click.FloatRange(0),
    default=defaults.DEFAULT_MIN_FREE_MB,
    show_default=True,
    help="Disk space in MB that must stay free in --workdir; otherwise films are refused with 0xA700.",
)
@max_memory_option("the node", "It sizes the associations served at once and the memory each film's reader may take.")
@click.option(
    "--max-associations-per-host",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Connections (associations, TLS handshakes) one peer address may hold open at once; more are closed "
    "and logged with the reason.",
)
@click.option(
    "--keep-done-days",
    type=click.FloatRange(0),
    default=None,
    metavar="DAYS",
    help="Delete delivered films and SEGs from WORKDIR/done after this many days (default: keep them).",
)
@click.option(
    "--keep-done",
    type=click.IntRange(0),
    default=None,
    metavar="N",
    help="Keep at most N delivered films in WORKDIR/done, deleting the oldest (default: keep them all).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(1),
    default=defaults.DEFAULT_MAX_QUEUE,
    show_default=True,
    help="Films waiting to be segmented before C-STORE answers 0xA700 (out of resources).",
)
@click.option(
    "--resend-interval",
    type=click.FloatRange(0.1),
    default=defaults.DEFAULT_RESEND_INTERVAL_S,
    show_default=True,
    help="Longest wait in seconds between delivery attempts while --forward is unreachable.",
)
@click.option("--json-logs", is_flag=True, help="Log one JSON object per line (standard error).")
@click.option(
    "--status",
    "status_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="Print the queue counts of the node working in DIR, then exit.",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
@click.pass_context
def serve(
    ctx,
    ae_title,
    port,
    bind,
    forward,
    workdir,
    allow,
    allow_hosts,
    tls_cert,
    tls_key,
    tls_ca,
    forward_plain,
    max_films_per_association,
    max_film_mb,
    min_free_mb,
    max_memory,
    max_associations_per_host,
    keep_done_days,
    keep_done,
    max_queue,
    resend_interval,
    json_logs,
    status_dir,
    as_json,
    **model,
) -> None:
    """A DICOM node: receive CR/DX/SC films (C-STORE), segment the lungs, store the DICOM-SEG on --forward.

    Each film is written to WORKDIR/incoming before the sender gets its
    success status; the SEG waits in WORKDIR/outgoing until --forward has
    stored it, then both move to WORKDIR/done (WORKDIR/failed, with a
    reason file, when a film cannot be segmented; --keep-done-days and
    --keep-done bound done/). A restart resumes the queue; a film that took
    the node down twice goes to failed/. Each film is read in a child process
    under a memory and a time limit. WORKDIR and its files are readable by the
    node's user only. SIGTERM or SIGINT finishes the current film and exits 0.

    By default the node listens on every interface, in plain text, and
    accepts films from any host and AE title: give --allow-host and DICOM
    TLS (--tls-cert, --tls-key, --tls-ca) on a hospital network; a warning
    says so at start-up. Every refused association or film is logged with
    the peer's address; logs never carry patient names or IDs.
    """
    verbose = is_verbose(ctx)
    if status_dir is not None:
        from medlung.services.node import queue_status

        try:
            counts = queue_status(status_dir)
        except MedlungError as exc:
            report_exception(exc, verbose)
            sys.exit(1)
        if as_json:
            click.echo(json.dumps(counts))
        else:
            running = counts.pop("running")
            for state, count in counts.items():
                click.echo(f"{state:9s}{count}")
            click.echo(f"{'node':9s}{'running (pid ' + str(running) + ')' if running else 'not running'}")
        return
    if not forward:
        raise click.UsageError("give --forward AE@HOST:PORT (where the SEGs are stored), or --status DIR.")
    from medlung.services.node import ServeConfig
    from medlung.services.node import serve as run_node

    tls = tls_config(tls_cert, tls_key, tls_ca, need_cert=True)
    if forward_plain and tls is None:
        raise click.UsageError("--forward-plain only makes sense with --tls-cert.")
    from medlung.services.node import NODE_FORMATS

    settings = build_settings(model, formats=NODE_FORMATS)  # the same settings object medlung predict builds
    try:
        config = ServeConfig(
            ae_title=ae_title,
            port=port,
            forward=forward,
            workdir=workdir,
            settings=settings,
            allow=allow,
            max_queue=max_queue,
            bind=bind,
            json_logs=json_logs,
            resend_interval=resend_interval,
            allow_hosts=allow_hosts,
            tls=tls,
            forward_plain=forward_plain,
            max_films_per_association=max_films_per_association,
            max_film_mb=max_film_mb,
            min_free_mb=min_free_mb,
            max_memory=max_memory,
            max_associations_per_host=max_associations_per_host,
            keep_done_days=keep_done_days,
            keep_done=keep_done,
        )
    except (MedlungError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        run_node(config)
    except MedlungError as exc:
        report_exception(exc, verbose)
        sys.exit(1)
