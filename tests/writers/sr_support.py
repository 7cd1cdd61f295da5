"""Read medlung's DICOM SR back with the field's readers (highdicom, dcmqi), into one comparable form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medlung.inference.segmenter import LungMasks
from tests.writers.seg_support import tools_required

#: Group (tracking identifier) -> medlung's group name.
GROUPS = {"Right lung": "right", "Left lung": "left", "Both lungs": "both"}


def dcmqi_tool(name: str) -> str:
    """A dcmqi program from the PyPI wheel (``pip install dcmqi``), next to this Python."""
    exe = Path(sys.executable).parent / name
    if not exe.exists():
        reason = f"dcmqi's {name} not found (pip install dcmqi)"
        if tools_required():
            pytest.fail(f"CI requires it but {reason}")
        pytest.skip(reason)
    return str(exe)


def read_with_highdicom(path: Path) -> dict:
    """``{group: {"segment": ..., "seg": uid, "source": uid, "measurements": {...}, "evaluations": [...]}}``.

    Measurements are ``{meaning: (value, unit code)}``; evaluations ``[(name code, value code), ...]``.
    """
    import highdicom as hd

    report = hd.sr.srread(path)
    assert isinstance(report.content, hd.sr.MeasurementReport)
    groups = {}
    for group in report.content.get_volumetric_roi_measurement_groups():
        reference = group.referenced_segment
        segment_item, *sources = reference
        groups[GROUPS[str(group.tracking_identifier)]] = {
            "segment": segment_item.referenced_segment_numbers,
            "seg": str(segment_item.value[1]),
            "source": [str(item.value[1]) for item in sources],
            "tracking_uid": str(group.tracking_uid),
            "measurements": {m.name.meaning: (float(m.value), m.unit.value) for m in group.get_measurements()},
            "evaluations": [(e.name.value, e.value.value) for e in group.get_qualitative_evaluations()],
            "laterality": group.finding_sites[0].laterality.meaning,
        }
    return groups


def read_with_dcmqi(path: Path, folder: Path) -> dict:
    """The same form from dcmqi's ``tid1500reader`` (DCMTK's TID 1500 reader); ``source`` is the image library."""
    out = folder / f"{path.stem}.json"
    run = subprocess.run(
        [dcmqi_tool("tid1500reader"), "--inputDICOM", str(path), "--outputMetadata", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and out.is_file(), run.stdout + run.stderr
    document = json.loads(out.read_text())
    groups = {}
    for group in document["Measurements"]:
        groups[GROUPS[group["TrackingIdentifier"]]] = {
            "segment": [group["ReferencedSegment"]] if "ReferencedSegment" in group else None,
            "seg": group["segmentationSOPInstanceUID"],
            "source": document.get("imageLibrary", []),
            "tracking_uid": group["TrackingUniqueIdentifier"],
            "measurements": {
                item["quantity"]["CodeMeaning"]: (float(item["value"]), item["units"]["CodeValue"])
                for item in group["measurementItems"]
            },
            "evaluations": [
                (item["conceptCode"]["CodeValue"], item["conceptValue"]["CodeValue"])
                for item in group.get("qualitativeEvaluations", [])
            ],
            "laterality": group["Laterality"]["CodeMeaning"],
        }
    return groups


def masks_of(film, labels: np.ndarray, convention: str = "field", qc_reasons=()) -> LungMasks:
    """A LungMasks for a label map on ``film``'s grid, with the areas the Segmenter computes."""
    counts = {"right": int((labels == 1).sum()), "left": int((labels == 2).sum())}
    counts["total"] = counts["right"] + counts["left"]
    areas = None
    if film.spacing is not None:
        areas = {k: v * film.spacing[0] * film.spacing[1] / 100.0 for k, v in counts.items()}
    return LungMasks(
        labels=labels,
        spacing=film.spacing,
        spacing_source=film.spacing_source,
        areas_cm2=areas,
        areas_px=counts,
        orientation=("L", "F"),
        orientation_assumed=False,
        empty=[side for side in ("right", "left") if counts[side] == 0],
        working_spacing=2.0,
        working_shape=(256, 256),
        model_version="test",
        convention=convention,
        qc="flagged" if qc_reasons else "ok",
        qc_reasons=list(qc_reasons),
    )
