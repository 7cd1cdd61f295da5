"""Pull studies from a PACS, segment their films and send the results back: the work behind ``medlung pull``.

The studies are named by StudyInstanceUID, by AccessionNumber, or by a
study-level query (:func:`medlung.pacs.retrieve.parse_query`); each is looked
up on the PACS (:mod:`medlung.pacs.retrieve`), its CR/DX films are fetched,
and then every film goes through :func:`medlung.pipeline.batch.predict_files`,
the same pipeline as ``medlung predict`` (same outputs, same report, the
SEG and SR sent with ``--send`` / ``--stow``). Under OUT::

    OUT/films/<StudyInstanceUID>/<SOPInstanceUID>.dcm   the films fetched
    OUT/<SOPInstanceUID>_seg.dcm, _sr.dcm, ...           predict's outputs; report.csv / report.json (one row per film)
    OUT/pull.csv, pull.json                               one row per study of this run (see STUDY_COLUMNS)
    OUT/pull-state.json                                   the studies finished so far

Resuming: a study listed as finished in ``pull-state.json`` is not asked for
again (status ``skipped``); of the others, films already in ``OUT/films``
are not fetched again and films whose outputs all exist are not segmented
again (their results are sent again when sending: the PACS keeps one copy
per UID). A study is finished when all its films were fetched, segmented
and, when asked, their results stored. One study that fails (unknown,
unreachable, refused) is a row with its error; the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlung.atomic import write_atomically
from medlung.defaults import DICOM_FORMATS
from medlung.errors import MedlungError
from medlung.pacs.retrieve import FILM_MODALITIES, Source
from medlung.pipeline.batch import predict_files, send_results
from medlung.pipeline.settings import PredictSettings
from medlung.uids import file_key
from medlung.writers.report import Report

__all__ = ["STUDY_COLUMNS", "PullResult", "StudySelection", "pull_studies", "selection_from_lists"]

#: Columns of ``pull.csv`` / ``pull.json``.
STUDY_COLUMNS = (
    "study_instance_uid",
    "accession_number",
    "status",
    "films",
    "fetched",
    "segmented",
    "sent",
    "error",
)
STATE_FILE = "pull-state.json"
FILMS_FOLDER = "films"


@dataclass
class StudySelection:
    """Which studies to pull.

    Attributes
    ----------
    study_uids : list of str
        StudyInstanceUIDs.
    accession_numbers : list of str
        AccessionNumbers (each may name several studies).
    query : dict
        Study-level keys that must all match (e.g. ``{"PatientID": "123", "ModalitiesInStudy": "CR"}``).
    modalities : tuple of str
        Modalities of the series whose instances are fetched.
    """

    study_uids: list[str] = field(default_factory=list)
    accession_numbers: list[str] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    modalities: tuple[str, ...] = FILM_MODALITIES

    def __bool__(self) -> bool:
        return bool(self.study_uids or self.accession_numbers or self.query)


@dataclass
class PullResult:
    """The outcome of :func:`pull_studies`: one row per study, and the films' predict report."""

    studies: list[dict]
    films: Report | None
    report: Report

    @property
    def failed(self) -> int:
        """Studies with status ``error``."""
        return sum(row["status"] == "error" for row in self.studies)


def pull_studies(
    source: Source,
    selection: StudySelection,
    out: Path,
    segmenter,
    settings: PredictSettings,
    *,
    on_study: Callable[[dict], None] | None = None,
    on_film: Callable[[dict], None] | None = None,
    on_films: Callable[[int], None] | None = None,
) -> PullResult:
    """Find, fetch, segment and send the selected studies (see the module notes).

    Parameters
    ----------
    source : medlung.pacs.retrieve.Source
        The PACS.
    selection : StudySelection
        The studies.
    out : Path
        Output folder (created).
    segmenter : medlung.inference.Segmenter
        The loaded model.
    settings : PredictSettings
        What to write and where to send it (``send``, ``stow``).
    on_study : callable, optional
        Called with each study's row once its films are fetched (or it failed or was skipped).
    on_film : callable, optional
        Called with each film's report row (see :func:`~medlung.pipeline.batch.predict_files`).
    on_films : callable, optional
        Called once with the number of films about to be segmented.

    Returns
    -------
    PullResult
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, overwrite=settings.overwrite, name="pull", columns=STUDY_COLUMNS)
    report.keep_earlier()
    finished = {} if settings.overwrite else _read_state(out)
    rows: dict[str, dict] = {}
    films_of: dict[str, list[Path]] = {}

    def row_done(row: dict) -> None:
        if on_study:
            on_study(row)

    for uid, accession, problem in _studies(source, selection):
        if problem is not None:  # an accession number or a query that names no study
            row = _row(uid, accession, "error", error=problem)
            rows[f"?{len(rows)}"] = row
            row_done(row)
            continue
        if uid in rows:
            continue
        if uid in finished:
            row = _row(uid, accession, "skipped", films=finished[uid].get("films"))
            rows[uid] = row
            row_done(row)
            continue
        row = rows[uid] = _row(uid, accession, "ok")
        try:
            refs = source.find_films(uid, selection.modalities)
            row["films"] = len(refs)
            if not refs:
                row.update(
                    status="empty",
                    error=f"no {'/'.join(selection.modalities)} instances in this study on {source.where}",
                )
            else:
                fetched = source.fetch(refs, out / FILMS_FOLDER / file_key(uid))
                row["fetched"] = fetched.fetched
                films_of[uid] = [fetched.files[r.sop_instance_uid] for r in refs if r.sop_instance_uid in fetched.files]
                if fetched.problems:
                    first = next(iter(fetched.problems.values()))
                    row.update(
                        status="error", error=f"{len(fetched.problems)} of {len(refs)} films not fetched: {first}"
                    )
        except MedlungError as exc:
            row.update(status="error", error=str(exc))
        row_done(row)

    study_of = {path: uid for uid, paths in films_of.items() for path in paths}
    paths = list(study_of)
    films = None
    if paths:
        if on_films:
            on_films(len(paths))
        films = predict_files(paths, out, segmenter, settings, on_film)
        for film_row in films.rows:
            _account(rows[study_of[Path(film_row["file"])]], film_row, settings)
    for uid, row in rows.items():
        if row["status"] == "ok":
            finished[uid] = {"films": row["films"], "accession_number": row["accession_number"]}
        report.add(row)
    _write_state(out, finished)
    return PullResult(list(rows.values()), films, report)


def _studies(source: Source, selection: StudySelection):
    """``(StudyInstanceUID, AccessionNumber or '', problem or None)`` for every study selected, in order."""
    for uid in selection.study_uids:
        yield uid, "", None
    for accession in selection.accession_numbers:
        try:
            found = source.find_studies({"AccessionNumber": accession})
        except MedlungError as exc:
            yield "", accession, str(exc)
            continue
        if not found:
            yield "", accession, f"no study with AccessionNumber {accession} on {source.where}"
        for uid in found:
            yield uid, accession, None
    if selection.query:
        terms = ",".join(f"{k}={v}" for k, v in selection.query.items())
        try:
            found = source.find_studies(selection.query)
        except MedlungError as exc:
            yield "", "", f"query {terms}: {exc}"
            return
        if not found:
            yield "", "", f"no study on {source.where} matches {terms}"
        for uid in found:
            yield uid, "", None


def _row(uid: str, accession: str, status: str, **values) -> dict:
    row: dict[str, Any] = {column: None for column in STUDY_COLUMNS}
    row.update(study_instance_uid=uid, accession_number=accession, status=status, **values)
    return row


def _account(row: dict, film_row: dict, settings: PredictSettings) -> None:
    """Count a film's report row in its study's row; resend the results of a film skipped as done."""
    sending = bool(settings.send or settings.stow)
    status = film_row["status"]
    if status == "skipped" and sending:  # segmented by an earlier run whose study did not finish: send again
        results = [Path(p) for p in film_row.get("outputs") or [] if _is_result(p)]
        problem = (
            send_results(results, Path(film_row["file"]) if settings.send_source else None, settings)
            if results
            else None
        )
        if problem:
            status, film_row = "error", {**film_row, "error": problem}
    if status in ("ok", "skipped"):
        row["segmented"] = (row["segmented"] or 0) + 1
        if sending:
            row["sent"] = (row["sent"] or 0) + 1
        return
    row["status"] = "error"
    row["error"] = row["error"] or film_row.get("error") or "a film failed"


def _is_result(path: str) -> bool:
    names = {"seg": "_seg.dcm", "sr": "_sr.dcm"}
    return any(str(path).endswith(names[kind]) for kind in DICOM_FORMATS)


def _read_state(out: Path) -> dict[str, dict]:
    path = out / STATE_FILE
    try:
        return dict(json.loads(path.read_text()).get("finished", {}))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as exc:
        raise MedlungError(
            f"cannot be read ({type(exc).__name__})", path, "Delete it to pull every study again, or fix it."
        ) from None


def _write_state(out: Path, finished: dict[str, dict]) -> None:
    text = json.dumps({"finished": finished}, indent=2, sort_keys=True)

    def write(temporary: Path) -> None:
        temporary.write_text(text)

    write_atomically(out / STATE_FILE, write, overwrite=True)


def selection_from_lists(
    study_uids: Sequence[str],
    accession_numbers: Sequence[str],
    study_list: Path | None,
    accession_list: Path | None,
    query: dict[str, str],
    modalities: Sequence[str] = FILM_MODALITIES,
) -> StudySelection:
    """A :class:`StudySelection` from command-line values and files holding one value a line (``#`` comments)."""
    uids, accessions = list(study_uids), list(accession_numbers)
    for path, target in ((study_list, uids), (accession_list, accessions)):
        if path is not None:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                value = line.split("#", 1)[0].strip()
                if value:
                    target.append(value)
    return StudySelection(
        list(dict.fromkeys(uids)),
        list(dict.fromkeys(accessions)),
        dict(query),
        tuple(m.strip().upper() for m in modalities if m.strip()),
    )
