"""Reading a DICOM Segmentation (ours or another tool's) into a medlung label map.

How segments become label values
--------------------------------
medlung's label maps hold 0 background, 1 patient right lung, 2 patient left
lung. Each segment of the SEG is given a label value by the first rule that
applies:

1. Laterality. A segment whose Segmented Property Type Modifier, Anatomic
   Region Modifier or, failing those, Segment Label / Description says *right*
   (SCT 24028007, "right") gets 1; *left* (SCT 7771000, "left") gets 2.
   Medlung's own SEGs always say so.
2. One lung segment. When no segment carries a laterality, a single segment
   whose property type is SCT 39607008 "Lung" (or whose label mentions
   "lung") gets 1: it is read as a lung mask without sides.
3. Segment number. Otherwise each segment keeps its Segment Number as its
   label value (a one-segment SEG gives a 0/1 map). Numbers above 255 cannot
   be stored in the uint8 map and are an error.

Where segments overlap, the segment listed later in the SEG wins. BINARY,
FRACTIONAL (thresholded at half the Maximum Fractional Value) and LABELMAP
segmentations are read; the SEG must have a single frame per segment on one
2-D grid, as a projection radiograph's SEG does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pydicom.uid import SegmentationStorage

from medlung import labels as label_table
from medlung.errors import SegmentationMismatchError, UnreadableFileError, UnsupportedImageError
from medlung.film import Film

__all__ = ["SEGMENTATION_SOP_CLASSES", "read_dicom_seg", "referenced_instance", "segment_label_values"]

#: SOP Class UIDs of segmentations medlung reads.
SEGMENTATION_SOP_CLASSES = {
    SegmentationStorage: "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",  # not yet named in pydicom 3.0
}

_LUNG = label_table.SCT_LUNG[0]
_SIDES = {lung.laterality_code[0]: lung.value for lung in label_table.LUNGS}
_SIDE_WORDS = {"right": 1, "left": 2}
_HINT = "Give a DICOM Segmentation (SEG) file."


def read_dicom_seg(path: str | Path, source: Film | None = None) -> tuple[np.ndarray, str | None]:
    """Read a DICOM-SEG of a radiograph into a label map.

    Parameters
    ----------
    path : str or Path
        The SEG file.
    source : Film, optional
        The film the SEG was made on. When given, the SEG must reference it
        (when both carry SOP Instance UIDs) and have its ``(rows, cols)``.

    Returns
    -------
    labels : numpy.ndarray
        uint8 array ``(rows, cols)`` on the SEG's (the source film's) grid;
        label values follow the rules in this module's notes.
    referenced_sop_instance_uid : str or None
        The SOP Instance UID of the image the SEG was derived from, ``None``
        when the SEG does not say.

    Raises
    ------
    UnreadableFileError
        The file is missing or not DICOM.
    UnsupportedImageError
        The file is DICOM but not a segmentation, or not a 2-D one.
    SegmentationMismatchError
        The SEG references another image than ``source`` or has another size.
    """
    import highdicom as hd

    from medlung.io.dicom import read_dicom_dataset

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError("file not found", path, "Check the path.")
    dataset = read_dicom_dataset(path)
    sop_class = str(dataset.get("SOPClassUID", "") or "")
    if sop_class not in SEGMENTATION_SOP_CLASSES:
        what = str(dataset.get("Modality", "") or "") or "unknown"
        raise UnsupportedImageError(
            f"is not a DICOM segmentation (SOP Class {sop_class or 'absent'}, modality {what})", path, _HINT
        )
    _drop_projection_pixel_measures(dataset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.Segmentation.from_dataset(dataset, copy=False)
    except Exception as exc:  # highdicom raises several types on invalid SEGs
        raise UnsupportedImageError(
            f"segmentation could not be read ({type(exc).__name__}: {_first_line(exc)})", path, _HINT
        ) from None

    shape = (int(seg.Rows), int(seg.Columns))
    values = segment_label_values(seg, path)
    labels = np.zeros(shape, dtype=np.uint8)
    seg_type = str(seg.SegmentationType).upper()
    frames = int(seg.get("NumberOfFrames", 1) or 1)
    if seg_type == "LABELMAP":
        for frame_number in range(1, frames + 1):
            stored = _frame(seg, frame_number, path)
            for number, value in values.items():
                labels[stored == number] = value
    else:
        threshold = 0.5
        if seg_type == "FRACTIONAL":
            threshold = float(seg.get("MaximumFractionalValue", 255) or 255) / 2.0
        seen_frames: dict[int, int] = {}
        for frame_number in range(1, frames + 1):
            number = _frame_segment_number(seg, frame_number, path)
            seen_frames[number] = seen_frames.get(number, 0) + 1
            if seen_frames[number] > 1:
                raise UnsupportedImageError(
                    f"segment {number} has more than one frame (a 3-D or tiled segmentation)",
                    path,
                    "medlung reads segmentations of single 2-D radiographs.",
                )
            if number not in values:
                raise UnsupportedImageError(f"frame {frame_number} refers to undescribed segment {number}", path, _HINT)
            stored = _frame(seg, frame_number, path)
            labels[stored > threshold] = values[number]

    referenced = referenced_instance(seg)
    if source is not None:
        _check_source(source, shape, referenced, path)
    return labels, referenced


def segment_label_values(seg, path: str | Path | None = None) -> dict[int, int]:
    """Segment Number -> medlung label value, by the rules in this module's notes.

    Parameters
    ----------
    seg : pydicom.Dataset
        A segmentation dataset (its Segment Sequence is used).
    path : str or Path, optional
        Named in errors.

    Returns
    -------
    dict of int to int
    """
    segments = list(seg.get("SegmentSequence", []) or [])
    if not segments:
        raise UnsupportedImageError("segmentation describes no segment", path, _HINT)
    sides = {int(item.SegmentNumber): _laterality(item) for item in segments}
    if any(side is not None for side in sides.values()):
        mapping: dict[int, int] = {}
        for item in segments:
            number = int(item.SegmentNumber)
            side = sides[number]
            mapping[number] = side if side is not None else number
    elif len(segments) == 1 and _is_lung(segments[0]):
        mapping = {int(segments[0].SegmentNumber): 1}
    else:
        mapping = {int(item.SegmentNumber): int(item.SegmentNumber) for item in segments}
    too_big = [number for number, value in mapping.items() if not 0 < value < 256]
    if too_big:
        raise UnsupportedImageError(
            f"segment numbers {too_big[:5]} do not fit a uint8 label map", path, "Split the segmentation first."
        )
    return mapping


def _codes(item, sequence: str, modifier: str) -> list[str]:
    found = []
    for code in item.get(sequence, []) or []:
        for mod in code.get(modifier, []) or []:
            found.append(str(mod.get("CodeValue", "") or ""))
    return found


def _laterality(item) -> int | None:
    modifiers = _codes(item, "SegmentedPropertyTypeCodeSequence", "SegmentedPropertyTypeModifierCodeSequence")
    modifiers += _codes(item, "AnatomicRegionSequence", "AnatomicRegionModifierSequence")
    for value in modifiers:
        if value in _SIDES:
            return _SIDES[value]
    for text in (item.get("SegmentLabel", ""), item.get("SegmentDescription", "")):  # the label first
        words = set(str(text or "").lower().replace("_", " ").replace("-", " ").replace("'s", "").split())
        found = {side for word, side in _SIDE_WORDS.items() if word in words}
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def _is_lung(item) -> bool:
    types = [str(code.get("CodeValue", "") or "") for code in item.get("SegmentedPropertyTypeCodeSequence", []) or []]
    return _LUNG in types or "lung" in str(item.get("SegmentLabel", "") or "").lower()


def _drop_projection_pixel_measures(dataset) -> None:
    """Remove Pixel Measures items without Slice Thickness from a freshly read SEG.

    A SEG of a projection radiograph has no Frame of Reference, so its Pixel
    Measures carry Pixel Spacing only (Slice Thickness is type 1C, PS3.3
    C.7.6.16.2.1); highdicom writes such SEGs but its reader (0.28) insists on
    Slice Thickness. The label map does not need the spacing, so the items
    are dropped from the in-memory dataset before highdicom reads it.
    """
    groups = list(dataset.get("SharedFunctionalGroupsSequence", []) or [])
    groups += list(dataset.get("PerFrameFunctionalGroupsSequence", []) or [])
    for item in groups:
        measures = item.get("PixelMeasuresSequence")
        if measures is not None and not all("SliceThickness" in m for m in measures):
            del item.PixelMeasuresSequence


def _frame_segment_number(seg, frame_number: int, path: Path) -> int:
    per_frame = seg.get("PerFrameFunctionalGroupsSequence")
    shared = seg.get("SharedFunctionalGroupsSequence")
    for groups in ((per_frame[frame_number - 1],) if per_frame else ()) + ((shared[0],) if shared else ()):
        identification = groups.get("SegmentIdentificationSequence")
        if identification:
            return int(identification[0].ReferencedSegmentNumber)
    if len(seg.SegmentSequence) == 1:
        return int(seg.SegmentSequence[0].SegmentNumber)
    raise UnsupportedImageError(f"frame {frame_number} does not say which segment it holds", path, _HINT)


def _frame(seg, frame_number: int, path: Path) -> np.ndarray:
    try:
        frame = seg.get_stored_frame(frame_number)
    except Exception as exc:
        raise UnreadableFileError(
            f"segmentation frame {frame_number} could not be decoded ({type(exc).__name__}: {_first_line(exc)})",
            path,
            "The file may be truncated; check that pylibjpeg-openjpeg is installed for JPEG 2000 SEGs.",
        ) from None
    if frame.ndim != 2:
        raise UnsupportedImageError(f"frame {frame_number} has shape {frame.shape}, expected (rows, cols)", path, _HINT)
    return frame


def referenced_instance(seg) -> str | None:
    """SOP Instance UID of the image a SEG dataset was made on (None when it names none)."""
    for item in seg.get("SourceImageSequence", []) or []:
        if item.get("ReferencedSOPInstanceUID"):
            return str(item.ReferencedSOPInstanceUID)
    for series in seg.get("ReferencedSeriesSequence", []) or []:
        for item in series.get("ReferencedInstanceSequence", []) or []:
            if item.get("ReferencedSOPInstanceUID"):
                return str(item.ReferencedSOPInstanceUID)
    for groups in seg.get("PerFrameFunctionalGroupsSequence", []) or []:
        for derivation in groups.get("DerivationImageSequence", []) or []:
            for item in derivation.get("SourceImageSequence", []) or []:
                if item.get("ReferencedSOPInstanceUID"):
                    return str(item.ReferencedSOPInstanceUID)
    return None


def _check_source(source: Film, shape: tuple[int, int], referenced: str | None, path: Path) -> None:
    film_uid = None
    if source.dataset is not None:
        film_uid = str(source.dataset.get("SOPInstanceUID", "") or "") or None
    if referenced and film_uid and referenced != film_uid:
        raise SegmentationMismatchError(
            f"references image {referenced}, not the film {source.path or film_uid} ({film_uid})",
            path,
            "Pair each SEG with the film it was made on.",
        )
    if tuple(source.shape) != shape:
        raise SegmentationMismatchError(
            f"is {shape[0]}x{shape[1]} (rows x cols) but the film is {source.rows}x{source.cols}",
            path,
            "Pair each SEG with the film it was made on.",
        )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
