"""Command-line options shared by ``serve`` and ``predict --send``: DICOM TLS files, checked before any work."""

from __future__ import annotations

from pathlib import Path

import click


def tls_options(cert_help: str, ca_help: str):
    """Add ``--tls-cert``, ``--tls-key`` and ``--tls-ca`` to a command, with the command's wording."""
    file = click.Path(path_type=Path, dir_okay=False, exists=True)

    def decorate(command):
        command = click.option("--tls-ca", type=file, metavar="PEM", help=ca_help)(command)
        command = click.option(
            "--tls-key",
            type=file,
            metavar="PEM",
            help="Private key of --tls-cert (PEM; passphrase, if any, from $MEDLUNG_TLS_KEY_PASSWORD).",
        )(command)
        command = click.option("--tls-cert", type=file, metavar="PEM", help=cert_help)(command)
        return command

    return decorate


def tls_config(cert: Path | None, key: Path | None, ca: Path | None, *, need_cert: bool = False):
    """The :class:`medlung.pacs.tls.TlsConfig` of the options, None when none was given; usage errors as click's."""
    if cert is None and key is None and ca is None:
        return None
    from medlung.errors import TlsConfigError
    from medlung.pacs.tls import TlsConfig

    try:
        config = TlsConfig(cert, key, ca)
        if need_cert:
            config.server_context()
        else:
            config.client_context()
    except TlsConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key/--tls-ca") from None
    return config
