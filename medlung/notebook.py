"""Working in Jupyter: films and masks that show themselves, batch results as a pandas DataFrame.

``Film`` and ``LungMasks`` call :func:`film_png` / :func:`masks_png` from
their ``_repr_png_`` and :func:`film_html` / :func:`masks_html` from their
``_repr_html_``: a thumbnail (the overlay of ``medlung predict``, shrunk to
:data:`THUMBNAIL_SIDE` pixels: a preview, not a measurement) with the facts
that matter (size, spacing and its source, lung areas, quality flags when
the object carries them). :func:`to_dataframe` turns what a batch returns
into one table. pandas is optional: only :func:`to_dataframe` needs it.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from medlung.errors import MedlungError

#: Longest side of a notebook thumbnail, pixels.
THUMBNAIL_SIDE = 512


def _png_bytes(picture) -> bytes:
    stream = io.BytesIO()
    picture.save(stream, format="PNG")
    return stream.getvalue()


def _spacing_text(spacing, source: str) -> str:
    from medlung.spacing import format_spacing

    return f"{format_spacing(spacing)} mm from {source}" if spacing else "unknown (areas in pixels)"


def _qc_text(obj) -> str | None:
    qc = getattr(obj, "qc", None)
    if qc is None:
        return None
    reasons = getattr(obj, "qc_reasons", None)
    if isinstance(qc, dict):  # a QC record: {"qc": ..., "reasons": [...]}
        record = qc
        qc, reasons = record.get("qc", record.get("status")), record.get("reasons", reasons)
    if isinstance(reasons, (list, tuple)):
        reasons = "; ".join(str(r) for r in reasons)
    return f"{qc}" + (f" ({reasons})" if reasons else "")


def film_facts(film) -> list[tuple[str, str]]:
    """``(label, value)`` pairs shown with a film."""
    facts = [
        ("size", f"{film.rows} rows x {film.cols} cols"),
        ("spacing", _spacing_text(film.spacing, film.spacing_source)),
        ("photometric", str(film.photometric)),
    ]
    qc = _qc_text(film)
    if qc:
        facts.append(("qc", qc))
    return facts


def masks_facts(masks) -> list[tuple[str, str]]:
    """``(label, value)`` pairs shown with a segmentation result."""
    rows, cols = masks.labels.shape
    facts = [("size", f"{rows} rows x {cols} cols"), ("spacing", _spacing_text(masks.spacing, masks.spacing_source))]
    px = masks.areas_px
    if masks.areas_cm2:
        cm2 = masks.areas_cm2
        facts.append(
            ("lungs", f"right {cm2['right']:.1f} cm², left {cm2['left']:.1f} cm², total {cm2['total']:.1f} cm²")
        )
    facts.append(("lungs (px)", f"right {px['right']:,}, left {px['left']:,}, total {px['total']:,}"))
    if masks.empty:
        facts.append(("empty", ", ".join(masks.empty)))
    estimate = getattr(masks, "dice_estimate", None)
    if estimate is not None:
        facts.append(("estimated Dice", f"{estimate.dice:.3f} (80 % interval {estimate.low:.3f}-{estimate.high:.3f})"))
    qc = _qc_text(masks)
    if qc:
        facts.append(("qc", qc))
    facts.append(("model", str(masks.model_version)))
    return facts


def film_png(film) -> bytes:
    """A PNG thumbnail of the film, with its size and spacing written on it."""
    from medlung.writers.overlay import overlay_picture

    lines = [f"{label} {value}" for label, value in film_facts(film)[:2]]
    empty = np.zeros(film.shape, np.uint8)
    return _png_bytes(overlay_picture(film.pixels, empty, lines, max_side=THUMBNAIL_SIDE))


def masks_png(masks) -> bytes:
    """A PNG thumbnail: the lungs (right orange, left blue) over the film when the result keeps it."""
    from medlung.writers.overlay import area_lines, overlay_picture

    film = getattr(masks, "film", None)
    pixels = film.pixels if film is not None else np.zeros(masks.labels.shape, np.float32)
    lines = area_lines(masks)
    qc = _qc_text(masks)
    if qc:
        lines.append(f"qc {qc}")
    return _png_bytes(overlay_picture(pixels, masks.labels, lines, max_side=THUMBNAIL_SIDE))


def _html(png: bytes, title: str, facts: list[tuple[str, str]]) -> str:
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in facts
    )
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<div style='display:flex;gap:1em;align-items:flex-start'>"
        f"<img src='data:image/png;base64,{data}' style='max-width:{THUMBNAIL_SIDE}px' alt='{html.escape(title)}'/>"
        f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{rows}</table></div>"
    )


def film_html(film) -> str:
    """HTML for a notebook: the thumbnail and a table of the film's facts."""
    name = Path(film.path).name if getattr(film, "path", None) else "film"
    return _html(film_png(film), f"Film {name}", film_facts(film))


def masks_html(masks) -> str:
    """HTML for a notebook: the overlay thumbnail and a table of areas, spacing and flags."""
    return _html(masks_png(masks), "LungMasks", masks_facts(masks))


# --------------------------------------------------------------------------- tables


def masks_row(masks, path=None) -> dict:
    """One table row for a :class:`~medlung.inference.LungMasks`: the ``report.csv`` row ``medlung predict`` writes."""
    from medlung.pipeline.batch import result_row

    row = result_row(masks, path)
    row["model_version"] = masks.model_version
    return row


def to_dataframe(results):
    """Batch results as one pandas DataFrame, one row per film.

    Parameters
    ----------
    results : iterable
        Any of: the ``(path, LungMasks or error)`` pairs of
        :meth:`~medlung.inference.Segmenter.segment_files`; ``LungMasks``
        objects; report rows (dicts, as in ``report.json``); the
        :class:`~medlung.writers.report.Report` that
        :func:`medlung.pipeline.batch.predict_files` returns; or the path
        of a ``report.csv`` / ``report.json`` / ``metrics.csv``.

    Returns
    -------
    pandas.DataFrame
        Report columns (file, status, rows, cols, spacing, areas in cm² and
        px, ...); a failed film has status ``error`` and its message.

    Raises
    ------
    MedlungError
        When pandas is not installed, or an item is none of the above.
    """
    try:
        import pandas
    except ImportError:
        raise MedlungError(
            "to_dataframe needs pandas, which is not installed",
            hint="pip install pandas (or pip install 'medlung[notebook]').",
        ) from None
    if isinstance(results, (str, Path)):
        path = Path(results)
        if path.suffix.lower() == ".json":
            import json

            return _typed(pandas, pandas.DataFrame(json.loads(path.read_text())))
        frame = pandas.read_csv(path)
        return _typed(pandas, frame) if "file" in frame.columns else frame  # metrics.csv keeps its own columns
    if hasattr(results, "rows") and isinstance(results.rows, list):  # a Report
        results = results.rows
    rows = []
    for item in results:
        if isinstance(item, dict):
            rows.append(dict(item))
        elif isinstance(item, tuple) and len(item) == 2:
            path, result = item
            if isinstance(result, BaseException):
                rows.append({"file": str(path), "status": "error", "error": str(result)})
            else:
                rows.append(masks_row(result, path))
        elif hasattr(item, "labels") and hasattr(item, "areas_px"):
            rows.append(masks_row(item))
        else:
            raise MedlungError(
                f"to_dataframe cannot read a {type(item).__name__}",
                hint="Give segment_files pairs, LungMasks, report rows or a report file.",
            )
    return _typed(pandas, pandas.DataFrame(rows))


def _typed(pandas, frame):
    """The report's columns in the report's order (extra ones after), counts as whole numbers (missing: <NA>)."""
    from medlung.writers.report import COLUMNS, IDENTIFIER_COLUMNS

    known = [c for c in (*COLUMNS, *IDENTIFIER_COLUMNS) if c in frame.columns or c in COLUMNS]
    frame = frame.reindex(columns=known + [c for c in frame.columns if c not in known])
    for column in ("rows", "cols", "right_px", "left_px", "total_px"):
        frame[column] = pandas.to_numeric(frame[column], errors="coerce").astype("Int64")
    return frame
