"""Which films ``medlung evaluate`` scores, and where each film's prediction is.

This module owns the *finding* half of an evaluation, before any pixel is
read:

* :func:`is_model_source` tells a model (bundle, run folder, checkpoint) from
  a folder of predictions;
* :func:`select_films` takes the films of a part of DATA (:data:`PARTS`),
  leaves out those whose masks follow another lung convention, and says what
  the scope is;
* :func:`index_folder` and :func:`find_prediction` find, per film stem (as
  ``medlung predict`` names its outputs), the preferred prediction file of a
  folder in the order of :data:`PREDICTION_SUFFIXES`.

Reading and scoring the files is :mod:`medlung.evaluation.scoring`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PARTS", "PREDICTION_SUFFIXES", "find_prediction", "index_folder", "is_model_source", "select_films"]

#: Values of ``part``.
PARTS = ("test", "validation", "training", "all")
#: Prediction file endings in order of preference, and their kind (see
#: :func:`medlung.evaluation.scoring.load_prediction`).
PREDICTION_SUFFIXES = (
    ("_labels.nii.gz", "labels"),
    ("_labels.nii", "labels"),
    ("_seg.dcm", "seg"),
    ("_lungs.png", "union"),
    (".png", "auto"),
)


def is_model_source(path: str | Path) -> bool:
    """Whether ``path`` is a model (bundle, run folder, checkpoint) rather than a folder of predictions.

    Parameters
    ----------
    path : str or Path
        A ``.pt`` / ``.pth`` / ``.ckpt`` file, or a folder holding ``best.pt``
        (a training run), ``configs/inference.json`` or ``models/model.pt``
        (a bundle).

    Returns
    -------
    bool
        ``False`` for anything else, including a path that does not exist.
    """
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in (".pt", ".pth", ".ckpt")
    return path.is_dir() and (
        (path / "best.pt").is_file()
        or (path / "configs" / "inference.json").is_file()
        or (path / "models" / "model.pt").is_file()
    )


def select_films(datalist, part: str, lungs: str) -> tuple[list[dict], list[str], str]:
    """The DATA entries to score, the notes about the selection, and its scope.

    Parameters
    ----------
    datalist : medlung.io.datasets.Datalist
        The data read by :func:`medlung.io.datasets.find_datalist`.
    part : str
        One of :data:`PARTS`. When DATA has no split, every film is taken
        whatever the part (and a note says so).
    lungs : str
        The lung convention scored, ``"field"`` or ``"anatomical"``: entries
        whose ``lungs`` names the other convention are left out (counted in a
        note); entries that name none are kept.

    Returns
    -------
    entries : list of dict
        One per film (the first entry of a film listed twice), in DATA order.
    notes : list of str
        DATA's problems, then what the selection left out or ignored.
    scope : str
        ``"<part> part"`` or ``"every film: DATA has no split"`` (summary.json).
    """
    notes = list(datalist.problems)
    if part == "all":
        entries = datalist.all_entries()
    elif datalist.has_split:
        entries = list(datalist.parts[part])
    else:
        entries = datalist.all_entries()
        notes.append(f"DATA has no split: every film is evaluated (part {part!r} ignored)")
    entries = list({e["image"]: e for e in entries}.values())
    other = [e for e in entries if e.get("lungs") and e["lungs"] != lungs]
    if other:
        entries = [e for e in entries if e not in other]
        notes.append(f"{len(other)} film(s) whose masks follow another lung convention than {lungs!r} left out")
    scope = f"{part} part" if datalist.has_split or part == "all" else "every film: DATA has no split"
    return entries, notes, scope


def index_folder(folder: Path) -> dict:
    """Every prediction-like file under ``folder``, by film stem.

    Parameters
    ----------
    folder : Path
        Searched recursively; hidden files are skipped. Shallower files come
        first, so a file at the top wins over one of the same name deeper down.

    Returns
    -------
    dict
        ``stem -> {suffix: (path, kind)}`` with the suffixes and kinds of
        :data:`PREDICTION_SUFFIXES` (the first suffix a name ends with).
    """
    index: dict = {}
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: (len(p.relative_to(folder).parts), str(p)),
    )
    for path in files:
        lower = path.name.lower()
        for suffix, kind in PREDICTION_SUFFIXES:
            if lower.endswith(suffix):
                stem = path.name[: -len(suffix)]
                index.setdefault(stem, {}).setdefault(suffix, (path, kind))
                break
    return index


def find_prediction(index: dict, stem: str) -> tuple[Path, str] | None:
    """The preferred prediction file of a film stem in a folder index.

    Parameters
    ----------
    index : dict
        As returned by :func:`index_folder`.
    stem : str
        The film's output stem (:func:`medlung.writers.naming.output_stems`).

    Returns
    -------
    tuple of (Path, str) or None
        The file and its kind, by the order of :data:`PREDICTION_SUFFIXES`;
        ``None`` when the folder holds none for ``stem``.
    """
    candidates = index.get(stem, {})
    for suffix, _ in PREDICTION_SUFFIXES:
        if suffix in candidates:
            return candidates[suffix]
    return None
