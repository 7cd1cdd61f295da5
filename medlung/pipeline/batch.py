"""Segment many films into an output folder: the work behind ``medlung predict`` and the bundle.

For an input ``<stem>.<ext>`` it writes ``<stem>_seg.dcm`` and ``<stem>_sr.dcm``
(DICOM inputs), ``<stem>_lungs.png``, ``<stem>_labels.nii.gz``, ``<stem>_overlay.png`` and a
row in ``report.csv`` / ``report.json``. One bad file never stops the batch.
Re-running into the same folder skips films whose outputs all exist (status
``skipped``) and writes only the missing outputs of the others, unless
``overwrite`` is set; the earlier report is kept as ``report.<n>.csv``.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medlung.defaults import DICOM_FORMATS, OUTPUT_FORMATS
from medlung.errors import MedlungError, QualityCheckError
from medlung.io import load_film
from medlung.pipeline.settings import PredictSettings, load_segmenter
from medlung.quality import QC_OK
from medlung.spacing import format_spacing
from medlung.writers.naming import output_stems
from medlung.writers.report import Report

#: SeriesDescription of a SEG; a flagged film's adds its reason codes (``Lungs (medlung) [QC: not_chest]``).
SEG_SERIES_DESCRIPTION = "Lungs (medlung)"
#: SeriesDescription of the DICOM SR measurement report (with the same QC suffix as the SEG's).
SR_SERIES_DESCRIPTION = "Lung measurements (medlung)"
#: One DICOM-SEG encoded at a time per process (see write_outputs).
_SEG_ENCODE_LOCK = threading.Lock()
#: Extensions of files taken from folders; extension-less files are taken too (DICOM often has none).
FILM_EXTENSIONS = {
    ".dcm",
    ".dicom",
    ".dic",
    ".ima",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    "",
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".nii",
    ".nii.gz",
}


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursive) into film paths, in a stable order; ``-`` reads paths from stdin.

    Paths that do not exist are kept, so that they are reported as errors.
    """
    found: list[Path] = []
    for item in inputs:
        if str(item) == "-":
            found.extend(collect_inputs(line.strip() for line in sys.stdin if line.strip()))
            continue
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if (
                    child.is_file()
                    and not child.name.startswith(".")
                    and child.name.upper() != "DICOMDIR"
                    and _film_suffix(child) in FILM_EXTENSIONS
                ):
                    found.append(child)
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def predict_files(
    paths: list[Path], out: Path, segmenter, settings: PredictSettings, progress: Callable[[dict], None] | None = None
) -> Report:
    """Segment ``paths`` into ``out``; return the report (also written there).

    With one worker the films go through a pipeline of three threads: the
    next film is read while this one is segmented, and the last one's outputs
    are written meanwhile (decoding, torch and zlib release the GIL). At most
    :data:`FILMS_IN_FLIGHT` films are held at once; rows reach the report and
    ``progress`` in input order. With ``settings.workers`` > 1, that many
    films are each read, segmented and written by their own thread.

    Parameters
    ----------
    paths : list of Path
        Films (see :func:`collect_inputs`).
    out : Path
        Output folder (created).
    segmenter : medlung.inference.Segmenter or None
        The model ``settings`` describe, loaded (:func:`~medlung.pipeline.settings.load_segmenter`);
        ``None`` loads it here.
    settings : medlung.pipeline.settings.PredictSettings
        How to segment and what to write.
    progress : callable, optional
        Called with each finished report row.
    """
    from medlung.memory import MemoryBudget, default_budget

    out = Path(out)
    if segmenter is None:
        segmenter = load_segmenter(settings)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, overwrite=settings.overwrite, identifiers=settings.include_identifiers)
    report.keep_earlier()
    stems = output_stems(paths)
    budget = MemoryBudget(settings.max_memory or default_budget())

    def finished(row: dict) -> None:
        report.add(row)
        if progress:
            progress(row)

    if settings.workers > 1:
        with ThreadPoolExecutor(max_workers=settings.workers) as pool:
            for row in pool.map(
                lambda path: segment_one(path, out / stems[path], segmenter, settings, budget=budget), paths
            ):
                finished(row)
    else:
        _pipelined(paths, out, stems, segmenter, settings, finished, budget)
    return report


#: Films a one-worker batch holds at once: the one being segmented (then written) and the next one being read.
FILMS_IN_FLIGHT = 2
#: How often a thread of the pipeline waiting on another looks whether the batch was stopped, seconds.
_POLL_S = 0.2
_END = object()


def _pipelined(
    paths: list[Path], out: Path, stems: dict, segmenter, settings: PredictSettings, finished, budget=None
) -> None:
    """Read (thread), segment (this thread) and write (thread) films in order; ``finished(row)`` from the writer.

    An exception in ``finished`` (the report cannot be written, a progress
    callback fails) or a Ctrl-C here stops the three stages and is raised
    here, after the film being written is whole (atomic writes).
    """
    slots = threading.BoundedSemaphore(FILMS_IN_FLIGHT)
    loaded: queue.Queue = queue.Queue()
    segmented: queue.Queue = queue.Queue()
    stop = threading.Event()
    failure: list[BaseException] = []

    def wait_slot() -> bool:
        while not slots.acquire(timeout=_POLL_S):
            if stop.is_set():
                return False
        return True

    def read() -> None:
        try:
            for path in paths:
                if not wait_slot():
                    return
                loaded.put(_Job.load(path, out / stems[path], settings, segmenter, budget=budget))
        except BaseException as exc:  # pragma: no cover - _Job.load keeps a film's errors in its row
            failure.append(exc)
            stop.set()
        finally:
            loaded.put(_END)

    def write() -> None:
        try:
            while True:
                job = _get(segmented, stop)
                if job is _END or job is None:
                    return
                try:
                    finished(job.write(segmenter, settings))
                finally:
                    slots.release()
        except BaseException as exc:
            failure.append(exc)
            stop.set()

    reader = threading.Thread(target=read, name="medlung-read", daemon=True)
    writer = threading.Thread(target=write, name="medlung-write", daemon=True)
    reader.start()
    writer.start()
    try:
        while True:
            job = _get(loaded, stop)
            if job is _END or job is None:
                break
            job.segment(segmenter, settings)
            segmented.put(job)
        segmented.put(_END)
        while writer.is_alive():
            writer.join(_POLL_S)
    finally:
        stop.set()  # Ctrl-C or an error: the reader stops, the writer ends the film it is writing
        writer.join()
        reader.join()
    if failure:
        raise failure[0]


def _get(source, stop: threading.Event):
    """The next item of ``source``, or None once ``stop`` is set."""
    while not stop.is_set():
        try:
            return source.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return None


class _Job:
    """One film on its way through the pipeline: its report row, then its film, masks and output paths.

    Each step keeps a failure in the row (status ``error``) and marks the job
    done; the later steps then do nothing. ``seconds`` in the row is the time
    the steps took, not the time the film waited between them.
    """

    def __init__(self, path: Path, prefix: Path) -> None:
        self.path, self.prefix = Path(path), Path(prefix)
        self.row: dict = {"file": str(path), "status": "error"}
        self.done = False
        self.seconds = 0.0
        self.film: Any = None  # medlung.film.Film once read
        self.masks: Any = None  # medlung.inference.LungMasks once segmented
        self.targets: dict[str, Path] = {}
        self.budget: Any = None  # the medlung.memory.MemoryBudget the film's cost is held in
        self.held = 0

    @classmethod
    def load(
        cls, path: Path, prefix: Path, settings: PredictSettings, segmenter=None, budget=None, loader=None
    ) -> _Job:
        """Read the film and decide which outputs to write (none when a re-run finds them all: ``skipped``).

        ``segmenter`` (optional) gives the working grid a film read with ``settings.decode="reduced"`` is
        decoded for. ``budget`` (a :class:`medlung.memory.MemoryBudget`) is held for the film's declared
        decode cost until :meth:`write` returns; ``loader`` reads the film instead of
        :func:`medlung.io.load_film` (same arguments: the node reads it in a child process).
        """
        job = cls(path, prefix)
        spec = getattr(segmenter, "spec", None)
        job._step(job._load, settings, getattr(spec, "working_spacing", None), budget, loader or load_film)
        if job.done:
            job._release()
        return job

    def _release(self) -> None:
        if self.budget is not None and self.held:
            self.budget.release(self.held)
        self.held = 0

    def segment(self, segmenter, settings: PredictSettings) -> None:
        """Segment the film (``--qc-fail`` turns a flagged film into an error here)."""
        self._step(self._segment, segmenter, settings)

    def write(self, segmenter, settings: PredictSettings) -> dict:
        """Write the outputs, send the SEG and SR when asked; return the finished report row."""
        try:
            self._step(self._write, segmenter, settings)
        finally:
            self.film = self.masks = None
            self._release()
        self.row["seconds"] = round(self.seconds, 3)
        return self.row

    def _step(self, step, *args) -> None:
        if self.done:
            return
        started = time.perf_counter()
        try:
            step(*args)
        except MedlungError as exc:
            self.row["error"], self.done = str(exc), True
        except Exception as exc:  # one bad film never stops the batch
            self.row["error"], self.done = f"{self.path}: unexpected {type(exc).__name__}: {exc}", True
        finally:
            self.seconds += time.perf_counter() - started

    def _load(self, settings: PredictSettings, working_spacing: float | None, budget, loader) -> None:
        from medlung.writers.overlay import MAX_SIDE

        row = self.row
        if budget is not None:
            from medlung.io.headers import film_cost

            cost = film_cost(self.path, settings.decode, settings.max_pixels)
            if cost is not None:  # no size in the header: the reader refuses the file or checks it itself
                self.held, self.budget = budget.acquire(cost, self.path), budget
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            film = loader(
                self.path,
                spacing=settings.spacing,
                max_pixels=settings.max_pixels,
                decode=settings.decode,
                working_spacing=working_spacing,
                preview_side=MAX_SIDE if "overlay" in settings.formats else None,
            )
        if settings.include_identifiers and film.dataset is not None:
            row.update(
                patient_id=str(film.dataset.get("PatientID", "") or ""),
                study_instance_uid=str(film.dataset.get("StudyInstanceUID", "") or ""),
            )
        row.update(
            rows=film.rows,
            cols=film.cols,
            spacing_mm=list(film.spacing) if film.spacing else None,
            spacing_source=film.spacing_source,
            calibrated=film.calibrated,
        )
        targets = planned_outputs(self.prefix, film, settings.formats)
        check_output_sizes(self.path, film.shape, targets)  # before anything is written or segmented
        if not settings.overwrite:
            kept = {kind: p for kind, p in targets.items() if p.exists() or p.is_symlink()}
            if kept and len(kept) == len(targets):
                row.update(
                    status="skipped",
                    outputs=[str(p) for p in targets.values()],
                    notes=["all outputs exist from an earlier run: skipped (--overwrite redoes them)"],
                )
                self.done = True
                return
            targets = {kind: p for kind, p in targets.items() if kind not in kept}
        self.film, self.targets = film, targets

    def _segment(self, segmenter, settings: PredictSettings) -> None:
        masks = segmenter(self.film)
        row = self.row
        row.update(_areas(masks))
        row.update(qc=masks.qc, qc_reasons=[str(r) for r in masks.qc_reasons])
        if masks.dice_estimate is not None:
            row.update(masks.dice_estimate.report_fields())
        if masks.qc != QC_OK and settings.qc_fail:
            raise QualityCheckError(
                f"quality check failed ({'; '.join(row['qc_reasons'])})",
                self.path,
                "No outputs written (--qc-fail); run without --qc-fail to keep them.",
            )
        self.masks = masks

    def _write(self, segmenter, settings: PredictSettings) -> None:
        film, masks, targets, row = self.film, self.masks, self.targets, self.row
        outputs = write_outputs(film, masks, targets, segmenter.model_version, settings, segmenter)
        row["outputs"] = [str(p) for p in outputs]
        notes = list(film.warnings) + list(masks.notes)
        if "seg" in targets:
            from medlung.writers.dicom_seg import source_problems

            notes += source_problems(film)
        if masks.empty:
            notes.append(f"lung not found: {', '.join(masks.empty)}")
        row["notes"] = notes
        row["status"] = "ok"
        results = [targets[kind] for kind in DICOM_FORMATS if kind in targets]
        if results and (settings.send or settings.stow):
            sent_error = send_results(results, self.path if settings.send_source else None, settings)
            if sent_error:
                row["status"], row["error"] = "error", sent_error


def segment_one(path: Path, prefix: Path, segmenter, settings: PredictSettings, budget=None, loader=None) -> dict:
    """Segment one film and write its outputs next to ``prefix`` (``<prefix>_lungs.png`` ...); return its report row.

    A film that cannot be read, segmented or written gives a row with status
    ``error`` (never an exception); ``segmenter`` is not used when the film
    cannot be read or its outputs all exist. ``budget`` and ``loader``: see
    :meth:`_Job.load` (the node reads each film in a child process).
    """
    job = _Job.load(path, prefix, settings, segmenter, budget=budget, loader=loader)
    job.segment(segmenter, settings)
    return job.write(segmenter, settings)


def planned_outputs(prefix: Path, film, formats) -> dict[str, Path]:
    """The files a film will produce (SEG and SR only for DICOM films)."""
    names = {
        "seg": "_seg.dcm",
        "sr": "_sr.dcm",
        "png": "_lungs.png",
        "nifti": "_labels.nii.gz",
        "overlay": "_overlay.png",
        "mha": "_labels.mha",
    }
    targets = {f: prefix.parent / (prefix.name + names[f]) for f in formats}
    if film.dataset is None:
        for kind in DICOM_FORMATS:
            targets.pop(kind, None)
    return targets


#: Largest side each output can store, pixels: NIfTI-1 keeps its dimensions as 16-bit signed integers, a DICOM-SEG
#: its Rows and Columns as 16-bit unsigned ones (PNG, MetaImage and the shrunk overlay have no such limit in practice).
OUTPUT_MAX_SIDE = {"nifti": 32767, "seg": 65535}


def check_output_sizes(path: Path, shape: tuple[int, int], targets: dict) -> None:
    """Refuse a film too large for one of the outputs asked for, before any output is written.

    Raises
    ------
    UnsupportedImageError
        Naming the output and the ``--format`` that leaves it out.
    """
    from medlung.errors import UnsupportedImageError

    rows, cols = shape
    for kind, limit in OUTPUT_MAX_SIDE.items():
        if kind in targets and max(rows, cols) > limit:
            others = ",".join(f for f in OUTPUT_FORMATS if f in targets and f != kind) or "png"
            raise UnsupportedImageError(
                f"is {cols} x {rows} px, more than the {limit} px a side a {kind} output can store; nothing written",
                path,
                f"Leave {kind} out (--format {others}).",
            )


def write_outputs(
    film, masks, targets: dict[str, Path], model_version: str, settings: PredictSettings, segmenter=None
) -> list[Path]:
    """Write the requested files for one film, concurrently (compression releases the GIL).

    Each file is written atomically; if one writer fails, the others still
    finish and the first error is raised. ``segmenter`` (the one that made
    ``masks``) gives the options that enter the DICOM-SEG's (and SR's) UIDs. The SR
    references the SEG by its deterministic UIDs, so both are written at once.
    """
    from medlung.film import preview_shape
    from medlung.inference.reporting import report_items
    from medlung.quality import series_description
    from medlung.writers.dicom_seg import seg_identity, write_dicom_seg
    from medlung.writers.dicom_sr import write_dicom_sr
    from medlung.writers.masks import write_labels_mha, write_labels_nifti, write_lungs_png
    from medlung.writers.overlay import MAX_SIDE, write_overlay

    def seg_writer(path):
        with _SEG_ENCODE_LOCK:  # pylibjpeg-openjpeg's encoder crashed (SIGSEGV) with two SEGs encoding at once
            return write_dicom_seg(
                film,
                masks.labels,
                path,
                model_version=model_version,
                options=seg_options(segmenter, masks, settings),
                transfer_syntax=settings.seg_syntax,
                overwrite=settings.overwrite,
                lungs=masks.convention,
                series_description=series_description(SEG_SERIES_DESCRIPTION, masks.qc_reasons),
            )

    def sr_writer(path):
        seg_uids, options_written = seg_identity(
            film, model_version, seg_options(segmenter, masks, settings), settings.seg_syntax
        )
        return write_dicom_sr(
            film,
            report_items(masks),
            path,
            seg=seg_uids,
            model_version=model_version,
            options=options_written,
            overwrite=settings.overwrite,
            series_description=series_description(SR_SERIES_DESCRIPTION, masks.qc_reasons),
        )

    writers = {
        "seg": seg_writer,
        "sr": sr_writer,
        "png": lambda path: write_lungs_png(path, masks.labels, film.spacing, settings.overwrite),
        "nifti": lambda path: write_labels_nifti(path, masks.labels, film.spacing, settings.overwrite),
        "mha": lambda path: write_labels_mha(path, masks.labels, film.spacing, settings.overwrite),
        "overlay": lambda path: write_overlay(  # from a reduced decode of the film when it was read so
            path,
            film.pixels_at_least(preview_shape(film.shape, MAX_SIDE), "picture"),
            masks.labels,
            overlay_lines(film, masks),
            settings.overwrite,
        ),
    }
    kinds = [kind for kind in OUTPUT_FORMATS if kind in targets]
    with ThreadPoolExecutor(max_workers=max(1, len(kinds))) as pool:
        futures = [pool.submit(writers[kind], targets[kind]) for kind in kinds]
    return [future.result() for future in futures]


def seg_options(segmenter, masks, settings: PredictSettings) -> dict:
    """The options that change a SEG's content (they enter its deterministic UIDs).

    :func:`medlung.uids.output_options` of the segmenter and of this run's
    settings (:meth:`~medlung.pipeline.settings.PredictSettings.output_options`:
    spacing override, SEG syntax, ``extra_options``).
    """
    from medlung.uids import output_options

    found = output_options(segmenter, **settings.output_options())
    found.setdefault("working_spacing", masks.working_spacing)
    return found


def overlay_lines(film, masks) -> list[str]:
    """Text written on an overlay."""
    from medlung.writers.overlay import area_lines

    lines = area_lines(masks)
    if film.spacing:
        lines.append(f"spacing {format_spacing(film.spacing)} from {film.spacing_source}")
    if masks.orientation_check.endswith("fixed"):
        lines.append(f"orientation detected: {'/'.join(masks.orientation)}")
    elif masks.orientation_assumed:
        lines.append("orientation assumed: standard PA")
    if masks.qc_reasons:
        lines.append(f"QC flagged: {', '.join(dict.fromkeys(r.code for r in masks.qc_reasons))}")
    if masks.orientation_check not in ("ok", "unknown") and not masks.orientation_check.endswith("fixed"):
        lines.append(f"orientation check: {masks.orientation_check}")
    return lines


def result_row(masks, path=None) -> dict:
    """The report row of one segmented film (every column of ``report.csv`` it knows), as ``medlung predict`` has it.

    Used by :func:`medlung.to_dataframe` for results of the Python API, so
    that a notebook table has the report's columns and values.
    """
    film = getattr(masks, "film", None)
    rows, cols = masks.labels.shape
    row = {
        "file": None if path is None else str(path),
        "status": "ok",
        "rows": int(rows),
        "cols": int(cols),
        "spacing_mm": list(masks.spacing) if masks.spacing else None,
        "spacing_source": masks.spacing_source,
        "calibrated": masks.areas_cm2 is not None,
        "qc": masks.qc,
        "qc_reasons": [str(r) for r in masks.qc_reasons],
        "seconds": round(float(masks.seconds), 3),
        "error": None,
        "notes": list(getattr(film, "warnings", ()) or ()) + list(masks.notes),
    }
    row.update(_areas(masks))
    if masks.dice_estimate is not None:
        row.update(masks.dice_estimate.report_fields())
    return row


def _areas(masks) -> dict:
    fixed = masks.orientation_check.endswith("fixed")
    how = " (detected)" if fixed else " (assumed)" if masks.orientation_assumed else ""
    row = {
        "orientation": "\\".join(masks.orientation) + how,
        "orientation_check": masks.orientation_check,
        "empty_lungs": masks.empty,
        "lungs": masks.convention,
    }
    if masks.areas_cm2:
        row.update({f"{k}_cm2": round(v, 3) for k, v in masks.areas_cm2.items()})
    row.update({f"{k}_px": int(v) for k, v in masks.areas_px.items()})  # every film, calibrated or not
    from medlung.inference.measures import report_fields

    row.update(report_fields(masks.measures))
    return row


def send_results(results: list[Path], film_path: Path | None, settings: PredictSettings) -> str | None:
    """Send a film's results (SEG, SR) to ``settings.send`` / ``settings.stow``, and the film with ``film_path``.

    Returns
    -------
    str or None
        One error line for what was not stored, or None. The files on disk are kept either way.
    """
    from medlung import pacs

    # the results travel without the film, so that a film the PACS refuses cannot take them down with it
    batches = [list(results)] + ([[film_path]] if film_path else [])
    problems = []
    for files in batches:
        if settings.send:
            for result in pacs.send_cstore(files, settings.send, tls=settings.send_tls):
                if not result.ok:
                    problems.append(f"C-STORE to {settings.send} failed: {result.message}")
        if settings.stow:
            for result in pacs.stow_rs(files, settings.stow):
                if not result.ok:
                    problems.append(f"STOW-RS to {settings.stow} failed: {result.message}")
    return "; ".join(problems) or None


def _film_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return "" if "." not in name else name[name.rfind(".") :]
