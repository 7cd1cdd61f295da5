"""Send DICOM files to a PACS over DICOM (C-STORE) or DICOMweb (STOW-RS).

Both senders take files already written to disk (the SEG, optionally its
film) and never delete or change them: a failed send leaves the result on
disk to be sent again. Each returns one :class:`SendResult` per file and
never raises for a file that could not be sent; only invalid arguments raise.

Retries: a refused, aborted or unreachable association (or, for STOW-RS, a
connection error, time-out or HTTP 408/429/5xx) is tried again up to
``retries`` more times, waiting ``backoff``, ``2 * backoff``, ``4 * backoff``
... seconds in between. A file the PACS answered with a failure status is not
sent again.
"""

from __future__ import annotations

import base64
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from medlung import environment
from medlung.errors import CredentialsError, InvalidDestinationError
from medlung.pacs.syntaxes import presentation_contexts
from medlung.pacs.tls import TlsConfig

__all__ = [
    "Destination",
    "DicomwebCredentials",
    "SendResult",
    "credentials_from_environment",
    "parse_destination",
    "send_cstore",
    "stow_rs",
]

#: Environment variables holding DICOMweb credentials: never command-line arguments, which show in ``ps``.
TOKEN_VARIABLE, TOKEN_FILE_VARIABLE = "MEDLUNG_STOW_TOKEN", "MEDLUNG_STOW_TOKEN_FILE"
USER_VARIABLE = "MEDLUNG_STOW_USER"
PASSWORD_VARIABLE, PASSWORD_FILE_VARIABLE = "MEDLUNG_STOW_PASSWORD", "MEDLUNG_STOW_PASSWORD_FILE"
_CREDENTIALS_HINT = (
    f"Set {TOKEN_VARIABLE} (or {TOKEN_FILE_VARIABLE}) for a bearer token, or {USER_VARIABLE} with "
    f"{PASSWORD_VARIABLE} (or {PASSWORD_FILE_VARIABLE}) for HTTP basic authentication."
)

#: The status of a file the peer accepted no presentation context for (nothing was sent): PS3.4's
#: "SOP Class not Supported", which is what a C-STORE on such a class would have been answered.
_NOT_ACCEPTED = 0x0122
#: A-ASSOCIATE-AC result of a context whose SOP class the peer does not support (PS3.8 9.3.3.2).
_ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03
#: STOW-RS failure reason "Referenced Transfer Syntax not supported" (PS3.18 Table I.2-1).
_STOW_SYNTAX_NOT_SUPPORTED = 0xC122
#: C-STORE statuses that mean "stored" (PS3.4 B.2.3: success and the warnings).
_STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}
AE_TITLE_PATTERN = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 printable characters, no backslash
_DESTINATION_HINT = "Give the destination as AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242."


@dataclass(frozen=True)
class Destination:
    """A DICOM node: its AE title, host name or address, and TCP port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class SendResult:
    """What happened to one file.

    Attributes
    ----------
    path : pathlib.Path
        The file (never deleted, whatever happened).
    ok : bool
        True when the PACS stored it.
    destination : str
        ``AE@HOST:PORT`` or the DICOMweb URL.
    sop_instance_uid : str or None
        The file's SOP Instance UID, when it could be read.
    status : int or None
        The DICOM C-STORE status (e.g. ``0x0000``) or the HTTP status code;
        ``None`` when no answer came.
    attempts : int
        Associations or requests tried for this file.
    message : str
        One line: ``"stored"`` or what went wrong and what to do.
    """

    path: Path
    ok: bool
    destination: str
    sop_instance_uid: str | None = None
    status: int | None = None
    attempts: int = 0
    message: str = ""


@dataclass(frozen=True)
class DicomwebCredentials:
    """How to authenticate to a DICOMweb server: HTTP basic or a bearer token.

    Attributes
    ----------
    scheme : str
        ``"basic"`` or ``"bearer"``.
    secret : str
        The password or the token (never shown by ``repr``).
    user : str or None
        The user name (basic only).
    source : str
        Where the secret came from (an environment variable or a file), for messages.
    """

    scheme: str
    secret: str = field(repr=False)
    user: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.scheme not in ("basic", "bearer"):
            raise ValueError(f"scheme must be 'basic' or 'bearer'; got {self.scheme!r}.")
        if not self.secret or any(c in self.secret for c in "\r\n"):
            raise CredentialsError(
                f"the DICOMweb {'password' if self.scheme == 'basic' else 'token'} from "
                f"{self.source or 'the caller'} is empty or spans several lines",
                hint=_CREDENTIALS_HINT,
            )
        if self.scheme == "basic" and (not self.user or ":" in self.user):
            raise CredentialsError("HTTP basic authentication needs a user name without ':'", hint=_CREDENTIALS_HINT)

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header."""
        if self.scheme == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}
        token = base64.b64encode(f"{self.user}:{self.secret}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


def credentials_from_environment(environ: dict | None = None) -> DicomwebCredentials | None:
    """DICOMweb credentials from the environment; None when none are set.

    A bearer token comes from ``MEDLUNG_STOW_TOKEN`` or from the file named by
    ``MEDLUNG_STOW_TOKEN_FILE``; HTTP basic from ``MEDLUNG_STOW_USER`` with
    ``MEDLUNG_STOW_PASSWORD`` or the file named by ``MEDLUNG_STOW_PASSWORD_FILE``.
    A file is read each time, so a token refreshed on disk is used by the next
    send; surrounding white space (a final newline) is dropped.

    Parameters
    ----------
    environ : dict, optional
        The environment (default: ``os.environ``).

    Returns
    -------
    DicomwebCredentials or None

    Raises
    ------
    CredentialsError
        When the variables contradict each other, a file cannot be read, or a secret is empty.
    """
    env = {
        name: value
        for name in (TOKEN_VARIABLE, TOKEN_FILE_VARIABLE, USER_VARIABLE, PASSWORD_VARIABLE, PASSWORD_FILE_VARIABLE)
        if (value := environment.get(name, environ)) is not None
    }
    given = list(env)
    if not given:
        return None
    token = [n for n in given if n in (TOKEN_VARIABLE, TOKEN_FILE_VARIABLE)]
    basic = [n for n in given if n not in token]
    if token and basic:
        raise CredentialsError(
            f"both a bearer token ({', '.join(token)}) and basic credentials ({', '.join(basic)}) are set",
            hint="Keep one of the two.",
        )
    if len(token) == 2 or (PASSWORD_VARIABLE in basic and PASSWORD_FILE_VARIABLE in basic):
        twice = token if len(token) == 2 else [PASSWORD_VARIABLE, PASSWORD_FILE_VARIABLE]
        raise CredentialsError(f"the secret is given twice ({' and '.join(twice)})", hint="Keep one of the two.")
    if token:
        name = token[0]
        secret = env[name] if name == TOKEN_VARIABLE else _read_secret(env[name], name)
        return DicomwebCredentials("bearer", secret, source=name)
    if USER_VARIABLE not in basic or len(basic) == 1:
        raise CredentialsError(
            f"HTTP basic authentication needs both {USER_VARIABLE} and a password "
            f"({PASSWORD_VARIABLE} or {PASSWORD_FILE_VARIABLE})",
            hint=_CREDENTIALS_HINT,
        )
    name = PASSWORD_VARIABLE if PASSWORD_VARIABLE in basic else PASSWORD_FILE_VARIABLE
    secret = env[name] if name == PASSWORD_VARIABLE else _read_secret(env[name], name)
    return DicomwebCredentials("basic", secret, user=env[USER_VARIABLE], source=name)


def _read_secret(path: str, variable: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            f"the file named by {variable} cannot be read ({type(exc).__name__})",
            path,
            hint=f"Point {variable} at a readable text file holding the secret.",
        ) from None


def parse_destination(text: str) -> Destination:
    """Parse ``AE@HOST:PORT`` (``AE@[::1]:PORT`` for an IPv6 address).

    Parameters
    ----------
    text : str
        The destination, e.g. ``"ORTHANC@127.0.0.1:4242"``.

    Returns
    -------
    Destination

    Raises
    ------
    InvalidDestinationError
        With a one-line message saying what is wrong and the expected form.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidDestinationError("the PACS destination is empty", hint=_DESTINATION_HINT)
    text = text.strip()
    ae_title, at, address = text.rpartition("@")
    if not at or not ae_title:
        raise InvalidDestinationError(f"PACS destination {text!r} has no AE title before '@'", hint=_DESTINATION_HINT)
    if not AE_TITLE_PATTERN.match(ae_title) or not ae_title.strip():
        raise InvalidDestinationError(
            f"AE title {ae_title!r} is not 1-16 printable characters without backslash", hint=_DESTINATION_HINT
        )
    match = re.fullmatch(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<port>\w+)|(?P<host>[^:\s\[\]]+):(?P<port2>\w+)", address)
    if not match:
        raise InvalidDestinationError(f"PACS destination {text!r} has no HOST:PORT after '@'", hint=_DESTINATION_HINT)
    host = match.group("v6") or match.group("host")
    port_text = match.group("port") or match.group("port2")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidDestinationError(f"port {port_text!r} is not a number from 1 to 65535", hint=_DESTINATION_HINT)
    return Destination(ae_title=ae_title.strip(), host=host, port=int(port_text))


def send_cstore(
    paths: Iterable[str | Path],
    destination: str | Destination,
    *,
    calling_ae: str = "MEDLUNG",
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    tls: TlsConfig | None = None,
) -> list[SendResult]:
    """Store DICOM files on a PACS with C-STORE, in one association when possible.

    Any SOP class (the SEG, an SR, the film) gets its own presentation
    contexts: one for each compressed syntax its files are stored in (e.g.
    JPEG 2000 Lossless for a compressed SEG), then one with Explicit VR,
    Implicit VR and Deflated Explicit VR Little Endian
    (:func:`medlung.pacs.syntaxes.presentation_contexts`). Each file is sent
    in the first of its own syntax, Explicit, Implicit, Deflated that the PACS
    accepted, re-encoded in memory when that is not its own (decompressed
    first when the PACS took only uncompressed ones); the file on disk is not
    changed. A file whose SOP class the PACS accepted in no syntax is not
    sent: its result names the SOP class and the syntaxes proposed
    (status ``0x0122``).

    Parameters
    ----------
    paths : iterable of str or Path
        DICOM files: the SEG, and the film when it is sent too.
    destination : str or Destination
        ``AE@HOST:PORT`` of the PACS.
    calling_ae : str, optional
        Our AE title (the PACS may have to know it).
    retries : int, optional
        Further associations tried after a failed one (0 = try once).
    backoff : float, optional
        Seconds waited before the first retry; doubled for each further one.
    timeout : float, optional
        Seconds allowed for connecting, association and each C-STORE answer.
    tls : TlsConfig, optional
        Open the association over DICOM TLS: the PACS's certificate must be
        signed by ``tls.ca`` (or a system-trusted authority) and name the
        host dialled; ``tls.cert`` is shown to a PACS that asks for one.

    Returns
    -------
    list of SendResult
        One per path, in order.

    Raises
    ------
    TlsConfigError
        When the TLS files cannot be loaded (nothing is sent).
    """
    from pynetdicom import AE

    target = destination if isinstance(destination, Destination) else parse_destination(destination)
    if not AE_TITLE_PATTERN.match(calling_ae or ""):
        raise InvalidDestinationError(f"calling AE title {calling_ae!r} is not 1-16 printable characters")
    _check_retry_arguments(retries, backoff)
    tls_args = (tls.client_context(), target.host) if tls is not None else None
    where = str(target)
    files = [Path(p) for p in paths]
    results: dict[int, SendResult] = {}
    datasets = {}
    for index, path in enumerate(files):
        dataset, problem = _read(path)
        if problem:
            results[index] = SendResult(path, False, where, message=problem)
        else:
            datasets[index] = dataset

    attempts = 0
    last_problem = ""
    pending = sorted(datasets)
    while pending and attempts <= retries:
        if attempts:
            time.sleep(backoff * 2 ** (attempts - 1))
        attempts += 1
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.connection_timeout = timeout
        for sop_class, syntaxes in presentation_contexts(datasets[i] for i in pending):
            ae.add_requested_context(sop_class, syntaxes)
        assoc = ae.associate(target.host, target.port, ae_title=target.ae_title, tls_args=tls_args)
        if assoc.rejected_contexts and not assoc.accepted_contexts:  # pynetdicom aborts such an association
            for index in pending:
                message = _not_accepted(assoc, datasets[index], where)
                results[index] = SendResult(
                    files[index], False, where, str(datasets[index].SOPInstanceUID), _NOT_ACCEPTED, attempts, message
                )
            pending = []
            break
        if not assoc.is_established:
            last_problem = (
                "association rejected"
                if assoc.is_rejected
                else "association aborted"
                if assoc.is_aborted
                else "could not connect"
            )
            if tls_args is not None and not assoc.is_rejected:
                from medlung.pacs.tls import handshake_problem

                last_problem = handshake_problem(target.host, target.port, tls_args[0], timeout) or last_problem
            elif assoc.is_aborted:
                last_problem += " (if that port expects DICOM TLS, give the TLS options)"
            continue
        still_pending = []
        try:
            for index in pending:
                dataset = datasets[index]
                outcome = _store_one(assoc, dataset, where)
                if outcome is None:  # no answer: the association broke; try again later
                    still_pending.append(index)
                    last_problem = "the association broke during C-STORE"
                    continue
                status, message = outcome
                results[index] = SendResult(
                    files[index],
                    status in _STORED_STATUSES,
                    where,
                    str(dataset.SOPInstanceUID),
                    status,
                    attempts,
                    message,
                )
        finally:
            if assoc.is_established:
                assoc.release()
        pending = still_pending

    for index in pending:
        results[index] = SendResult(
            files[index],
            False,
            where,
            str(datasets[index].get("SOPInstanceUID", "")) or None,
            None,
            attempts,
            f"not sent to {where} after {attempts} attempt(s): {last_problem}; check that the PACS is running, "
            f"reachable and accepts AE title {calling_ae}; the file is kept",
        )
    return [results[i] for i in range(len(files))]


def stow_rs(
    paths: Iterable[str | Path],
    url: str,
    *,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
    credentials: DicomwebCredentials | None = None,
) -> list[SendResult]:
    """Store DICOM files on a DICOMweb server with STOW-RS, one request per file.

    Each file is posted in its own transfer syntax, named in the part's
    ``transfer-syntax`` parameter; a server that refuses it (HTTP 415, or
    failure reason ``0xC122``) gets the file re-encoded in the next one of
    Explicit VR, Implicit VR and Deflated Explicit VR Little Endian
    (decompressed first when it was compressed). When it refuses them all,
    the result names the SOP class and the syntaxes tried.

    When the server refuses the credentials (HTTP 401 or 403), the files
    after the refused one are not tried: each gets the same one-line message.

    Parameters
    ----------
    paths : iterable of str or Path
        DICOM files.
    url : str
        The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
    retries : int, optional
        Further requests after a connection error, time-out or HTTP
        408/429/5xx (0 = try once).
    backoff : float, optional
        Seconds waited before the first retry; doubled for each further one.
    timeout : float, optional
        Seconds allowed for each request.
    headers : dict, optional
        Extra HTTP headers.
    credentials : DicomwebCredentials, optional
        HTTP basic or bearer authentication (default: from the environment,
        see :func:`credentials_from_environment`; none when it sets none).

    Returns
    -------
    list of SendResult
        One per path, in order; ``status`` is the HTTP status code.

    Raises
    ------
    InvalidDestinationError
        When ``url`` is not an http(s) URL, or carries a user name or password.
    CredentialsError
        When the credentials in the environment are contradictory or unreadable.
    """

    url = check_stow_url(url)
    _check_retry_arguments(retries, backoff)
    if credentials is None:
        credentials = credentials_from_environment()
    warning = plain_http_warning(url, credentials)
    if warning:
        warnings.warn(warning, CredentialsWarning, stacklevel=2)
    session = _same_origin_session(url)
    session.headers.update({**(headers or {}), **(credentials.headers() if credentials else {})})
    server = _StowServer(session, url, retries, backoff, timeout, credentials)
    results = []
    refused = None  # a result refused for its credentials: the later files are not tried
    for path in (Path(p) for p in paths):
        if refused is not None:
            results.append(SendResult(path, False, url, status=refused.status, message=refused.message))
            continue
        dataset, problem = _read(path)
        if problem:
            results.append(SendResult(path, False, url, message=problem))
            continue
        result = _stow_one(server, dataset, path)
        if result.status in (401, 403):
            refused = result
        results.append(result)
    return results


def check_stow_url(url: str) -> str:
    """The DICOMweb root URL, stripped of a final ``/``.

    Raises
    ------
    InvalidDestinationError
        When it is not an http(s) URL, or carries a user name or password
        (which would show in process lists and logs).
    """
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url.strip()):
        raise InvalidDestinationError(
            f"DICOMweb URL {url!r} is not an http(s) URL", hint="Give e.g. http://127.0.0.1:8042/dicom-web."
        )
    url = url.strip().rstrip("/")
    if urlsplit(url).username is not None or urlsplit(url).password is not None:
        raise InvalidDestinationError(
            "the DICOMweb URL carries credentials, which would show in process lists and logs",
            hint=f"Remove them from the URL. {_CREDENTIALS_HINT}",
        )
    return url


class CredentialsWarning(UserWarning):
    """DICOMweb credentials about to travel where others can read them."""


class RedirectRefused(Exception):
    """The DICOMweb server redirected a STOW-RS to another host; the SEG is not sent there."""


def plain_http_warning(url: str, credentials) -> str | None:
    """The warning for credentials sent over plain ``http://`` to another machine; None when there is none.

    Over ``http://`` a token or password crosses the network readable by
    anyone on the way; to this machine (loopback) it does not leave it.
    """
    parts = urlsplit(url)
    if credentials is None or parts.scheme != "http" or _is_loopback_host(parts.hostname or ""):
        return None
    what = "password" if getattr(credentials, "scheme", "") == "basic" else "token"
    return (
        f"the DICOMweb {what} ({credentials.source}) goes to {parts.hostname} over plain http://: anyone on the "
        "network between can read it and the SEGs; use an https:// URL"
    )


def _is_loopback_host(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same_origin_session(url: str):
    """A requests session that refuses to follow a redirect to another scheme, host or port than ``url``'s.

    A 307/308 answer would make requests post the SEG (patient data) again to
    wherever it points; the hook raises :class:`RedirectRefused` on such an
    answer before anything is sent there.
    """
    import requests

    origin = urlsplit(url)
    session = requests.Session()

    def refuse_other_hosts(response, *args, **kwargs):
        if response.is_redirect:
            target = urlsplit(requests.compat.urljoin(response.url, response.headers.get("location", "")))
            if (target.scheme, target.hostname, target.port) != (origin.scheme, origin.hostname, origin.port):
                raise RedirectRefused(f"{target.scheme}://{target.netloc}")
        return response

    session.hooks["response"].append(refuse_other_hosts)
    return session


@dataclass
class _StowServer:
    """Where and how :func:`stow_rs` posts: the HTTP session (its headers), the root URL, retries, time-out.

    ``names_syntax`` turns False for the rest of a run once the server has
    stored a part only without its ``transfer-syntax`` parameter.
    """

    session: Any
    url: str
    retries: int
    backoff: float
    timeout: float
    credentials: DicomwebCredentials | None
    names_syntax: bool = True


def _stow_one(server: _StowServer, dataset, path: Path) -> SendResult:
    """STOW-RS one data set: in its own syntax, then in each other one it can be re-encoded in after a refusal."""
    from medlung.pacs.syntaxes import encode_file, send_order, syntax_name

    url = server.url
    uid, own = str(dataset.SOPInstanceUID), str(dataset.file_meta.TransferSyntaxUID)
    tried: list[str] = []
    attempts = 0
    for syntax in send_order(own):
        try:
            body = encode_file(dataset, syntax)
        except Exception as exc:
            problem = f"could not be re-encoded as {syntax_name(syntax)} ({type(exc).__name__}: {_first_line(exc)})"
            message = f"{url} refused {', '.join(tried)} and the file {problem}; the file is kept"
            return SendResult(path, False, url, uid, 415, attempts, message)
        result, verdict = _post_instance(server, body, syntax, path, uid, name_syntax=server.names_syntax)
        if verdict == _SILENT and server.names_syntax:  # the part's parameter not understood (Orthanc's plugin 1.7)
            attempts += result.attempts
            result, verdict = _post_instance(server, body, syntax, path, uid, name_syntax=False)
            server.names_syntax = not result.ok  # it stored it plainly: the run's other files go so at once
        attempts += result.attempts
        if verdict != _SYNTAX_REFUSED:
            return SendResult(path, result.ok, url, uid, result.status, attempts, result.message)
        tried.append(syntax_name(syntax))
    refused = f"in none of the transfer syntaxes tried ({', '.join(tried)})"
    message = f"{url} accepts {_sop_name(str(dataset.SOPClassUID))} {refused}; the file is kept"
    return SendResult(path, False, url, uid, 415, attempts, message)


#: What a STOW-RS answer said of the instance (besides its result): the server refused its transfer syntax, or
#: answered without a word about it (neither stored nor failed), or anything else.
_SYNTAX_REFUSED, _SILENT, _ANSWERED = "syntax refused", "silent", "answered"


def _post_instance(
    server: _StowServer, body: bytes, syntax: str, path: Path, uid: str, name_syntax: bool
) -> tuple[SendResult, str]:
    """POST one DICOM file, retrying what may be transient: (result, what the answer said of the instance).

    With ``name_syntax`` the part says its syntax (``application/dicom;
    transfer-syntax=...``, PS3.18 8.7.3.5.2); without, the file's meta does.
    A refused syntax is HTTP 415, or a failed instance with failure reason
    ``0xC122`` (Referenced Transfer Syntax not supported).
    """
    import requests

    boundary = f"medlung-{uid}"
    part_type = f"application/dicom; transfer-syntax={syntax}" if name_syntax else "application/dicom"
    content = b"".join(
        (f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode("ascii"), body, f"\r\n--{boundary}--\r\n".encode())
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    url = server.url
    attempts, status, message = 0, None, ""

    def result(ok: bool, text: str) -> SendResult:
        return SendResult(path, ok, url, uid, status, attempts, text)

    while attempts <= server.retries:
        if attempts:
            time.sleep(server.backoff * 2 ** (attempts - 1))
        attempts += 1
        try:
            response = server.session.post(f"{url}/studies", data=content, headers=headers, timeout=server.timeout)
        except (RedirectRefused, requests.exceptions.SSLError) as exc:  # neither gets better by trying again
            return result(False, _refusal_message(exc, url)), _ANSWERED
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            status, message = None, f"no answer from {url} ({type(exc).__name__})"
            continue
        status = response.status_code
        if status == 415:
            return result(False, f"HTTP 415 from {url}"), _SYNTAX_REFUSED
        if status in (408, 429) or status >= 500:
            message = f"HTTP {status} {response.reason} from {url}"
            continue
        if status in (401, 403):
            return result(False, _auth_message(status, url, server.credentials)), _ANSWERED
        answer = _stow_answer(response)
        failed = [item for item in answer.get("FailedSOPSequence", []) or [] if _item_uid(item) in ("", uid)]
        if failed:
            reason = failed[0].get("FailureReason")
            if reason is not None and int(reason) == _STOW_SYNTAX_NOT_SUPPORTED:
                return result(False, f"failure reason 0xC122 from {url}"), _SYNTAX_REFUSED
            shown = f"0x{int(reason):04X}" if reason is not None else "not given"
            return result(False, f"refused by {url} (failure reason {shown}); the file is kept"), _ANSWERED
        if status >= 400:
            return result(False, f"HTTP {status} {response.reason} from {url}; the file is kept"), _ANSWERED
        stored = {_item_uid(item) for item in answer.get("ReferencedSOPSequence", []) or []}
        if uid not in stored:
            return result(
                False,
                f"{url} answered without listing the instance as stored (no ReferencedSOPSequence "
                "item for its SOP Instance UID); check the server's log; the file is kept",
            ), _SILENT
        return result(True, "stored"), _ANSWERED
    return result(
        False,
        f"not sent after {attempts} attempt(s): {message}; check that the DICOMweb server is running "
        "and reachable; the file is kept",
    ), _ANSWERED


def _stow_answer(response):
    """The Store Instances Response of a STOW-RS answer (DICOM JSON), or an empty data set."""
    from pydicom import Dataset

    if not response.content or "json" not in response.headers.get("Content-Type", ""):
        return Dataset()
    try:
        return Dataset.from_json(response.json())
    except Exception:  # not a DICOM JSON object
        return Dataset()


def _item_uid(item) -> str:
    return str(item.get("ReferencedSOPInstanceUID", "") or "")


def _refusal_message(exc: Exception, url: str) -> str:
    """One line for a redirect to another host or a TLS failure (an untrusted certificate said as such)."""
    if isinstance(exc, RedirectRefused):
        return (
            f"{url} redirected the STOW-RS to another host ({exc}): not followed, nothing was sent there; "
            "give the server's own URL; the file is kept"
        )
    text = _first_line(exc)
    untrusted = "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower()
    problem = "its certificate is not trusted" if untrusted else "the TLS handshake failed"
    return (
        f"{url} answered but {problem} ({text[-160:]}); give the CA that signed it in REQUESTS_CA_BUNDLE, "
        "or check the URL; the file is kept"
    )


def _auth_message(status: int, url: str, credentials: DicomwebCredentials | None) -> str:
    """One line for HTTP 401/403: which credentials were refused (never their value) and what to do."""
    if credentials is None:
        return (
            f"HTTP {status} from {url}: the server needs credentials and none were given; "
            f"{_CREDENTIALS_HINT[0].lower() + _CREDENTIALS_HINT[1:-1]}; the file is kept"
        )
    who = (
        f"user {credentials.user!r} ({credentials.source})"
        if credentials.scheme == "basic"
        else (f"the bearer token ({credentials.source})")
    )
    verdict = "refused" if status == 401 else "not allowed to store"
    return f"HTTP {status} from {url}: {who} {verdict}; check the credentials and their rights; the file is kept"


def _check_retry_arguments(retries: int, backoff: float) -> None:
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0; got {retries!r}.")
    if not backoff >= 0:
        raise ValueError(f"backoff must be a number of seconds >= 0; got {backoff!r}.")


def _read(path: Path):
    """(dataset, None) or (None, one-line problem)."""
    if not path.is_file():
        return None, f"{path}: file not found; nothing was sent"
    from medlung.errors import MedlungError
    from medlung.io.dicom import read_dicom_dataset

    try:
        dataset = read_dicom_dataset(path)  # also files without File Meta (ACR-NEMA style)
    except MedlungError as exc:
        return None, f"{exc.path}: {exc.reason}; nothing was sent"
    except Exception as exc:
        return None, f"{path}: not a readable DICOM file ({type(exc).__name__}); nothing was sent"
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID") if not dataset.get(k)]
    if missing or "TransferSyntaxUID" not in dataset.file_meta:
        return None, f"{path}: lacks {', '.join(missing) or 'File Meta'}, so it cannot be stored; nothing was sent"
    return dataset, None


def _store_one(assoc, dataset, where: str) -> tuple[int, str] | None:
    """C-STORE one dataset in a syntax the peer accepted for its SOP class: (status, message), or None when no
    answer came."""
    from medlung.pacs.syntaxes import choose_syntax, reencode, syntax_name

    sop_class = str(dataset.SOPClassUID)
    own = str(dataset.file_meta.TransferSyntaxUID)
    accepted = [
        str(context.transfer_syntax[0])
        for context in assoc.accepted_contexts
        if str(context.abstract_syntax) == sop_class
    ]
    syntax = choose_syntax(own, accepted)
    if syntax is None:
        return _NOT_ACCEPTED, _not_accepted(assoc, dataset, where)
    try:
        dataset = reencode(dataset, syntax)  # a copy in memory: the file on disk is not changed
    except Exception as exc:
        return 0xA900, (
            f"{where} accepts {_sop_name(sop_class)} only as {syntax_name(syntax)} and the file could not be "
            f"re-encoded from {syntax_name(own)} ({type(exc).__name__}: {_first_line(exc)}); the file is kept"
        )
    try:
        answer = assoc.send_c_store(dataset)
    except Exception as exc:  # pynetdicom raises on encoding problems
        return 0xA900, f"C-STORE could not encode the file ({type(exc).__name__}: {_first_line(exc)})"
    if not answer or "Status" not in answer:
        return None
    status = int(answer.Status)
    if status in _STORED_STATUSES:
        return status, "stored" if status == 0 else f"stored with warning status 0x{status:04X}"
    comment = str(answer.get("ErrorComment", "") or "")
    return status, f"refused by the PACS with status 0x{status:04X}{': ' + comment if comment else ''}"


def _not_accepted(assoc, dataset, where: str) -> str:
    """One line: the peer accepted no context for the data set's SOP class, the syntaxes proposed; the file is kept."""
    from medlung.pacs.syntaxes import send_order, syntax_name

    sop_class = str(dataset.SOPClassUID)
    tried = [syntax_name(s) for s in send_order(str(dataset.file_meta.TransferSyntaxUID))]
    reasons = {
        int(context.result or 0)
        for context in assoc.rejected_contexts
        if str(context.abstract_syntax) == sop_class and context.result is not None
    }
    name = _sop_name(sop_class)
    if reasons == {_ABSTRACT_SYNTAX_NOT_SUPPORTED}:
        what = f"{where} does not accept {name} (proposed as {', '.join(tried)})"
    else:
        what = f"{where} accepts {name} in none of the transfer syntaxes proposed ({', '.join(tried)})"
    return f"{what}; the file is kept (status 0x{_NOT_ACCEPTED:04X})"


def _sop_name(sop_class: str) -> str:
    from pydicom.uid import UID

    name = UID(sop_class).name
    return f"{name} ({sop_class})" if name and name != sop_class else f"SOP class {sop_class}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
