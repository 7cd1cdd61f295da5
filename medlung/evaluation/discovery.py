"""Finding what ``medlung evaluate`` compares: the films of a part, and each film's prediction file in a folder."""

from __future__ import annotations

from pathlib import Path


#: Values of ``part``.
PARTS = ("test", "validation", "training", "all")

#: Prediction file endings in order of preference, and their kind.
PREDICTION_SUFFIXES = (("_labels.nii.gz", "labels"), ("_labels.nii", "labels"), ("_seg.dcm", "seg"),
                       ("_lungs.png", "union"), (".png", "auto"))

def is_model_source(path: str | Path) -> bool:
    """Whether ``path`` is a model (bundle, run folder, checkpoint) rather than a folder of predictions."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in (".pt", ".pth", ".ckpt")
    return path.is_dir() and ((path / "best.pt").is_file() or (path / "configs" / "inference.json").is_file()
                              or (path / "models" / "model.pt").is_file())

def find_prediction(index: dict, stem: str) -> tuple[Path, str] | None:
    """The preferred prediction file of a film stem in a folder index (see :func:`_index_folder`)."""
    candidates = index.get(stem, {})
    for suffix, _ in PREDICTION_SUFFIXES:
        if suffix in candidates:
            return candidates[suffix]
    return None

def _select(datalist, part: str) -> tuple[list[dict], list[str]]:
    notes = list(datalist.problems)
    if part == "all":
        entries = datalist.all_entries()
    elif datalist.has_split:
        entries = list(datalist.parts[part])
    else:
        entries = datalist.all_entries()
        notes.append(f"DATA has no split: every film is evaluated (part {part!r} ignored)")
    unique = list({e["image"]: e for e in entries}.values())
    return unique, notes

def _index_folder(folder: Path) -> dict:
    """stem -> {suffix: (path, kind)} for every prediction-like file under ``folder`` (shallowest first)."""
    index: dict = {}
    files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (len(p.relative_to(folder).parts), str(p)))
    for path in files:
        lower = path.name.lower()
        for suffix, kind in PREDICTION_SUFFIXES:
            if lower.endswith(suffix):
                stem = path.name[: -len(suffix)]
                index.setdefault(stem, {}).setdefault(suffix, (path, kind))
                break
    return index
