"""DICOM TLS (PS3.15 Annex B, the BCP 195 secure transport profile) for the node and the senders.

One :class:`TlsConfig` (certificate, private key, CA bundle: PEM files)
gives both sides of a connection:

* :meth:`TlsConfig.server_context` for ``medlung serve`` listening: the
  node shows its certificate; with a CA bundle it also *requires* a client
  certificate signed by that CA (mutual TLS) and refuses every other peer.
* :meth:`TlsConfig.client_context` for C-STORE to a PACS: the PACS's
  certificate is checked against the CA bundle (or the system's trusted
  authorities when none is given) and against the host name or address
  dialled; our certificate, when given, is shown to the PACS.

TLS 1.2 is the oldest version offered or accepted (BCP 195). The key may be
encrypted: its passphrase is read from the ``MEDLUNG_TLS_KEY_PASSWORD``
environment variable, never from the command line.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from medlung import environment
from medlung.errors import TlsConfigError

__all__ = ["KEY_PASSWORD_VARIABLE", "TlsConfig", "handshake_problem"]

#: Environment variable holding the passphrase of an encrypted private key.
KEY_PASSWORD_VARIABLE = "MEDLUNG_TLS_KEY_PASSWORD"


@dataclass(frozen=True)
class TlsConfig:
    """The PEM files of one DICOM TLS identity.

    Parameters
    ----------
    cert : str or Path, optional
        This side's certificate (with its chain, if any). Needed to listen;
        when sending, needed only by a PACS that asks for client certificates.
    key : str or Path, optional
        The private key of ``cert`` (default: ``cert`` itself, when the
        certificate file also holds the key).
    ca : str or Path, optional
        CA bundle: the authorities whose certificates are trusted. Listening
        with it, a peer must show a certificate it signed (mutual TLS);
        sending without it, the system's trusted authorities are used.

    Raises
    ------
    TlsConfigError
        When a file is missing or a key is given without a certificate.
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if value is not None:
                path = Path(value)
                object.__setattr__(self, name, path)
                if not path.is_file():
                    raise TlsConfigError(
                        f"TLS {name} file not found", path, f"Give an existing PEM file to --tls-{name}."
                    )
        if self.key is not None and self.cert is None:
            raise TlsConfigError(
                "a TLS private key was given without its certificate", hint="Give --tls-cert with --tls-key."
            )
        if self.cert is None and self.ca is None:
            raise TlsConfigError("DICOM TLS needs a certificate (--tls-cert) or a CA bundle (--tls-ca)")

    @property
    def mutual(self) -> bool:
        """True when peers must show a certificate signed by :attr:`ca`."""
        return self.ca is not None

    def server_context(self):
        """An :class:`ssl.SSLContext` for listening (``ssl_context`` of a pynetdicom server).

        Raises
        ------
        TlsConfigError
            Without a certificate, or when the files cannot be loaded.
        """
        import ssl

        if self.cert is None:
            raise TlsConfigError(
                "listening with DICOM TLS needs this node's certificate and key", hint="Give --tls-cert and --tls-key."
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_identity(context)
        if self.ca is not None:
            self._load_ca(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self):
        """An :class:`ssl.SSLContext` for associations we open (``tls_args`` of pynetdicom).

        Raises
        ------
        TlsConfigError
            When the files cannot be loaded.
        """
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks the peer's certificate and host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is not None:
            self._load_ca(context)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert is not None:
            self._load_identity(context)
        return context

    def describe(self) -> str:
        """A short line for logs: which files, and whether peers must show a certificate."""
        parts = [
            f"cert={self.cert}" if self.cert else "no certificate",
            f"ca={self.ca} (peers must show a certificate it signed)" if self.ca else "system CAs",
        ]
        return ", ".join(parts)

    def _load_identity(self, context) -> None:
        import ssl

        def password() -> str:
            value = environment.get(KEY_PASSWORD_VARIABLE)
            if value is None:
                raise TlsConfigError(
                    "the TLS private key is encrypted",
                    self.key or self.cert,
                    f"Put its passphrase in the {KEY_PASSWORD_VARIABLE} environment variable.",
                )
            return value

        try:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None, password=password)
        except TlsConfigError:
            raise
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TlsConfigError(
                f"the TLS certificate and key cannot be loaded ({_reason(exc)})",
                self.cert,
                "Give a PEM certificate with --tls-cert and its PEM private key with --tls-key.",
            ) from None

    def _load_ca(self, context) -> None:
        import ssl

        try:
            context.load_verify_locations(cafile=str(self.ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TlsConfigError(
                f"the CA bundle cannot be loaded ({_reason(exc)})",
                self.ca,
                "Give PEM certificates of the trusted authorities with --tls-ca.",
            ) from None


def handshake_problem(host: str, port: int, context, timeout: float = 10.0) -> str | None:
    """Why a TLS handshake with ``host:port`` fails, in a few words; None when it succeeds or cannot be tried.

    Used after a failed association to tell a TLS problem (untrusted
    certificate, wrong host name, plain-text port) from an unreachable node.
    """
    import ssl

    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as wrapped:
                wrapped.settimeout(min(timeout, 1.0))
                try:
                    wrapped.recv(1)  # TLS 1.3: a refused client certificate shows on the first read
                except TimeoutError:
                    return None
                except ssl.SSLError as exc:
                    return f"the node refused our TLS certificate ({_reason(exc)})"
                except OSError:
                    return None
        return None
    except ssl.SSLCertVerificationError as exc:
        return f"the node's TLS certificate is not trusted ({exc.verify_message or _reason(exc)})"
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({_reason(exc)}); is the port using DICOM TLS?"
    except OSError:
        return None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).lower().replace("_", " ")
