"""Finding training data from one DATA argument: a folder, a CSV or a MONAI datalist JSON.

Every layout ends as a :class:`Datalist`: lists of ``{"image": path,
"label": path, "lungs": convention, "ignore": path or "", "source": name or ""}`` for the training,
validation and test parts, plus the problems found (unreadable files, size
mismatches, empty masks) so they can be reported before training starts.

``lungs`` names the convention the mask follows (``field`` or ``anatomical``,
see :mod:`medlung.plans`), ``""`` when the layout does not say (training then
takes ``field``; ``medlung evaluate --lungs`` takes the convention asked). ``ignore``
is an optional mask of pixels left out of the loss and the metrics (a
``ignore`` column or key, or ``<stem>_ignore.png`` beside a folder's masks). ``source`` names the
hospital or data set a film comes from (a ``source`` column or key; ``""`` when not said): training
balances its sampling and reports its validation Dice per source and convention. ``pseudo`` (a
``pseudo`` column or key; ``""`` when absent) is an optional mask of the *other* convention made by a
model and checked by eye (an anatomical pseudo-label of a field film), which training weighs less
than a drawn mask.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medlung.errors import MedlungError, UsageError
from medlung.plans import CONVENTIONS

#: Suffixes a mask's stem may add to its film's stem, tried in this order.
MASK_SUFFIXES = ("", "_lungs", "_lung", "_mask", "_masks", "_label", "_labels", "_seg")
FILM_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", "")
MASK_FILE_SUFFIXES = (".png", ".nii.gz", ".nii")
#: Suffix of an ignore mask's stem in a folder layout (``masks/<stem>_ignore.png``).
IGNORE_SUFFIX = "_ignore"
PARTS = ("training", "validation", "test")
_SPLIT_NAMES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


class DatasetError(UsageError):
    """The DATA argument does not describe usable training data."""


@dataclass
class Datalist:
    """Films with their masks, split into parts.

    Attributes
    ----------
    parts : dict
        ``{"training": [...], "validation": [...], "test": [...]}``, each a
        list of ``{"image": str, "label": str}``.
    source : str
        What DATA was and which rule matched films to masks.
    problems : list of str
        One line per entry left out, naming the file and the reason.
    has_split : bool
        Whether DATA gave the split (else one is made by :func:`split_datalist`).
    """

    parts: dict = field(default_factory=lambda: {p: [] for p in PARTS})
    source: str = ""
    problems: list = field(default_factory=list)
    has_split: bool = False

    def all_entries(self) -> list[dict]:
        return [e for p in PARTS for e in self.parts[p]]

    def summary(self) -> dict:
        return {"source": self.source, **{p: len(self.parts[p]) for p in PARTS}, "problems": len(self.problems)}


def find_datalist(data: str | Path) -> Datalist:
    """Describe the training data at ``data``.

    Parameters
    ----------
    data : str or Path
        A folder with ``images/`` and ``masks/`` (matched by stem, mask
        suffixes :data:`MASK_SUFFIXES`), a DICOM folder (recursive) of films
        and the DICOM-SEG objects that reference them, a CSV with ``image,mask[,split]``
        columns, or a MONAI datalist JSON with ``training`` / ``validation``
        / ``test`` lists of ``{"image", "label"}``. Relative paths in a CSV or
        JSON resolve against the file's own folder.

    Returns
    -------
    Datalist
        Not yet checked: see :func:`check_datalist`.

    Raises
    ------
    DatasetError
        When DATA is none of these layouts.
    """
    data = Path(data)
    if data.is_dir():
        if (data / "images").is_dir() or (data / "masks").is_dir():
            return _from_folder(data)
        return _from_dicom_folder(data)
    if data.suffix.lower() == ".csv":
        return _from_csv(data)
    if data.suffix.lower() == ".json":
        return _from_json(data)
    raise DatasetError(
        "not a training data layout",
        data,
        "Give a folder with images/ and masks/, a CSV with image,mask[,split] columns, or a MONAI datalist JSON.",
    )


def _from_folder(folder: Path) -> Datalist:
    images, masks = folder / "images", folder / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DatasetError(
            "has no images/ and masks/ folders",
            folder,
            "Put films in images/ and masks in masks/, or give a CSV or datalist JSON.",
        )
    mask_by_stem: dict[str, Path] = {}
    ignore_by_stem: dict[str, Path] = {}
    for path in sorted(masks.rglob("*")):
        if path.is_file() and path.name.lower().endswith(MASK_FILE_SUFFIXES):
            stem = _stem(path)
            if stem.endswith(IGNORE_SUFFIX):
                ignore_by_stem[stem[: -len(IGNORE_SUFFIX)]] = path
            else:
                mask_by_stem[stem] = path
    datalist = Datalist()
    rules: dict[str, int] = {}
    for film in sorted(p for p in images.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stem = _stem(film)
        match = next(((s, mask_by_stem[stem + s]) for s in MASK_SUFFIXES if stem + s in mask_by_stem), None)
        if match is None:
            datalist.problems.append(
                f"{film}: no mask in {masks} named {stem}{{{','.join(MASK_SUFFIXES)}}}.png|.nii.gz"
            )
            continue
        rules[match[0] or "(same stem)"] = rules.get(match[0] or "(same stem)", 0) + 1
        ignore = ignore_by_stem.get(stem, "")
        datalist.parts["training"].append(entry(film, match[1], ignore=ignore))
    described = ", ".join(f"'{k}' x{v}" for k, v in rules.items()) or "none"
    datalist.source = f"folder {folder} (images/ + masks/, mask suffix matched: {described})"
    return datalist


def _from_dicom_folder(folder: Path) -> Datalist:
    """Films and the DICOM-SEG objects that reference them (by SOP Instance UID), found recursively."""
    import pydicom

    from medlung.io.dicom import FILM_SOP_CLASSES
    from medlung.io.seg import SEGMENTATION_SOP_CLASSES, referenced_instance

    films: dict[str, Path] = {}
    segs: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            sop_class, uid = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
        except Exception:
            continue  # not DICOM: not part of this layout
        if sop_class in FILM_SOP_CLASSES and uid:
            films[uid] = path
        elif sop_class in SEGMENTATION_SOP_CLASSES:
            referenced = referenced_instance(ds)
            if referenced:
                segs[referenced] = path
    if not films:
        raise DatasetError(
            "has no images/ and masks/ folders and no DICOM films",
            folder,
            "Give a folder with images/ and masks/, a DICOM folder with films and their SEGs, "
            "a CSV or a datalist JSON.",
        )
    datalist = Datalist(
        source=f"DICOM folder {folder} ({len(films)} films, {len(segs)} SEGs matched by referenced SOP Instance UID)"
    )
    for uid, film in films.items():
        if uid in segs:
            datalist.parts["training"].append(entry(film, segs[uid]))
        else:
            datalist.problems.append(f"{film}: no DICOM-SEG in {folder} references it (SOP Instance UID {uid})")
            warnings.warn(f"{film}: no DICOM-SEG references it; skipped", stacklevel=2)
    return datalist


def _from_csv(path: Path) -> Datalist:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"image", "mask"} <= set(rows[0]):
        raise DatasetError("CSV needs image and mask columns", path, "Add a header line: image,mask[,split].")
    datalist = Datalist(source=f"CSV {path}", has_split="split" in rows[0])
    for number, row in enumerate(rows, start=2):
        part = _SPLIT_NAMES.get((row.get("split") or "train").strip().lower())
        if part is None:
            datalist.problems.append(f"{path}:{number}: unknown split {row.get('split')!r} (use train, val or test)")
            continue
        lungs = (row.get("lungs") or "").strip().lower()
        if lungs and lungs not in CONVENTIONS:
            datalist.problems.append(
                f"{path}:{number}: unknown lungs convention {row.get('lungs')!r} (use {' or '.join(CONVENTIONS)})"
            )
            continue
        ignore = _resolve(path, row["ignore"]) if (row.get("ignore") or "").strip() else ""
        source = (row.get("source") or "").strip()
        pseudo = _resolve(path, row["pseudo"]) if (row.get("pseudo") or "").strip() else ""
        datalist.parts[part].append(
            entry(_resolve(path, row["image"]), _resolve(path, row["mask"]), lungs, ignore, source, pseudo)
        )
    return datalist


def _from_json(path: Path) -> Datalist:
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"datalist is not valid JSON ({exc})", path, "Fix the JSON.") from None
    if not isinstance(content, dict) or "training" not in content:
        raise DatasetError(
            "datalist has no 'training' list",
            path,
            'Use {"training": [{"image": ..., "label": ...}], "validation": [...]}.',
        )
    datalist = Datalist(source=f"datalist {path}", has_split="validation" in content)
    for part, key in (("training", "training"), ("validation", "validation"), ("test", "test")):
        for item in content.get(key, []) or []:
            lungs = str(item.get("lungs") or "").lower()
            if lungs and lungs not in CONVENTIONS:
                datalist.problems.append(
                    f"{path}: {item['image']}: unknown lungs convention {lungs!r} (use {' or '.join(CONVENTIONS)})"
                )
                continue
            ignore = _resolve(path, item["ignore"]) if item.get("ignore") else ""
            label = _resolve(path, item.get("label", item.get("mask")))
            source = str(item.get("source") or "")
            pseudo = _resolve(path, item["pseudo"]) if item.get("pseudo") else ""
            datalist.parts[part].append(entry(_resolve(path, item["image"]), label, lungs, ignore, source, pseudo))
    return datalist


def check_datalist(datalist: Datalist) -> Datalist:
    """Read every film and mask; move unusable entries to ``problems``.

    An entry is left out when its film or mask cannot be read, their sizes
    differ, or the mask is empty.
    """
    from medlung.io import load_film
    from medlung.io.masks import load_label_map

    checked = Datalist(source=datalist.source, problems=list(datalist.problems), has_split=datalist.has_split)
    for part in PARTS:
        for item in datalist.parts[part]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    film = load_film(item["image"])
                mask = load_label_map(item["label"], film.shape)
            except MedlungError as exc:
                checked.problems.append(str(exc))
                continue
            if mask.shape != film.shape:
                checked.problems.append(
                    f"{item['label']}: mask is {mask.shape[0]}x{mask.shape[1]} (rows x cols) but its film "
                    f"{item['image']} is {film.rows}x{film.cols}. Give a mask on the film's grid."
                )
            elif not mask.any():
                checked.problems.append(f"{item['label']}: mask is empty (no lung pixel). Fix or remove it.")
            elif not _ignore_fits(item, film.shape, checked.problems):
                continue
            else:
                checked.parts[part].append(item)
    return checked


def _ignore_fits(item: dict, shape: tuple, problems: list) -> bool:
    """Whether an entry's ignore mask (if any) can be read and lies on its film's grid; else a problem line."""
    from medlung.io.masks import load_label_map

    if not item.get("ignore"):
        return True
    try:
        ignore = load_label_map(item["ignore"], shape)
    except MedlungError as exc:
        problems.append(str(exc))
        return False
    if ignore.shape != tuple(shape):
        problems.append(
            f"{item['ignore']}: ignore mask is {ignore.shape[0]}x{ignore.shape[1]} (rows x cols) but its "
            f"film {item['image']} is {shape[0]}x{shape[1]}. Give it on the film's grid."
        )
        return False
    return True


def entry(image, label, lungs: str = "", ignore="", source: str = "", pseudo="") -> dict:
    """One datalist entry: film, mask, the mask's lung convention (``""``: not said), an optional ignore mask,
    the film's source (``""``: not said) and an optional pseudo-label of the other convention."""
    return {
        "image": str(image),
        "label": str(label),
        "lungs": lungs,
        "ignore": str(ignore) if ignore else "",
        "source": source,
        "pseudo": str(pseudo) if pseudo else "",
    }


def split_datalist(datalist: Datalist, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> Datalist:
    """Split the training entries into training/validation/test, seeded, each film in one part only.

    Parameters
    ----------
    datalist : Datalist
        Entries to split (all parts are pooled first).
    seed : int
        Seed of the permutation.
    fractions : tuple of float
        Training, validation and test fractions.
    """
    entries = sorted(datalist.all_entries(), key=lambda e: e["image"])
    unique = list({e["image"]: e for e in entries}.values())
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = max(1, round(fractions[1] * len(unique))) if len(unique) >= 3 else 0
    n_test = max(1, round(fractions[2] * len(unique))) if len(unique) >= 3 else 0
    parts = {
        "validation": [unique[i] for i in order[:n_val]],
        "test": [unique[i] for i in order[n_val : n_val + n_test]],
        "training": [unique[i] for i in order[n_val + n_test :]],
    }
    shares = "/".join(f"{round(100 * f)}" for f in fractions)
    return Datalist(
        parts=parts,
        source=datalist.source + f", split {shares} with seed {seed}",
        problems=list(datalist.problems),
        has_split=True,
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *FILM_SUFFIXES):
        if suffix and name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _resolve(base_file: Path, value: str) -> str:
    path = Path(str(value).strip())
    return str(path if path.is_absolute() else (base_file.parent / path).resolve())
