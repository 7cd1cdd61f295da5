"""What a node is: its settings (:class:`ServeConfig`), their checks, and who may reach it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from medlung import defaults
from medlung.errors import MedlungError
from medlung.pacs.send import AE_TITLE_PATTERN, parse_destination
from medlung.pacs.tls import TlsConfig
from medlung.pipeline.settings import PredictSettings

#: What the node writes for a film and forwards.
NODE_FORMATS = ("seg", "sr")


def node_settings(**settings) -> PredictSettings:
    """The node's :class:`~medlung.pipeline.settings.PredictSettings`: SEG and SR, never overwritten, sent by the node."""
    return PredictSettings(formats=NODE_FORMATS, **settings)


#: Associations served at once when memory allows.
ASSOCIATIONS_AT_MOST = 16


class WorkdirBusyError(MedlungError):
    """Another ``medlung serve`` already uses this work folder."""


@dataclass
class ServeConfig:
    """What a node is and where it sends.

    Attributes
    ----------
    ae_title : str
        This node's AE title (1-16 characters).
    port : int
        TCP port to listen on (0: any free one; see :attr:`StorageNode.port`).
    forward : str
        ``AE@HOST:PORT`` the SEGs are stored on.
    workdir : Path
        The queue folder (incoming, outgoing, done, failed).
    settings : medlung.pipeline.settings.PredictSettings
        How films are segmented (model, device, lungs, tta, --qc-fail ...):
        the same object ``medlung predict`` builds, with ``formats`` a subset
        of :data:`NODE_FORMATS` (see :func:`node_settings`).
    allow : tuple of str
        Calling AE titles accepted; empty = any.
    max_queue : int
        Films received but not yet segmented before C-STORE answers ``0xA700``.
    bind : str
        Address listened on (``0.0.0.0``: every interface).
    json_logs : bool
        One JSON object per log line.
    resend_interval : float
        Longest wait, in seconds, between delivery attempts while ``forward`` is unreachable.
    send_timeout : float
        Seconds allowed for connecting to ``forward`` and for each answer.
    allow_hosts : tuple of str
        Peer addresses accepted, as CIDRs (``10.1.2.0/24``, ``10.1.2.7``); empty = any.
    tls : TlsConfig, optional
        Listen with DICOM TLS only (plain associations are refused), and
        forward over TLS with the same files. With ``tls.ca``, callers must
        show a certificate it signed.
    forward_plain : bool
        Forward without TLS even when ``tls`` is given.
    max_films_per_association : int
        C-STOREs one association may make; later ones are refused (``0xA702``).
    max_film_mb : float
        Largest film accepted, in MB (10**6 bytes); larger ones are refused (``0xA701``).
    min_free_mb : float
        Disk space, in MB, that must stay free on the work folder's file
        system after a film is written; otherwise the film is refused (``0xA700``).
    max_memory : int, optional
        Bytes the node may use (``--max-memory``; default
        :func:`medlung.memory.default_budget`): it sizes how many
        associations are served at once (each may hold about 2.2 films of
        ``max_film_mb`` while one arrives) and the memory each film's
        reading child may take.
    max_associations_per_host : int
        Connections one peer address may hold open at once; more are closed with a logged reason.
    keep_done_days : float, optional
        Delete delivered films and SEGs from ``done/`` older than this many days.
    keep_done : int, optional
        Keep at most this many delivered films in ``done/`` (the oldest go first).
    max_attempts : int
        Attempts at segmenting one film that may outlive a crash before it goes to ``failed/``.
    """

    ae_title: str
    port: int
    forward: str
    workdir: Path
    settings: PredictSettings = field(default_factory=node_settings)
    allow: tuple = ()
    max_queue: int = defaults.DEFAULT_MAX_QUEUE
    bind: str = "0.0.0.0"
    json_logs: bool = False
    resend_interval: float = defaults.DEFAULT_RESEND_INTERVAL_S
    send_timeout: float = defaults.DEFAULT_SEND_TIMEOUT_S
    allow_hosts: tuple = ()
    tls: TlsConfig | None = None
    forward_plain: bool = False
    max_films_per_association: int = defaults.DEFAULT_MAX_FILMS_PER_ASSOCIATION
    max_film_mb: float = defaults.DEFAULT_MAX_FILM_MB
    min_free_mb: float = defaults.DEFAULT_MIN_FREE_MB
    max_memory: int | None = None
    max_associations_per_host: int = defaults.DEFAULT_MAX_ASSOCIATIONS_PER_HOST
    keep_done_days: float | None = None
    keep_done: int | None = None
    max_attempts: int = defaults.DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        settings = self.settings
        if not isinstance(settings, PredictSettings):
            raise TypeError(f"settings must be a PredictSettings; got {type(settings).__name__}.")
        if not set(settings.formats) <= set(NODE_FORMATS) or settings.overwrite or settings.send or settings.stow:
            raise ValueError(
                f"the node writes {', '.join(NODE_FORMATS)} only, never overwrites, and forwards itself: "
                "build its settings with medlung.services.node.node_settings(...)."
            )
        self.networks = tuple(parse_networks(self.allow_hosts))
        if self.tls is not None and self.tls.cert is None:
            raise ValueError("listening with DICOM TLS needs this node's certificate (--tls-cert) and key.")
        if not isinstance(self.max_films_per_association, int) or self.max_films_per_association < 1:
            raise ValueError(
                f"max_films_per_association must be a whole number >= 1; got {self.max_films_per_association!r}."
            )
        if not self.max_film_mb > 0 or not self.min_free_mb >= 0:
            raise ValueError(
                f"max_film_mb must be > 0 and min_free_mb >= 0 (MB); got {self.max_film_mb!r} and {self.min_free_mb!r}."
            )
        for title in (self.ae_title, *self.allow):
            if not isinstance(title, str) or not AE_TITLE_PATTERN.match(title) or not title.strip():
                raise ValueError(f"AE title {title!r} is not 1-16 printable characters without backslash.")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be a number from 0 to 65535; got {self.port!r}.")
        for name in ("max_associations_per_host", "max_attempts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1; got {value!r}.")
        if self.keep_done is not None and (not isinstance(self.keep_done, int) or self.keep_done < 0):
            raise ValueError(f"keep_done must be a whole number >= 0; got {self.keep_done!r}.")
        if self.keep_done_days is not None and not self.keep_done_days >= 0:
            raise ValueError(f"keep_done_days must be a number of days >= 0; got {self.keep_done_days!r}.")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise ValueError(f"max_queue must be a whole number >= 1; got {self.max_queue!r}.")
        if not self.resend_interval > 0:
            raise ValueError(f"resend_interval must be a number of seconds > 0; got {self.resend_interval!r}.")
        parse_destination(self.forward)

    def memory_plan(self) -> tuple[int, int, int]:
        """``(budget, associations, decode_limit)``: bytes for the node, associations served at once, and the most
        bytes one film's reading child may allocate (see :attr:`max_memory`)."""
        from medlung.memory import BASE_BYTES, default_budget

        budget = self.max_memory or default_budget()
        per_association = int(2.2 * self.max_film_mb * 1e6)
        for_films = max(0, budget - BASE_BYTES)
        decode_limit = max(256 * 2**20, for_films // 2)
        associations = max(1, min(ASSOCIATIONS_AT_MOST, (for_films - decode_limit) // max(1, per_association)))
        return budget, int(associations), int(decode_limit)


def parse_networks(texts) -> list:
    """``ipaddress`` networks from CIDR texts (``10.1.2.0/24``, ``10.1.2.7``, ``fd00::/8``).

    Raises
    ------
    ValueError
        Naming the text that is not an address or a CIDR.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or a CIDR such as 10.1.2.0/24.") from None
    return networks


def is_loopback(bind: str) -> bool:
    """Whether a listening address reaches this machine only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def exposure_warning(config: ServeConfig) -> str | None:
    """The start-up warning of a node reachable beyond this machine by anyone; None when it is not.

    A node is exposed when it listens on an address other than loopback,
    has no ``allow_hosts``, and either no TLS or TLS without a CA bundle
    (encrypted, but any caller is accepted).
    """
    if is_loopback(config.bind) or config.networks:
        return None
    if config.tls is None:
        return (
            "listening beyond this machine with neither --allow-host nor TLS: any host that reaches this port "
            "can store films in plain text (AE titles are not authentication); give --allow-host CIDRs "
            "and/or --tls-cert/--tls-key/--tls-ca"
        )
    if not config.tls.mutual:
        return (
            "TLS without --tls-ca encrypts but does not authenticate callers: any host that reaches this port "
            "can store films; give --tls-ca and/or --allow-host"
        )
    return None
