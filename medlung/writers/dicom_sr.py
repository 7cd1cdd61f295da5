"""The lung measurements of a film as a DICOM SR: a TID 1500 Measurement Report, with highdicom's templates.

The report is a Comprehensive SR document in the film's Study (a new Series,
modality SR) whose content tree is (``docs/formats.md`` shows it in full)::

    Imaging Measurement Report (TID 1500)
    ├─ language, observer: device "medlung" (its model version), procedure: plain X-ray of chest
    └─ Imaging Measurements
       ├─ Measurement Group "Right lung"  (TID 1411)  -> SEG segment 1, source image: the film
       ├─ Measurement Group "Left lung"   (TID 1411)  -> SEG segment 2, source image: the film
       └─ Measurement Group "Both lungs"  (TID 1411)  -> SEG segments 1 and 2, source image: the film

Each group has a tracking identifier and UID, the finding "Lung" at the
finding site "Lung" with its laterality (right, left, right and left), the
algorithm identification (medlung, its version and the model's, the options
that changed the result), its measurements (TID 300 NUM items) and its
qualitative evaluations (CODE items). What goes in is data: a list of
:class:`SrMeasurement` and :class:`SrEvaluation` items, each naming its group
(:func:`medlung.inference.reporting.report_items` builds medlung's own from a
segmentation result), so another measurement (an estimated Dice, say) is one
more item, not a new field.

Why TID 1411 (volumetric ROI) for a 2-D film and not TID 1410 (planar ROI)?
A planar group references one SEG *frame* ("Referenced Segmentation Frame");
a volumetric group references a *segment* ("Referenced Segment", whose IMAGE
item may list several segment numbers: the both-lungs group lists 1 and 2).
DCMTK's TID 1500 support, which dcmqi's ``tid1500reader`` uses, reads only
the latter, and "segment" is what a reader wants to follow to the SEG.

Codes: SNOMED CT, DICOM (DCM) and UCUM where they have a concept (area SCT
42798000, height DCM 121207, width SCT 103355008; cm2, mm, and ``{pixels}``,
UCUM's annotation for a count of pixels, for films without spacing), and
medlung's own coding scheme ``99MEDLUNG`` (a private scheme, declared in the
Coding Scheme Identification Sequence) for the lung convention and the quality
flags, which no standard code names.

UIDs are deterministic (:func:`medlung.uids.sr_uids`): they come from the
film, the model version and the same options as the SEG's (with its transfer
syntax), so the SR written again for the same SEG keeps its UIDs, and the SEG
it references is the one medlung writes for those options
(:func:`medlung.writers.dicom_seg.seg_identity`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.sr.coding import Code
from pydicom.uid import SegmentationStorage

from medlung.atomic import write_atomically
from medlung.film import Film
from medlung.uids import SegUIDs, canonical_options, device_uid, sr_uids
from medlung.writers.dicom_seg import (
    algorithm_version,
    check_target,
    checked_model_version,
    default_series_number,
    drop_optional_identifiers,
    film_content,
    software_versions,
    source_dataset,
)

__all__ = [
    "AREA",
    "GROUPS",
    "HEIGHT",
    "LOCAL_SCHEME",
    "LUNG_CONVENTION",
    "QUALITY_CHECK",
    "QUALITY_FLAG",
    "SR_SERIES_NUMBER_OFFSET",
    "UNITS",
    "WIDTH",
    "SrEvaluation",
    "SrMeasurement",
    "local_code",
    "write_dicom_sr",
]

#: medlung's private coding scheme (PS3.16 8.2: a local scheme's designator starts with "99").
LOCAL_SCHEME = "99MEDLUNG"
#: The measurement groups, in the order they are written: each lung, then both together.
GROUPS = ("right", "left", "both")
#: SEG segment numbers each group references (medlung's label values: 1 patient right lung, 2 patient left lung).
GROUP_SEGMENTS = {"right": (1,), "left": (2,), "both": (1, 2)}
#: Tracking Identifier (human-readable) of each group.
GROUP_NAMES = {"right": "Right lung", "left": "Left lung", "both": "Both lungs"}
#: Laterality of each group's finding site (CID 244).
GROUP_LATERALITY = {
    "right": Code("24028007", "SCT", "Right"),
    "left": Code("7771000", "SCT", "Left"),
    "both": Code("51440002", "SCT", "Right and left"),
}

AREA = Code("42798000", "SCT", "Area")
HEIGHT = Code("121207", "DCM", "Height")
WIDTH = Code("103355008", "SCT", "Width")
#: Units by medlung's short name (UCUM): areas in cm² or pixels, lengths in mm or pixels.
UNITS = {
    "cm2": Code("cm2", "UCUM", "square centimeter"),
    "mm": Code("mm", "UCUM", "millimeter"),
    "px": Code("{pixels}", "UCUM", "pixels"),
    "1": Code("1", "UCUM", "no units"),
}
LUNG = Code("39607008", "SCT", "Lung")
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain X-ray of chest")


def local_code(value: str, meaning: str) -> Code:
    """A code of medlung's coding scheme :data:`LOCAL_SCHEME`."""
    return Code(value, LOCAL_SCHEME, meaning)


LUNG_CONVENTION = local_code("lung-convention", "Lung convention")
QUALITY_CHECK = local_code("qc", "Quality check")
QUALITY_FLAG = local_code("qc-flag", "Quality flag")
#: The estimated Dice of a mask (medlung.estimation) and its 80 % interval, 0-1 (unit "1"); code values of at most
#: 16 characters (highdicom reads a measurement name with a Long Code Value as no code).
DICE_ESTIMATE = local_code("dice-est", "Estimated Dice coefficient")
DICE_ESTIMATE_LOW = local_code("dice-est-low", "Estimated Dice coefficient, 80 % interval low")
DICE_ESTIMATE_HIGH = local_code("dice-est-high", "Estimated Dice coefficient, 80 % interval high")

#: The SR's SeriesNumber is the film's SeriesNumber plus this offset (the SEG's is + 1000).
SR_SERIES_NUMBER_OFFSET = 2000


@dataclass(frozen=True)
class SrMeasurement:
    """One number of the report (a TID 300 Measurement in one group).

    Attributes
    ----------
    name : pydicom.sr.coding.Code
        What is measured, e.g. :data:`AREA`.
    value : float
        The number, in ``unit``.
    unit : pydicom.sr.coding.Code
        Its UCUM unit, e.g. ``UNITS["cm2"]``.
    group : str
        The group it belongs to, one of :data:`GROUPS`.
    """

    name: Code
    value: float
    unit: Code
    group: str


@dataclass(frozen=True)
class SrEvaluation:
    """One coded answer of the report (a qualitative evaluation in one group), e.g. lung convention = field.

    Attributes
    ----------
    name : pydicom.sr.coding.Code
        The question, e.g. :data:`LUNG_CONVENTION`.
    value : pydicom.sr.coding.Code
        The answer.
    group : str
        One of :data:`GROUPS`.
    """

    name: Code
    value: Code
    group: str


def write_dicom_sr(
    film: Film,
    items: Sequence[SrMeasurement | SrEvaluation],
    path: str | os.PathLike,
    *,
    seg: SegUIDs,
    model_version: str,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    series_number: int | None = None,
    instance_number: int = 1,
    series_description: str = "Lung measurements (medlung)",
) -> Path:
    """Write a TID 1500 measurement report of one film's lungs, referencing its SEG and the film.

    Parameters
    ----------
    film : Film
        The source film, read from DICOM (not modified).
    items : sequence of SrMeasurement or SrEvaluation
        What the report says, group by group (:data:`GROUPS`); a group without
        any item is left out. See :func:`medlung.inference.reporting.report_items`.
    path : str or os.PathLike
        The file to write (``<stem>_sr.dcm`` by convention); its folder must
        exist. Written to a temporary file beside it and moved into place.
    seg : medlung.uids.SegUIDs
        The UIDs of the film's SEG, whose segments the groups reference
        (:func:`medlung.writers.dicom_seg.seg_identity`).
    model_version : str
        Version of the model that made the masks (algorithm identification, UIDs).
    options : mapping, optional
        The options that entered the SEG's UIDs (with ``seg_syntax``): they
        enter the SR's UIDs and are written as the algorithm's parameters.
    overwrite : bool, optional
        Replace ``path`` if it exists; by default an existing file is an error.
    series_number : int, optional
        Default the film's SeriesNumber + :data:`SR_SERIES_NUMBER_OFFSET`.
    instance_number : int, optional
        InstanceNumber (default 1).
    series_description : str, optional
        SeriesDescription (at most 64 characters).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    SegmentationWriteError
        The film is not DICOM or lacks a UID the report must reference.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError, TypeError
        An item or another argument is not valid (the message says which).
    """
    import highdicom as hd

    path = Path(path)
    source = source_dataset(film, "a DICOM SR")
    model_version = checked_model_version(model_version)
    grouped = _grouped(items)
    options_text = canonical_options(options)
    check_target(path, overwrite)
    uids = sr_uids(str(source.SOPInstanceUID), model_version, options, film_content(film))
    algorithm = hd.sr.AlgorithmIdentification(
        name="medlung",
        version=algorithm_version(model_version),
        parameters=[options_text] if options_text != "{}" else None,
    )
    groups = [
        _group(hd, group, grouped[group], source, seg, uids.tracking_uids[group], algorithm)
        for group in GROUPS
        if grouped[group]
    ]
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(hd, model_version),
        procedure_reported=PLAIN_CHEST_XRAY,
        imaging_measurements=groups,
    )
    if series_number is None:
        series_number = default_series_number(source, SR_SERIES_NUMBER_OFFSET)
    with warnings.catch_warnings():
        # highdicom re-checks the film's Patient Name; a one-component name is the source's, not ours to fix
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        document = hd.sr.ComprehensiveSR(
            evidence=[source, _seg_evidence(source, seg)],
            content=report[0],
            series_instance_uid=uids.series_instance_uid,
            series_number=int(series_number),
            sop_instance_uid=uids.sop_instance_uid,
            instance_number=int(instance_number),
            manufacturer="medlung",
            is_complete=True,
            series_description=series_description[:64],
            coding_schemes=[
                hd.coding_schemes.CodingSchemeIdentificationItem(
                    LOCAL_SCHEME, name="medlung codes", responsible_organization="medlung"
                )
            ],
        )
    document.add_new("SoftwareVersions", "LO", software_versions(model_version))
    document.add_new("ManufacturerModelName", "LO", "medlung")
    drop_optional_identifiers(document)
    write_atomically(path, lambda temporary: document.save_as(temporary, enforce_file_format=True), overwrite)
    return path


def _grouped(items: Sequence[SrMeasurement | SrEvaluation]) -> dict[str, list]:
    grouped: dict[str, list] = {group: [] for group in GROUPS}
    for item in items:
        if not isinstance(item, (SrMeasurement, SrEvaluation)):
            raise TypeError(f"items must be SrMeasurement or SrEvaluation; got {type(item).__name__}.")
        if item.group not in grouped:
            raise ValueError(f"an item's group must be one of {', '.join(GROUPS)}; got {item.group!r}.")
        grouped[item.group].append(item)
    if not any(grouped.values()):
        raise ValueError("items is empty: a measurement report needs at least one measurement or evaluation.")
    return grouped


def _group(hd, group: str, items: list, source, seg: SegUIDs, tracking_uid: str, algorithm):
    """One TID 1411 measurement group referencing the SEG's segment of ``group`` (or the whole SEG) and the film."""
    segments = GROUP_SEGMENTS[group]
    referenced = hd.sr.ReferencedSegment(
        sop_class_uid=SegmentationStorage,
        sop_instance_uid=seg.sop_instance_uid,
        segment_number=segments[0],
        source_images=[
            hd.sr.SourceImageForSegmentation(
                referenced_sop_class_uid=str(source.SOPClassUID),
                referenced_sop_instance_uid=str(source.SOPInstanceUID),
            )
        ],
    )
    if len(segments) > 1:
        # both lungs: the SEG as a whole (Referenced Segment Number is type 1C, absent for a reference to every
        # segment); DCMTK/dcmqi take only the first of several numbers and highdicom cannot read several back
        del referenced[0].ReferencedSOPSequence[0].ReferencedSegmentNumber
    measurements = [
        hd.sr.Measurement(name=item.name, value=float(item.value), unit=item.unit)
        for item in items
        if isinstance(item, SrMeasurement)
    ]
    evaluations = [
        hd.sr.QualitativeEvaluation(name=item.name, value=item.value)
        for item in items
        if isinstance(item, SrEvaluation)
    ]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=GROUP_NAMES[group]),
        referenced_segment=referenced,
        finding_type=LUNG,
        finding_sites=[hd.sr.FindingSite(anatomic_location=LUNG, laterality=GROUP_LATERALITY[group])],
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
    )


def _observation_context(hd, model_version: str):
    """The observer: medlung, as a device, with its version and the model's."""
    from medlung.version import __version__ as medlung_version

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(model_version),
        name="medlung",
        manufacturer_name="medlung",
        model_name=f"model {model_version}"[:64],
        serial_number=f"medlung-{medlung_version}"[:64],
    )
    from pydicom.sr.codedict import codes

    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )


def _seg_evidence(source, seg: SegUIDs):
    """The SEG as evidence of the report (its UIDs; the SEG is in the film's Study)."""
    from pydicom.dataset import Dataset

    evidence = Dataset()
    evidence.StudyInstanceUID = source.StudyInstanceUID
    evidence.SeriesInstanceUID = seg.series_instance_uid
    evidence.SOPInstanceUID = seg.sop_instance_uid
    evidence.SOPClassUID = SegmentationStorage
    return evidence
