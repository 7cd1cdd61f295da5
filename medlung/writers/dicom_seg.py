"""DICOM Segmentation (SEG) of the two lungs, on the source film's grid, with highdicom.

The object written is a BINARY Segmentation (PS3.3 A.51) with two segments
that are always described, even when one is empty:

====  ==========================================  ==========================================
 no.  label (``field`` / ``anatomical``)          segmented property
====  ==========================================  ==========================================
  1   ``Right lung field`` / ``Right lung (anatomical)``  SCT 39607008 "Lung", modifier SCT 24028007 "Right"
  2   ``Left lung field`` / ``Left lung (anatomical)``    SCT 39607008 "Lung", modifier SCT 7771000 "Left"
====  ==========================================  ==========================================

Labels, descriptions, codes and colours come from the label table
(:mod:`medlung.labels`); the segment label and Segment Description name the
lung convention the masks follow, so a reader knows whether the left lung
stops at the heart's edge (``field``) or continues behind it (``anatomical``).

Segment numbers equal medlung's label values (1 = patient right lung,
2 = patient left lung), so :func:`medlung.io.seg.read_dicom_seg` gives the
same label map back. Each segment carries a Recommended Display CIELab Value:
the colours of medlung's overlays (:data:`medlung.labels.COLOURS`,
dark orange for the right lung, blue for the left), so that every viewer
shows the two lungs as medlung's own pictures do. The SEG is in the source
film's Study, in a new Series, references the film (Source Image Sequence,
Referenced Series Sequence and, per frame, the Derivation Image Sequence),
and copies its Patient Orientation.

Geometry of a projection radiograph
-----------------------------------
A CR or DX film has no Image Plane module and no Frame of Reference, so
highdicom writes a SEG without Plane Orientation, Plane Position and, for
films without PixelSpacing, without Pixel Measures. The field's clients need
all three: OHIF looks up the orientation and the Pixel Measures of every SEG
(a SEG without them is never drawn, or blanks the viewport), dcmqi cannot
build an image without the orientation, and highdicom's own reader
(``highdicom.seg.segread``) refuses Pixel Measures without Slice Thickness.
medlung therefore adds, as a 2-D image in its own plane:

* shared Plane Orientation (Patient) ``1\0\0\0\1\0``: rows along x, columns
  along y, the film's pixel grid itself (no claim about the patient's axes:
  Patient Orientation still says where the patient's right is);
* per-frame Plane Position (Patient) ``0\0\0``: both frames (one per lung)
  lie on the film;
* shared Pixel Measures with the spacing the film's own display uses: the
  first valid of PixelSpacing, ImagerPixelSpacing (divided by Estimated
  Radiographic Magnification Factor when present) and Nominal Scanned Pixel
  Spacing, as :func:`medlung.io.dicom.dicom_spacing` reads it and as viewers
  (Cornerstone/OHIF) calibrate projection radiographs. A spacing given by the
  user (``--spacing``) is not written: the SEG must lie on the film as viewers
  show it. A film without any spacing gets ``1\1``, the pixel unit viewers
  fall back to, so measurements on the SEG read in pixels, as on the film.
  Slice Thickness is ``1`` mm: a projection has none, but the Pixel Measures
  of a SEG must carry one (highdicom, dcmqi's 3-D image).

No Frame of Reference UID is invented: dciodvfy reports no error for the
geometry without it (highdicom and dcmqi read it; dcmqi warns that the Frame
of Reference module is absent, which is true of the film too).

Transfer syntax
---------------
A BINARY segmentation stores 1 bit per pixel. Measured with the clients
(``tests/writers/test_seg_clients.py``, ``benchmarks/seg_syntax.py``;
``docs/pacs.md`` has the table):

* Explicit VR Little Endian (``"uncompressed"``, the default): bit-packed,
  4.9 MB for both lungs of a 4020x4892 film; highdicom, dcmqi and pydicom
  read it, and Orthanc (with or without the orthanc-gdcm plugin) stores it
  and serves it whole over DICOMweb (its frames endpoint only when Columns
  is a multiple of 8).
* JPEG 2000 Lossless (``"jpeg2000"``; ``"lossless"`` is its older name):
  hundreds of times smaller (11 kB for the same lungs), read by highdicom
  and pydicom, but dcmqi refuses it ("uses lossy compression"), Orthanc
  cannot transcode 1-bit JPEG 2000 frames (HTTP 500) and Orthanc with the
  orthanc-gdcm plugin crashes (SIGSEGV) when asked to. openjpeg cannot encode
  a frame under 32 pixels along an axis, so such tiny films fall back to
  Explicit VR Little Endian.
* RLE Lossless: allowed for 1-bit images only since DICOM CP 2301; highdicom
  refuses to write it for BINARY segmentations and DCMTK (dcmqi, Orthanc)
  does not decode 1-bit RLE (DCMTK feature #1178, open), so it is not
  offered.
* Deflated Explicit VR Little Endian would also be lossless but dciodvfy
  (dicom3tools) cannot read it, so it is not offered.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

from medlung import labels as label_table
from medlung.atomic import write_atomically
from medlung.errors import EmptySegmentWarning, FilmWarning, OutputExistsError, SegmentationWriteError
from medlung.film import Film
from medlung.uids import (
    SEG_SYNTAXES,
    SegUIDs,
    canonical_options,
    content_digest,
    is_valid_uid,
    replacement_uid,
    seg_uids,
    stored_content_digest,
)

__all__ = [
    "DEFAULT_SEG_SYNTAX",
    "LABEL_NAMES",
    "SEG_SERIES_NUMBER_OFFSET",
    "SEG_SYNTAXES",
    "algorithm_version",
    "check_target",
    "checked_model_version",
    "choose_transfer_syntax",
    "default_series_number",
    "display_spacing",
    "drop_optional_identifiers",
    "empty_segments",
    "film_content",
    "seg_identity",
    "seg_output_options",
    "software_versions",
    "source_dataset",
    "source_problems",
    "write_dicom_seg",
]

#: Label value -> segment label (also the patient side, in words).
LABEL_NAMES = {lung.value: f"{lung.side.capitalize()} lung" for lung in label_table.LUNGS}

#: The SEG's SeriesNumber is the film's SeriesNumber plus this offset (or the
#: offset alone when the film has none), so that viewers list it after the film.
SEG_SERIES_NUMBER_OFFSET = 1000

_EXPLICIT_VR_LE = str(ExplicitVRLittleEndian)
_IMPLICIT_VR_LE = str(ImplicitVRLittleEndian)
_JPEG2000_LOSSLESS = str(JPEG2000Lossless)
#: Transfer syntaxes highdicom can write for a BINARY segmentation.
BINARY_TRANSFER_SYNTAXES = (_JPEG2000_LOSSLESS, _EXPLICIT_VR_LE, _IMPLICIT_VR_LE)

#: The default form: the one every client tested opens (see the module notes).
DEFAULT_SEG_SYNTAX = "uncompressed"
#: openjpeg refuses to encode frames smaller than this along either axis (pixels).
_J2K_MIN_SIZE = 32
#: Plane Orientation (Patient) of a film's SEG: rows along x, columns along y (the film's own pixel grid).
PROJECTION_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
#: Plane Position (Patient) of every frame, mm: both lungs lie on the film.
PROJECTION_POSITION = (0.0, 0.0, 0.0)
#: Slice Thickness in the Pixel Measures, mm: a projection has none, but a SEG's Pixel Measures must carry one.
PROJECTION_SLICE_THICKNESS = 1.0
#: Pixel Spacing written for a film without any spacing, mm: the pixel unit viewers fall back to.
UNKNOWN_SPACING = (1.0, 1.0)

# Type 2 attributes highdicom copies from the source; ACR-NEMA style films
# may lack them. They are added, empty, to the writer's private copy.
_TYPE2_SOURCE_ATTRIBUTES = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_REQUIRED_SOURCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
#: UIDs of the film that the SEG copies or references; an invalid one is replaced (medlung.uids.replacement_uid).
_COPIED_SOURCE_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
#: Text value representations of the header attributes highdicom copies; NUL bytes and other control characters
#: in them are removed, and short texts cut to their VR's length (PS3.5 6.2), so nothing invalid reaches the SEG.
_SHORT_TEXT_VRS = ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM")
_LONG_TEXT_VRS = ("ST", "LT", "UT", "UC")
_TEXT_VR_LENGTHS = {"AE": 16, "CS": 16, "LO": 64, "SH": 16}

# What the SEG keeps of the film's patient identity: the Patient module's type 1/2 attributes (and the
# type 2C ones of an animal patient), with the issuer that qualifies the Patient ID. highdicom also copies
# type 3 attributes of the Patient and Patient Study modules (other IDs and names, comments, age, size,
# weight, history, occupation, ...); the standard does not require them, so they are dropped.
_PATIENT_KEPT = frozenset(
    {
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "PatientBirthDate",
        "PatientSex",
        "PatientSpeciesDescription",
        "PatientSpeciesCodeSequence",
        "PatientBreedDescription",
        "PatientBreedCodeSequence",
        "BreedRegistrationSequence",
        "ResponsiblePerson",
        "ResponsiblePersonRole",
        "ResponsibleOrganization",
    }
)
# Further people named by the film that no SEG module requires (General Study keeps the type 2
# Referring Physician's Name).
_OPTIONAL_PEOPLE = (
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence",
)


def empty_segments(labels: np.ndarray) -> tuple[int, ...]:
    """The label values (1 right lung, 2 left lung) that have no pixel in ``labels``.

    Parameters
    ----------
    labels : numpy.ndarray
        Label map ``(rows, cols)`` with values 0, 1, 2.

    Returns
    -------
    tuple of int
        Empty label values in increasing order; ``()`` when both lungs were found.
    """
    labels = np.asarray(labels)
    return tuple(value for value in LABEL_NAMES if not np.any(labels == value))


def choose_transfer_syntax(transfer_syntax: str, shape: tuple[int, int]) -> str:
    """The Transfer Syntax UID used for a BINARY SEG of the given frame shape.

    Parameters
    ----------
    transfer_syntax : str
        ``"uncompressed"`` (Explicit VR Little Endian, bit-packed: what every
        client opens), ``"jpeg2000"`` (JPEG 2000 Lossless, or Explicit VR
        Little Endian for frames under 32 pixels along an axis; ``"lossless"``
        is its older name) or one of :data:`BINARY_TRANSFER_SYNTAXES`.
    shape : tuple of int
        ``(rows, cols)`` of the film in pixels.

    Returns
    -------
    str
        A Transfer Syntax UID.
    """
    name = str(transfer_syntax).strip()
    uid = SEG_SYNTAXES.get(name.lower())
    if uid == _JPEG2000_LOSSLESS:
        small = min(shape) < _J2K_MIN_SIZE
        return _EXPLICIT_VR_LE if small else _JPEG2000_LOSSLESS
    if uid is not None:
        return uid
    if name in BINARY_TRANSFER_SYNTAXES:
        if name == _JPEG2000_LOSSLESS and min(shape) < _J2K_MIN_SIZE:
            raise ValueError(
                f"JPEG 2000 Lossless cannot encode a {shape[0]}x{shape[1]} frame (openjpeg needs at least "
                f"{_J2K_MIN_SIZE} pixels along each axis); use transfer_syntax='jpeg2000' or 'uncompressed'."
            )
        return name
    raise ValueError(
        f"transfer_syntax must be one of {', '.join(repr(n) for n in SEG_SYNTAXES)} or a Transfer Syntax UID of "
        f"{', '.join(BINARY_TRANSFER_SYNTAXES)} (the syntaxes a BINARY segmentation can use); got {transfer_syntax!r}."
    )


def seg_output_options(options: Mapping[str, Any] | None, syntax: str) -> dict[str, Any]:
    """The options that enter a SEG's UIDs: ``options`` with the Transfer Syntax UID written (``seg_syntax``).

    The form written changes the file, so it enters the UIDs too (a PACS keeps one file per UID).

    Parameters
    ----------
    options : mapping or None
        :func:`medlung.uids.output_options` of the segmenter.
    syntax : str
        The Transfer Syntax UID (:func:`choose_transfer_syntax`).
    """
    canonical_options(options)  # a mapping, or a TypeError that says so
    return {**(options or {}), "seg_syntax": syntax}


def seg_identity(
    film: Film, model_version: str, options: Mapping[str, Any] | None, transfer_syntax: str = DEFAULT_SEG_SYNTAX
) -> tuple[SegUIDs, dict[str, Any]]:
    """The UIDs :func:`write_dicom_seg` gives the SEG of ``film``, and the options they come from.

    Objects that reference the SEG (its DICOM SR) use this instead of reading the SEG back.

    Parameters
    ----------
    film : Film
        The source film (read from DICOM).
    model_version, options, transfer_syntax
        As given to :func:`write_dicom_seg`.

    Returns
    -------
    uids : medlung.uids.SegUIDs
    options : dict
        ``options`` with ``seg_syntax`` (see :func:`seg_output_options`).
    """
    source = source_dataset(film)
    full = seg_output_options(options, choose_transfer_syntax(transfer_syntax, film.shape))
    return seg_uids(str(source.SOPInstanceUID), model_version.strip(), full, film_content(film)), full


def film_content(film: Film) -> str:
    """The content digest that enters the UIDs of a film's SEG and SR (:func:`medlung.uids.derive_uid`).

    From the film file's stored Pixel Data bytes (read, never decoded) with
    its shape, spacing and orientation; from its decoded pixels when there
    is no file to read them from (a Film built in memory); for a deflated file, from its compressed data set.
    The same file always gives the same digest; another film sent under a
    used SOP Instance UID gives another.
    """
    stored = _stored_pixel_digest(film.path) if getattr(film, "path", None) else None
    if stored is not None:
        return stored_content_digest(stored, film.shape, film.spacing, film.orientation)
    return content_digest(film.pixels, film.spacing, film.orientation)


def _stored_pixel_digest(path) -> str | None:
    """BLAKE2b of a DICOM file's Pixel Data value as stored, read in chunks; None when it cannot be located."""
    import hashlib

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                syntax = str(pydicom.filereader.read_file_meta_info(path).get("TransferSyntaxUID", ""))
            except Exception:
                syntax = ""  # no File Meta (an ACR-NEMA style file): implicit VR, never deflated
            if syntax == "1.2.840.10008.1.2.1.99":
                return _deflated_stream_digest(path)  # offsets are in the inflated stream: hash it as stored
            ds = pydicom.dcmread(path, defer_size=256, force=True, specific_tags=["PixelData"])
        raw = ds.get_item(0x7FE00010, keep_deferred=True)
        start, length = int(raw.value_tell), int(raw.length)  # type: ignore[attr-defined]  # a RawDataElement
    except Exception:
        return None
    digest = hashlib.blake2b(digest_size=16)
    left = None if length == 0xFFFFFFFF else length  # encapsulated: to the end of the file
    with open(path, "rb") as handle:
        handle.seek(start)
        while left is None or left > 0:
            chunk = handle.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
    return digest.hexdigest()


def _deflated_stream_digest(path) -> str | None:
    """BLAKE2b of a deflated file's data set as stored (every byte after its File Meta), read in chunks.

    The pixels of a deflated film lie inside the compressed stream, so they
    cannot be read on their own without inflating (and, for a reduced read,
    decoding) the film; the compressed data set holds them and changes with
    them. None when the File Meta is not the standard Part 10 layout.
    """
    import hashlib
    import struct

    with open(path, "rb") as handle:
        head = handle.read(144)
        # preamble, "DICM", then (0002,0000) UL FileMetaInformationGroupLength, explicit VR little endian
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
            return None
        (group_length,) = struct.unpack("<I", head[140:144])
        handle.seek(144 + group_length)
        digest = hashlib.blake2b(b"deflated", digest_size=16)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def display_spacing(source) -> tuple[float, float]:
    """The pixel spacing viewers use to show a film, ``(row_mm, col_mm)``: the SEG's Pixel Spacing.

    Parameters
    ----------
    source : pydicom.Dataset
        The film's header.

    Returns
    -------
    tuple of float
        The first valid of PixelSpacing, ImagerPixelSpacing (divided by
        EstimatedRadiographicMagnificationFactor when present) and
        NominalScannedPixelSpacing, in mm; :data:`UNKNOWN_SPACING` when the
        film has none.
    """
    from medlung.io.dicom import dicom_spacing

    spacing, _ = dicom_spacing(source)
    return spacing if spacing is not None else UNKNOWN_SPACING


def write_dicom_seg(
    film: Film,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    model_version: str,
    options: Mapping[str, Any] | None = None,
    transfer_syntax: str = DEFAULT_SEG_SYNTAX,
    overwrite: bool = False,
    series_number: int | None = None,
    instance_number: int = 1,
    series_description: str = "Lungs (medlung)",
    content_label: str = "LUNGS",
    content_creator: str = "medlung^",
    lungs: str = "field",
) -> Path:
    """Write the right and left lungs of a DICOM film as a BINARY DICOM-SEG.

    Parameters
    ----------
    film : Film
        The source film, read from DICOM (``film.dataset`` is its header). It
        is not modified.
    labels : numpy.ndarray
        Label map of integer or boolean type on the film's native grid, shape
        ``film.shape`` = ``(rows, cols)`` pixels: 0 background, 1 patient
        right lung, 2 patient left lung.
    path : str or os.PathLike
        The file to write (``<stem>_seg.dcm`` by convention). Its folder must
        exist. The file is written to a temporary file in the same folder and
        moved into place, so a reader never sees half a file.
    model_version : str
        Version of the model that made ``labels``; it goes into the algorithm
        identification and into the UIDs.
    lungs : str
        The lung convention of ``labels``, ``"field"`` or ``"anatomical"``: it
        names the segments (see :mod:`medlung.labels`). It changes the file, so
        callers put it in ``options`` too (:func:`medlung.uids.output_options` does).
    options : mapping, optional
        Options that changed the result: :func:`medlung.uids.output_options`
        of the segmenter that made ``labels``. They go into the UIDs and into
        the Algorithm Parameters, with the Transfer Syntax UID written
        (``seg_syntax``).
    transfer_syntax : str, optional
        ``"uncompressed"`` (default: Explicit VR Little Endian, which every
        client tested opens), ``"jpeg2000"`` (JPEG 2000 Lossless, hundreds
        of times smaller but not served by Orthanc nor read by dcmqi; see the
        module notes), ``"lossless"`` (older name of ``"jpeg2000"``) or a
        Transfer Syntax UID of :data:`BINARY_TRANSFER_SYNTAXES`.
    overwrite : bool, optional
        Replace ``path`` if it exists; by default an existing file is an error.
    series_number : int, optional
        SeriesNumber of the SEG; default the film's SeriesNumber +
        :data:`SEG_SERIES_NUMBER_OFFSET`.
    instance_number : int, optional
        InstanceNumber of the SEG (default 1: one SEG per film and series).
    series_description : str, optional
        SeriesDescription (at most 64 characters).
    content_label : str, optional
        ContentLabel (DICOM CS: at most 16 upper-case letters, digits, ``_``).
    content_creator : str, optional
        ContentCreatorName, a DICOM person name ``Family^Given``; the default
        ``"medlung^"`` names the software (with the ``^`` that dciodvfy asks
        of a non-retired person name).

    Returns
    -------
    pathlib.Path
        The written file. The Series and SOP Instance UIDs are deterministic:
        see :func:`medlung.uids.seg_uids`. Segments without pixels are still
        described; :func:`empty_segments` tells which, and an
        :class:`~medlung.errors.EmptySegmentWarning` is issued for them.

    Raises
    ------
    SegmentationWriteError
        The film is not DICOM or lacks a UID the SEG must reference.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError, TypeError
        ``labels`` or another argument is not valid (the message says which).
    """
    import highdicom as hd

    path = Path(path)
    source = source_dataset(film)
    labels = _check_labels(labels, film)
    syntax = choose_transfer_syntax(transfer_syntax, film.shape)
    model_version = checked_model_version(model_version)
    options = seg_output_options(options, syntax)
    options_text = canonical_options(options)
    check_target(path, overwrite)

    for problem in source_problems(film):
        warnings.warn(f"{film.path or 'film'}: {problem}", FilmWarning, stacklevel=2)
    # the content enters the UIDs: another film sent under a used SOP Instance UID gets another SEG UID
    uids = seg_uids(str(source.SOPInstanceUID), model_version, options, film_content(film))
    descriptions = _segment_descriptions(hd, model_version, options_text, lungs)
    if series_number is None:
        series_number = default_series_number(source)

    with warnings.catch_warnings():
        # highdicom re-checks the film's Patient Name; a one-component name
        # ("Anonymized") is the source's, valid DICOM, and not ours to fix.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        seg = _segmentation(
            hd,
            source,
            labels,
            descriptions,
            uids,
            int(series_number),
            int(instance_number),
            model_version,
            content_creator,
            content_label,
            syntax,
            series_description,
        )
    _add_projection_geometry(hd, seg, display_spacing(source))
    # Projection radiographs have no Image Plane module, so General Image's
    # Patient Orientation (type 2C) is required; highdicom does not copy it.
    seg.PatientOrientation = source.get("PatientOrientation") or ""
    drop_optional_identifiers(seg)
    # highdicom draws a random Dimension Organization UID; derive it like the
    # other UIDs so that re-running gives the same file (only the creation
    # date/time attributes differ: they record when the SEG was written).
    for item in list(seg.get("DimensionOrganizationSequence", [])) + list(seg.get("DimensionIndexSequence", [])):
        item.DimensionOrganizationUID = uids.dimension_organization_uid

    _save_atomically(seg, path, overwrite)
    empty = empty_segments(labels)
    if empty:
        names = ", ".join(LABEL_NAMES[value].lower() for value in empty)
        warnings.warn(
            f"{path}: no pixels for the {names}: the segment is described but empty", EmptySegmentWarning, stacklevel=2
        )
    return path


def checked_model_version(model_version) -> str:
    """``model_version`` stripped; a ValueError when it is not a non-empty string."""
    if not isinstance(model_version, str) or not model_version.strip():
        raise ValueError("model_version must be a non-empty string naming the model, e.g. '1.0.0'.")
    return model_version.strip()


def check_target(path: Path, overwrite: bool) -> None:
    """The file to write must be in an existing folder, and not exist unless ``overwrite``.

    Raises
    ------
    SegmentationWriteError
        The folder does not exist.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    if not path.parent.is_dir():
        raise SegmentationWriteError("the output folder does not exist", path.parent, "Create it first.")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            "already exists", path, "Choose another output folder, delete the file, or pass overwrite=True."
        )


def drop_optional_identifiers(seg) -> None:
    """Remove the identifying attributes highdicom copied that no module of the SEG (or SR) requires."""
    for element in list(seg):
        if element.tag.group == 0x0010 and element.keyword not in _PATIENT_KEPT:
            del seg[element.tag]
    for keyword in _OPTIONAL_PEOPLE:
        if keyword in seg:
            delattr(seg, keyword)


def _segmentation(
    hd,
    source,
    labels,
    descriptions,
    uids,
    series_number,
    instance_number,
    model_version,
    content_creator,
    content_label,
    syntax,
    series_description,
):
    """The highdicom Segmentation object (arguments as in :func:`write_dicom_seg`)."""
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=uids.series_instance_uid,
        series_number=series_number,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=instance_number,
        manufacturer="medlung",
        manufacturer_model_name="medlung",
        software_versions=software_versions(model_version),
        device_serial_number=f"medlung-{_medlung_version()}",
        content_description=f"Right and left lungs, model {model_version}"[:64],
        content_creator_name=content_creator,
        content_label=content_label,
        transfer_syntax_uid=syntax,
        omit_empty_frames=False,  # one frame per segment, also when a lung is empty
        series_description=series_description,
    )


def _add_projection_geometry(hd, seg, spacing: tuple[float, float]) -> None:
    """Add the plane orientation, plane positions and pixel measures of a 2-D film (see the module notes)."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    shared.PixelMeasuresSequence = hd.PixelMeasuresSequence(
        pixel_spacing=[float(v) for v in spacing], slice_thickness=PROJECTION_SLICE_THICKNESS
    )
    shared.PlaneOrientationSequence = hd.PlaneOrientationSequence("PATIENT", list(PROJECTION_ORIENTATION))
    for frame in seg.PerFrameFunctionalGroupsSequence:
        frame.PlanePositionSequence = hd.PlanePositionSequence("PATIENT", list(PROJECTION_POSITION))


def _medlung_version() -> str:
    from medlung.version import __version__

    return __version__


def software_versions(model_version: str) -> list[str]:
    """Software Versions of an object medlung writes: medlung's version and the model's (LO, 64 characters each)."""
    return [f"medlung {_medlung_version()}"[:64], f"model {model_version}"[:64]]


def algorithm_version(model_version: str) -> str:
    """The algorithm version medlung writes in an Algorithm Identification: ``"<medlung> model <model>"``."""
    return f"{_medlung_version()} model {model_version}"[:64]


def source_dataset(film: Film, what: str = "a DICOM-SEG"):
    """A private copy of the film's header that highdicom can use as the source image (without pixel data).

    Parameters
    ----------
    film : Film
        A film read from DICOM; its header is not changed.
    what : str
        The object being written, for the error messages (``"a DICOM-SEG"``, ``"a DICOM SR"``).

    Raises
    ------
    SegmentationWriteError
        The film is not DICOM or lacks a UID the new object must reference.
    """
    if not isinstance(film, Film):
        raise TypeError(f"film must be a medlung.Film (from medlung.load_film); got {type(film).__name__}.")
    where = film.path
    if film.dataset is None:
        raise SegmentationWriteError(
            f"{what} needs a DICOM source film, this film was not read from DICOM",
            where,
            "Write PNG or NIfTI masks for PNG/JPEG films.",
        )
    missing = [keyword for keyword in _REQUIRED_SOURCE_UIDS if not str(film.dataset.get(keyword, "") or "").strip()]
    if missing:
        raise SegmentationWriteError(
            f"the film has no {', '.join(missing)}, so {what} cannot reference it",
            where,
            "Write PNG or NIfTI masks instead, or give the film its UIDs (e.g. by importing it into a PACS).",
        )
    source = copy.deepcopy(film.dataset)  # never touch the caller's header
    _repair_source(source)
    for keyword in _TYPE2_SOURCE_ATTRIBUTES:
        if keyword not in source:
            setattr(source, keyword, None)
    if "PixelData" in source:
        del source.PixelData  # highdicom needs the header only
    source.Rows, source.Columns = film.rows, film.cols
    return source


def source_problems(film: Film) -> list[str]:
    """What :func:`write_dicom_seg` must repair in the film's header: invalid UIDs, NUL bytes or over-long texts.

    Parameters
    ----------
    film : Film
        A film read from DICOM (``[]`` for other films).

    Returns
    -------
    list of str
        One sentence per repair (the SEG gets a valid value instead; each
        is also issued as a :class:`~medlung.errors.FilmWarning` by
        :func:`write_dicom_seg`).
    """
    if film.dataset is None:
        return []
    return _repair_source(copy.deepcopy(film.dataset))


def _repair_source(source) -> list[str]:
    """Make the top-level UIDs and texts of a private header copy valid; the sentences saying what changed."""
    problems = []
    for keyword in _COPIED_SOURCE_UIDS:
        if keyword not in source:
            continue
        value = source[keyword].value
        text = "" if value is None else str(value)
        if keyword != "FrameOfReferenceUID" and not text.strip():
            continue  # a missing required UID is refused by _source_dataset with its own message
        if not is_valid_uid(text):
            setattr(source, keyword, replacement_uid(keyword, text))
            problems.append(
                f"the film's {keyword} {text[:70]!r} is not a valid DICOM UID: the SEG uses the derived "
                f"{source[keyword].value} instead"
            )
    changed = []
    for tag in list(source.keys()):
        try:
            element = source[tag]
            vr = element.VR
            if vr not in _SHORT_TEXT_VRS + _LONG_TEXT_VRS or element.value is None:
                continue
            values = element.value if element.VM > 1 else [element.value]
            cleaned = [_clean_text(str(v), vr) for v in values]
            if cleaned != [str(v) for v in values]:
                element.value = cleaned if element.VM > 1 else cleaned[0]
                changed.append(element.keyword or str(element.tag))
        except Exception:  # a value pydicom cannot convert: highdicom does not copy it either
            continue
    if changed:
        problems.append(
            f"NUL bytes, control characters or over-long values removed from {', '.join(changed[:8])} "
            "before they were copied into the SEG"
        )
    return problems


def _clean_text(text: str, vr: str) -> str:
    """``text`` without NUL and other control characters (line breaks kept in long texts), cut to its VR's length."""
    allowed = "\r\n\t\f" if vr in _LONG_TEXT_VRS else ""
    text = "".join(c for c in text if c >= " " or c in allowed).replace("\x7f", "")
    limit = _TEXT_VR_LENGTHS.get(vr)
    return text[:limit] if limit else text


def _check_labels(labels: np.ndarray, film: Film) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array of shape (rows, cols); got {type(labels).__name__}.")
    if labels.shape != film.shape:
        raise ValueError(
            f"labels must have the film's shape (rows, cols) = {film.shape}; got {labels.shape}. "
            "Bring the label map back to the native grid first."
        )
    if labels.dtype.kind not in "biu":
        raise TypeError(f"labels must be of integer or boolean type (0, 1, 2); got {labels.dtype}.")
    if labels.dtype == np.uint8 or labels.dtype == np.bool_:  # a count per value: 10x faster than sorting them
        values = np.flatnonzero(np.bincount(labels.reshape(-1).view(np.uint8), minlength=3))
    else:
        values = np.unique(labels)
    unexpected = [int(v) for v in values if v not in (0, 1, 2)]
    if unexpected:
        raise ValueError(
            f"labels may hold only 0 (background), 1 (right lung) and 2 (left lung); found {unexpected[:5]}."
        )
    return np.ascontiguousarray(labels, dtype=np.uint8)


def default_series_number(source, offset: int = SEG_SERIES_NUMBER_OFFSET) -> int:
    """The SeriesNumber of an object derived from a film: the film's SeriesNumber + ``offset`` (``offset`` alone
    when the film has none or the sum does not fit a DICOM IS)."""
    try:
        base = int(source.get("SeriesNumber"))
    except (TypeError, ValueError):
        base = 0
    number = max(base, 0) + offset
    return number if number < 2**31 else offset


def _segment_descriptions(hd, model_version: str, options_text: str, lungs: str = "field") -> list:
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="medlung",
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm_version(model_version),
        parameters={"options": options_text} if options_text != "{}" else None,
    )
    descriptions = []
    for lung in label_table.LUNGS:
        description = hd.seg.SegmentDescription(
            segment_number=lung.value,
            segment_label=lung.segment_label(lungs),
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=_sct(hd, label_table.SCT_LUNG),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[_sct(hd, label_table.SCT_THORAX)],
            display_color=hd.color.CIELabColor.from_rgb(*lung.colour),
        )
        description.SegmentDescription = lung.description(lungs)[:64]
        # Laterality of the lung: Segmented Property Type Modifier (PS3.3 C.8.20.2, CID 244).
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _sct(hd, lung.laterality_code)
        ]
        descriptions.append(description)
    return descriptions


def _sct(hd, code: tuple):
    """A SNOMED CT ``(code value, meaning)`` of the label table as a highdicom coded concept."""
    value, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator="SCT", meaning=meaning)


def _save_atomically(seg, path: Path, overwrite: bool) -> None:
    """Write through :func:`medlung.atomic.write_atomically` (temporary file, then moved into place)."""
    write_atomically(path, lambda temporary: seg.save_as(temporary, enforce_file_format=True), overwrite)
