"""Find and fetch a PACS's radiographs: DICOMweb (QIDO-RS + WADO-RS) or DIMSE (C-FIND + C-GET or C-MOVE).

A :class:`Source` answers three questions, the same way for both protocols:

* :meth:`Source.find_studies`: the StudyInstanceUIDs matching study-level
  keys (``AccessionNumber``, ``PatientID``, ``ModalitiesInStudy``, ``StudyDate`` ...);
* :meth:`Source.find_films`: the instances of a study's series whose
  Modality is one asked for (``CR``, ``DX``), as :class:`FilmRef`;
* :meth:`Source.fetch`: stores those instances as files
  ``<folder>/<SOPInstanceUID>.dcm`` (atomically; a file already there is
  not fetched again) and says, per instance, where it went or why not.

:func:`open_source` picks the protocol from the address: an ``http(s)://``
DICOMweb root, or ``AE@HOST:PORT``. Over DIMSE, C-GET (the default) brings
the instances back on the same association (medlung plays the Storage SCP
role for the CR and DX storage classes); C-MOVE asks the PACS to send them to
an AE title the PACS knows (``move_ae``), which medlung listens as on
``move_port`` while the move runs. Credentials and TLS are those of sending:
DICOMweb credentials from the environment
(:func:`medlung.pacs.send.credentials_from_environment`), DICOM TLS from a
:class:`~medlung.pacs.tls.TlsConfig` for the association medlung opens.
Nothing here raises for one study or instance the PACS cannot give: the
answer says so, and the caller reports it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
)

from medlung.atomic import write_atomically
from medlung.errors import InvalidDestinationError, MedlungError
from medlung.pacs.send import (
    AE_TITLE_PATTERN,
    Destination,
    check_stow_url,
    credentials_from_environment,
    parse_destination,
)
from medlung.pacs.tls import TlsConfig
from medlung.uids import file_key

__all__ = [
    "FILM_MODALITIES",
    "FILM_STORAGE_CLASSES",
    "DicomwebSource",
    "DimseSource",
    "FetchResult",
    "FilmRef",
    "RetrieveError",
    "Source",
    "open_source",
    "parse_query",
]

#: Modalities of the films medlung segments (PS3.3 C.7.3.1.1.1): computed and digital radiography.
FILM_MODALITIES = ("CR", "DX")
#: Storage SOP classes a C-GET or C-MOVE brings back (medlung plays their Storage SCP role).
FILM_STORAGE_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
)
#: Study-level keys a query may use (what QIDO-RS and a Study Root C-FIND both match on).
QUERY_KEYS = (
    "AccessionNumber",
    "PatientID",
    "PatientName",
    "ModalitiesInStudy",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "IssuerOfPatientID",
    "StudyInstanceUID",
)
_QUERY_HINT = "Give KEY=VALUE pairs separated by commas, e.g. PatientID=123,ModalitiesInStudy=CR; keys: " + ", ".join(
    QUERY_KEYS
)


class RetrieveError(MedlungError):
    """A PACS could not be asked (unreachable, refused the association, answered with a failure)."""


@dataclass(frozen=True)
class FilmRef:
    """One instance of a film series on the PACS."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""

    def filename(self) -> str:
        """``<SOPInstanceUID>.dcm`` (a hash for a UID that is not a plain UID: never a path)."""
        return f"{file_key(self.sop_instance_uid)}.dcm"


@dataclass
class FetchResult:
    """What :meth:`Source.fetch` did: files per SOP Instance UID, problems per SOP Instance UID."""

    files: dict[str, Path] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    fetched: int = 0  # instances brought over the network by this call (the others were on disk)


def parse_query(text: str | None) -> dict[str, str]:
    """``"PatientID=123,ModalitiesInStudy=CR"`` -> ``{"PatientID": "123", "ModalitiesInStudy": "CR"}``.

    Raises
    ------
    InvalidDestinationError
        For a pair without ``=`` or a key that is not a study-level key of :data:`QUERY_KEYS`.
    """
    keys: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or key not in QUERY_KEYS:
            raise InvalidDestinationError(
                f"query term {pair.strip()!r} is not KEY=VALUE with a known key", hint=_QUERY_HINT
            )
        keys[key] = value.strip()
    return keys


class Source:
    """A PACS to find and fetch films from (see :class:`DicomwebSource`, :class:`DimseSource`)."""

    where = ""

    def find_studies(self, keys: dict[str, str]) -> list[str]:
        """StudyInstanceUIDs of the studies matching study-level ``keys`` (all must match)."""
        raise NotImplementedError

    def find_films(self, study_instance_uid: str, modalities: Sequence[str] = FILM_MODALITIES) -> list[FilmRef]:
        """The instances of the study's series whose Modality is in ``modalities``."""
        raise NotImplementedError

    def fetch(self, films: Sequence[FilmRef], folder: Path) -> FetchResult:
        """Store ``films`` as ``folder/<SOPInstanceUID>.dcm``; those already there are kept and not fetched."""
        folder.mkdir(parents=True, exist_ok=True)
        result = FetchResult()
        missing = []
        for film in films:
            path = folder / film.filename()
            if path.is_file():
                result.files[film.sop_instance_uid] = path
            else:
                missing.append(film)
        if missing:
            self._fetch(missing, folder, result)
        for film in missing:
            if film.sop_instance_uid not in result.files:
                result.problems.setdefault(film.sop_instance_uid, f"{self.where} did not send instance")
        return result

    def _fetch(self, films: list[FilmRef], folder: Path, result: FetchResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (a listening port)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _save(dataset, folder: Path, result: FetchResult, lock: threading.Lock | None = None) -> None:
    """Write a received instance as ``folder/<SOPInstanceUID>.dcm`` (atomic; an existing file is kept)."""
    uid = str(dataset.get("SOPInstanceUID", "") or "")
    path = folder / f"{file_key(uid)}.dcm"
    if not path.exists():
        write_atomically(path, lambda temporary: dataset.save_as(temporary, enforce_file_format=True), overwrite=True)
    with lock or threading.Lock():
        result.files[uid] = path
        result.fetched += 1


# --- DICOMweb ----------------------------------------------------------------------------------------------------
class DicomwebSource(Source):
    """QIDO-RS to find, WADO-RS to fetch (instances as stored: ``application/dicom; transfer-syntax=*``).

    Parameters
    ----------
    url : str
        The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
    timeout : float
        Seconds per request.
    credentials : medlung.pacs.send.DicomwebCredentials, optional
        Default: from the environment, as STOW-RS takes them.
    """

    def __init__(self, url: str, *, timeout: float = 60.0, credentials=None) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.where = check_stow_url(url)
        if credentials is None:
            credentials = credentials_from_environment()
        headers = credentials.headers() if credentials else None
        self.client = DICOMwebClient(url=self.where, headers=headers, timeout=timeout)
        self.client.set_http_retry_params(retry=False)  # a study that fails is a row; the next run resumes it

    def find_studies(self, keys: dict[str, str]) -> list[str]:
        answers = self._ask(lambda: self.client.search_for_studies(search_filters=dict(keys), get_remaining=True))
        return _unique(_value(item, "0020000D") for item in answers)

    def find_films(self, study_instance_uid: str, modalities: Sequence[str] = FILM_MODALITIES) -> list[FilmRef]:
        series = self._ask(
            lambda: self.client.search_for_series(study_instance_uid=study_instance_uid, get_remaining=True)
        )
        films = []
        for item in series:
            if _value(item, "00080060").upper() not in modalities:
                continue
            series_uid = _value(item, "0020000E")
            instances = self._ask(
                lambda series_uid=series_uid: self.client.search_for_instances(
                    study_instance_uid=study_instance_uid, series_instance_uid=series_uid, get_remaining=True
                )
            )
            for instance in instances:
                films.append(
                    FilmRef(study_instance_uid, series_uid, _value(instance, "00080018"), _value(instance, "00080016"))
                )
        return films

    def _fetch(self, films: list[FilmRef], folder: Path, result: FetchResult) -> None:
        for film in films:
            try:
                dataset = self._ask(
                    lambda film=film: self.client.retrieve_instance(
                        film.study_instance_uid, film.series_instance_uid, film.sop_instance_uid
                    )
                )
            except RetrieveError as exc:
                result.problems[film.sop_instance_uid] = str(exc)
                continue
            if str(dataset.get("SOPInstanceUID", "")) != film.sop_instance_uid:
                result.problems[film.sop_instance_uid] = f"{self.where} sent another instance than the one asked for"
                continue
            _save(dataset, folder, result)

    def _ask(self, request):
        """Run one request; errors as one-line :class:`RetrieveError`."""
        import requests

        try:
            return request()
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            hint = " (check the credentials: $MEDLUNG_STOW_TOKEN or $MEDLUNG_STOW_USER)" if status in (401, 403) else ""
            raise RetrieveError(f"HTTP {status} from {self.where}{hint}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RetrieveError(f"no answer from {self.where} ({type(exc).__name__})") from None


def _value(item: dict, tag: str) -> str:
    """The first value of a DICOM JSON attribute, as text ('' when absent)."""
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0])


def _unique(values: Iterable[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if v]


# --- DIMSE -------------------------------------------------------------------------------------------------------
#: C-FIND / C-GET / C-MOVE statuses that end a request well (success) or mean "more to come" (pending).
_SUCCESS, _PENDING = {0x0000}, {0xFF00, 0xFF01}


class DimseSource(Source):
    """C-FIND (Study Root) to find, C-GET or C-MOVE to fetch.

    Parameters
    ----------
    destination : str or Destination
        ``AE@HOST:PORT`` of the PACS.
    calling_ae : str
        Our AE title.
    retrieve : str
        ``"get"`` (C-GET: the instances come back on the association) or
        ``"move"`` (C-MOVE to ``move_ae``, which the PACS must know as this
        host and ``move_port``).
    move_ae, move_port : str, int
        The AE title and port medlung listens as during a C-MOVE (all
        interfaces; plain DICOM).
    tls : TlsConfig, optional
        DICOM TLS for the associations medlung opens.
    timeout : float
        Seconds for connecting, association and each answer.
    """

    def __init__(
        self,
        destination: str | Destination,
        *,
        calling_ae: str = "MEDLUNG",
        retrieve: str = "get",
        move_ae: str | None = None,
        move_port: int | None = None,
        tls: TlsConfig | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.target = destination if isinstance(destination, Destination) else parse_destination(destination)
        self.where = str(self.target)
        if not AE_TITLE_PATTERN.match(calling_ae or ""):
            raise InvalidDestinationError(f"calling AE title {calling_ae!r} is not 1-16 printable characters")
        if retrieve not in ("get", "move"):
            raise ValueError(f"retrieve must be 'get' or 'move'; got {retrieve!r}.")
        if retrieve == "move" and (not move_ae or not AE_TITLE_PATTERN.match(move_ae) or not move_port):
            raise InvalidDestinationError(
                "C-MOVE needs the AE title and port medlung receives on",
                hint="Give --move-ae AE and --move-port PORT, and declare that AE (this host, that port) on the PACS.",
            )
        self.calling_ae, self.retrieve, self.move_ae, self.move_port = calling_ae, retrieve, move_ae, move_port
        self.tls_args = (tls.client_context(), self.target.host) if tls is not None else None
        self.timeout = timeout

    # find
    def find_studies(self, keys: dict[str, str]) -> list[str]:
        answers = self._find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", **keys})
        return _unique(str(a.get("StudyInstanceUID", "")) for a in answers)

    def find_films(self, study_instance_uid: str, modalities: Sequence[str] = FILM_MODALITIES) -> list[FilmRef]:
        series = self._find(
            {
                "QueryRetrieveLevel": "SERIES",
                "StudyInstanceUID": study_instance_uid,
                "SeriesInstanceUID": "",
                "Modality": "",
            }
        )
        films = []
        for item in series:
            if str(item.get("Modality", "")).upper() not in modalities:
                continue
            series_uid = str(item.get("SeriesInstanceUID", ""))
            for instance in self._find(
                {
                    "QueryRetrieveLevel": "IMAGE",
                    "StudyInstanceUID": study_instance_uid,
                    "SeriesInstanceUID": series_uid,
                    "SOPInstanceUID": "",
                    "SOPClassUID": "",
                }
            ):
                uid = str(instance.get("SOPInstanceUID", ""))
                if uid:
                    films.append(FilmRef(study_instance_uid, series_uid, uid, str(instance.get("SOPClassUID", ""))))
        return films

    def _find(self, keys: dict[str, Any]) -> list:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND  # type: ignore[attr-defined]

        query = Dataset()
        for keyword, value in keys.items():
            setattr(query, keyword, value)
        answers = []
        with self._association([FIND]) as assoc:
            for status, identifier in assoc.send_c_find(query, FIND):
                code = _status(status, "C-FIND", self.where)
                if code in _PENDING and identifier is not None:
                    answers.append(identifier)
        return answers

    # fetch
    def _fetch(self, films: list[FilmRef], folder: Path, result: FetchResult) -> None:
        if self.retrieve == "get":
            self._get(films, folder, result)
        else:
            self._move(films, folder, result)

    def _get(self, films: list[FilmRef], folder: Path, result: FetchResult) -> None:
        from pynetdicom import build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET  # type: ignore[attr-defined]

        lock = threading.Lock()  # the C-STORE sub-operations run on the association's thread

        def stored(event):
            _save(event.dataset, folder, result, lock)
            return 0x0000

        roles = [build_role(sop_class, scp_role=True) for sop_class in FILM_STORAGE_CLASSES]
        handlers = [(evt.EVT_C_STORE, _with_file_meta(stored))]
        with self._association([GET], storage=True, roles=roles, handlers=handlers) as assoc:
            for film in films:
                for status, _ in assoc.send_c_get(_image_query(film), GET):
                    code = _status(status, "C-GET", self.where, quiet=True)
                    if code not in _PENDING | _SUCCESS:
                        result.problems[film.sop_instance_uid] = f"C-GET from {self.where} ended with 0x{code:04X}"

    def _move(self, films: list[FilmRef], folder: Path, result: FetchResult) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # type: ignore[attr-defined]

        lock = threading.Lock()

        def stored(event):
            _save(event.dataset, folder, result, lock)
            return 0x0000

        receiver = AE(ae_title=str(self.move_ae))
        for sop_class in FILM_STORAGE_CLASSES:
            receiver.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        receiver.acse_timeout = receiver.dimse_timeout = receiver.network_timeout = self.timeout
        try:
            server = receiver.start_server(
                ("", int(self.move_port or 0)), block=False, evt_handlers=[(evt.EVT_C_STORE, _with_file_meta(stored))]
            )
        except OSError as exc:
            raise RetrieveError(
                f"cannot listen on port {self.move_port} for the C-MOVE ({exc.strerror or exc})",
                hint="Choose a free --move-port.",
            ) from None
        try:
            with self._association([MOVE]) as assoc:
                for film in films:
                    for status, _ in assoc.send_c_move(_image_query(film), self.move_ae, MOVE):
                        code = _status(status, "C-MOVE", self.where, quiet=True)
                        if code not in _PENDING | _SUCCESS:
                            result.problems[film.sop_instance_uid] = (
                                f"C-MOVE from {self.where} to {self.move_ae} ended with 0x{code:04X}"
                                + (" (does the PACS know that AE title?)" if code == 0xA801 else "")
                            )
        finally:
            if server is not None:
                server.shutdown()

    def _association(self, models, *, storage: bool = False, roles=(), handlers=()):
        """An established association (a context manager that releases it) or :class:`RetrieveError`."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES

        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = self.timeout
        for model in models:
            ae.add_requested_context(model)
        if storage:  # the storage classes a C-GET brings back, in every syntax pynetdicom knows
            for sop_class in FILM_STORAGE_CLASSES:
                ae.add_requested_context(sop_class, ALL_TRANSFER_SYNTAXES)
        assoc = ae.associate(
            self.target.host,
            self.target.port,
            ae_title=self.target.ae_title,
            ext_neg=list(roles) or None,
            evt_handlers=list(handlers) or None,
            tls_args=self.tls_args,
        )
        if not assoc.is_established:
            how = "rejected" if assoc.is_rejected else "not established (no connection, or aborted)"
            raise RetrieveError(
                f"association with {self.where} {how}",
                hint=f"Check that the PACS runs, is reachable and accepts AE title {self.calling_ae}.",
            )
        return _Released(assoc)


class _Released:
    """Release an association when the ``with`` block ends."""

    def __init__(self, assoc) -> None:
        self.assoc = assoc

    def __enter__(self):
        return self.assoc

    def __exit__(self, *exc) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def _with_file_meta(save):
    """A C-STORE handler that gives the received dataset its File Meta before ``save``; any error -> 0xA700."""

    def handler(event):
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            return save(event)
        except Exception:
            return 0xA700  # out of resources: the instance is reported as not sent

    return handler


def _image_query(film: FilmRef):
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = film.study_instance_uid
    query.SeriesInstanceUID = film.series_instance_uid
    query.SOPInstanceUID = film.sop_instance_uid
    return query


def _status(status, what: str, where: str, quiet: bool = False) -> int:
    """The status code of an answer; no answer at all -> :class:`RetrieveError`; a failure of a find -> one too."""
    if status is None or "Status" not in status:
        raise RetrieveError(f"{what} to {where}: no answer (the association broke or timed out)")
    code = int(status.Status)
    if not quiet and code not in _SUCCESS | _PENDING:
        comment = str(status.get("ErrorComment", "") or "")
        raise RetrieveError(f"{what} to {where} failed with status 0x{code:04X}{': ' + comment if comment else ''}")
    return code


def open_source(address: str, *, retrieve: str = "get", tls: TlsConfig | None = None, **dimse: Any) -> Source:
    """The :class:`Source` for ``address``: an ``http(s)://`` DICOMweb root, or ``AE@HOST:PORT`` (DIMSE).

    ``retrieve``, ``tls`` and ``dimse`` (``calling_ae``, ``move_ae``, ``move_port``, ``timeout``) are those of
    :class:`DimseSource`; a DICOMweb source takes only ``timeout``.

    Raises
    ------
    InvalidDestinationError
        When the address is neither, or the DIMSE options do not fit.
    """
    text = str(address or "").strip()
    if text.lower().startswith(("http://", "https://")):
        if retrieve == "move" or tls is not None:
            raise InvalidDestinationError(
                "C-MOVE and DICOM TLS options apply to a DIMSE source (AE@HOST:PORT), not to DICOMweb",
                hint="Drop --retrieve move / --tls-*, or give the PACS as AE@HOST:PORT.",
            )
        return DicomwebSource(text, timeout=dimse.get("timeout", 60.0))
    return DimseSource(text, retrieve=retrieve, tls=tls, **dimse)
