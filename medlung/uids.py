"""Deterministic DICOM UIDs for the objects medlung derives from a film.

A UID under the ``2.25`` root is the decimal form of a UUID (PS3.5 B.2).
medlung builds that UUID with :func:`uuid.uuid5` from the source image's SOP
Instance UID, a digest of the film's content (its pixels, spacing and
orientation: :func:`content_digest`), the model version and the options that
change the result, so that writing the same result twice gives the same UIDs
(a PACS keeps one copy), a new model version gives new ones, and a different
film sent under an SOP Instance UID already used gets a SEG with other UIDs
(it cannot replace the SEG a PACS shows over the first film).

Source UIDs that are not valid DICOM UIDs (:func:`is_valid_uid`) are never
copied into what medlung writes: :func:`replacement_uid` derives a valid one
from the invalid text (the same text always gives the same UID).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from medlung.defaults import DEFAULT_DICE_ESTIMATE

#: Fixed namespace of every UID medlung derives (a random UUID drawn once;
#: changing it would change every UID medlung has ever written).
MEDLUNG_UID_NAMESPACE = uuid.UUID("e9454556-dfb6-433b-b356-08e46039dc5a")

#: The kinds of UID derived per source image; each gives a distinct UID.
UID_KINDS = (
    "seg-series",
    "seg-instance",
    "seg-dimension-organization",
    "sr-series",
    "sr-instance",
    "sr-tracking-right",
    "sr-tracking-left",
    "sr-tracking-both",
)
#: Longest UID (PS3.5 9.1: a UI value holds at most 64 characters).
MAX_UID_LENGTH = 64

#: Names of the DICOM-SEG forms (``--seg-syntax``) -> Transfer Syntax UID; ``"lossless"`` is the older name of
#: JPEG 2000. Here so that the options that enter the UIDs name the form by its UID (:func:`output_options`).
SEG_SYNTAXES = {
    "uncompressed": str(ExplicitVRLittleEndian),
    "jpeg2000": str(JPEG2000Lossless),
    "lossless": str(JPEG2000Lossless),
}


class SegUIDs(NamedTuple):
    """The UIDs of one DICOM-SEG."""

    series_instance_uid: str
    sop_instance_uid: str
    dimension_organization_uid: str


def canonical_options(options: Mapping[str, Any] | None) -> str:
    """The options as canonical JSON (sorted keys, no spaces), the form hashed into UIDs.

    Values that JSON cannot express are written with :func:`str`.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping of option name to value; got {type(options).__name__}.")
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":"), default=str)


#: Segmenter attributes that change its masks, by the key they enter the UIDs under.
_SEGMENTER_OPTIONS = {
    "roi_size": "roi_size",
    "overlap": "overlap",
    "sw_batch_size": "sw_batch_size",
    "tta": "tta",
    "min_lung_mm2": "min_lung_mm2",
    "lungs": "lungs",
    "fix_orientation": "orientation_fix",
}
#: Model facts (:class:`~medlung.inference.segmenter.ModelSpec`) that change the masks besides its version.
_MODEL_OPTIONS = ("network", "features", "working_spacing", "intensity_percentiles")


def output_options(segmenter, *, spacing=None, seg_syntax: str | None = None, **extra: Any) -> dict[str, Any]:
    """Every option that changes what medlung writes for a film: the one source of its deterministic UIDs.

    ``medlung predict``, the bundle's inference config, ``medlung serve`` and
    the Python API (pass the result as ``options`` to
    :func:`medlung.writers.dicom_seg.write_dicom_seg`) all derive their UIDs
    from this mapping, so two outputs that differ in any of these options
    never share a UID (a PACS would keep only one of them), and the same
    options always give the same UIDs.

    Parameters
    ----------
    segmenter : medlung.inference.Segmenter
        The segmenter that made the masks. Read from it: the sliding-window
        size (``roi_size``, working-grid pixels), ``overlap`` (0-1),
        ``sw_batch_size``, ``tta``, the precision, ``min_lung_mm2`` (mm²),
        the lung convention ``lungs`` when the segmenter has one, the Dice
        estimate's level when not the default (its flag enters the SEG's
        SeriesDescription), and the model's network, features, working spacing (mm) and intensity
        percentiles. The model version enters the UIDs on its own (see
        :func:`derive_uid`).
    spacing : str, float or tuple of float, optional
        The user's spacing override in mm (``--spacing``), ``None`` when the
        films' own spacing is used.
    seg_syntax : str, optional
        The DICOM-SEG form (``"uncompressed"``, ``"jpeg2000"``, ``"lossless"``
        or a Transfer Syntax UID); names are turned into their Transfer
        Syntax UID so that ``"lossless"`` and ``"jpeg2000"`` agree.
    **extra
        Further options that change the output (for tools built on medlung).

    Returns
    -------
    dict
        JSON-friendly option name -> value; ``None`` values are kept, so that
        setting an option to its default is still told apart from an option
        medlung did not have before.
    """
    options: dict[str, Any] = {}
    for attribute, key in _SEGMENTER_OPTIONS.items():
        if hasattr(segmenter, attribute):
            options[key] = _plain(getattr(segmenter, attribute))
    level = getattr(segmenter, "dice_estimate", DEFAULT_DICE_ESTIMATE)
    if level != DEFAULT_DICE_ESTIMATE:  # the estimate's flag enters the SEG's SeriesDescription
        options["dice_estimate"] = level
    if hasattr(segmenter, "dtype"):
        options["precision"] = "fp32" if segmenter.dtype is None else str(segmenter.dtype).replace("torch.", "")
    spec = getattr(segmenter, "spec", None)
    for attribute in _MODEL_OPTIONS:
        if spec is not None and hasattr(spec, attribute):
            options[attribute] = _plain(getattr(spec, attribute))
    options["spacing"] = _plain(spacing)
    if seg_syntax is not None:
        options["seg_syntax"] = SEG_SYNTAXES.get(str(seg_syntax).strip().lower(), str(seg_syntax).strip())
    options.update({key: _plain(value) for key, value in extra.items()})
    return options


def _plain(value: Any) -> Any:
    """Tuples and numpy scalars as JSON values (lists, floats), so equal options give equal text."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a valid DICOM UID: digits and dots, no empty or leading-zero component, at most 64 chars.

    NUL bytes, spaces inside, letters or a trailing dot make it invalid (PS3.5 9.1).
    """
    from pydicom.uid import UID

    text = str(value if value is not None else "")
    return bool(text) and "\0" not in text and UID(text).is_valid


def replacement_uid(attribute: str, invalid: object) -> str:
    """A valid ``2.25`` UID standing for an invalid one, the same for the same text (``attribute`` names its role).

    Parameters
    ----------
    attribute : str
        The attribute the UID came from (``"StudyInstanceUID"`` ...): the
        same invalid text in two roles gives two UIDs.
    invalid : object
        The invalid value as read (its text is hashed, NUL bytes included).
    """
    name = "\n".join(("source-uid-replacement", attribute, repr(invalid)))
    return f"2.25.{uuid.uuid5(MEDLUNG_UID_NAMESPACE, name).int}"


def content_digest(pixels, spacing=None, orientation=None) -> str:
    """A digest of what the network sees of a film: its pixels (values, shape, type), spacing and orientation.

    Enters the SEG's UIDs (:func:`derive_uid`), so that another film sent
    under a used SOP Instance UID never gets the UIDs of the first film's SEG,
    while the same file always gives the same digest.

    Parameters
    ----------
    pixels : numpy.ndarray
        The film's pixels (``Film.pixels``).
    spacing : tuple of float, optional
        ``(row_mm, col_mm)`` as used for the result.
    orientation : tuple of str, optional
        PatientOrientation as used for the result.

    Returns
    -------
    str
        32 hexadecimal digits (BLAKE2b, 128 bits).
    """
    import numpy as np

    array = np.ascontiguousarray(pixels)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([list(array.shape), array.dtype.str, _plain(spacing), _plain(orientation)]).encode())
    digest.update(array.data)
    return digest.hexdigest()


def stored_content_digest(pixel_data_digest: str, shape, spacing=None, orientation=None) -> str:
    """:func:`content_digest` of a film from a digest of its stored Pixel Data bytes instead of its decoded pixels.

    A SEG's UIDs need the film's content, not its decoded native pixels
    (which a reduced decode never makes): the bytes of its Pixel Data, as
    stored, tell one film from another just as well.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(
        json.dumps(["stored", list(shape), str(pixel_data_digest), _plain(spacing), _plain(orientation)]).encode()
    )
    return digest.hexdigest()


def derive_uid(
    kind: str,
    source_uid: str,
    model_version: str,
    options: Mapping[str, Any] | None = None,
    content: str | None = None,
) -> str:
    """A deterministic ``2.25.<decimal UUID>`` UID.

    Parameters
    ----------
    kind : str
        What the UID identifies, one of :data:`UID_KINDS`; different kinds
        give different UIDs for the same inputs.
    source_uid : str
        The SOP Instance UID of the source image.
    model_version : str
        The version of the model that made the result.
    options : mapping, optional
        Options that change the result (e.g. threshold, working spacing);
        their order does not matter.
    content : str, optional
        A digest of the source's content (:func:`content_digest`); every
        SEG medlung writes gives one.

    Returns
    -------
    str
        At most 44 characters, within the 64 allowed for a UI value.
    """
    if kind not in UID_KINDS:
        raise ValueError(f"kind must be one of {', '.join(UID_KINDS)}; got {kind!r}.")
    if not source_uid or not str(source_uid).strip():
        raise ValueError("source_uid must be the non-empty SOP Instance UID of the source image.")
    if not isinstance(model_version, str) or not model_version.strip():
        raise ValueError("model_version must be a non-empty string, e.g. '1.0.0'.")
    parts = [kind, str(source_uid).strip(), model_version.strip(), canonical_options(options)]
    if content is not None:
        parts.append(f"content:{content}")
    return f"2.25.{uuid.uuid5(MEDLUNG_UID_NAMESPACE, chr(10).join(parts)).int}"


def seg_uids(
    source_uid: str, model_version: str, options: Mapping[str, Any] | None = None, content: str | None = None
) -> SegUIDs:
    """The Series and SOP Instance UIDs of the DICOM-SEG of one source image.

    See :func:`derive_uid` for the parameters.
    """
    return SegUIDs(
        series_instance_uid=derive_uid("seg-series", source_uid, model_version, options, content),
        sop_instance_uid=derive_uid("seg-instance", source_uid, model_version, options, content),
        dimension_organization_uid=derive_uid(
            "seg-dimension-organization", source_uid, model_version, options, content
        ),
    )


class SrUIDs(NamedTuple):
    """The UIDs of one DICOM SR measurement report: its series and instance, and one tracking UID per lung group."""

    series_instance_uid: str
    sop_instance_uid: str
    tracking_uids: dict[str, str]


def sr_uids(
    source_uid: str, model_version: str, options: Mapping[str, Any] | None = None, content: str | None = None
) -> SrUIDs:
    """The UIDs of the DICOM SR (TID 1500) of one source image.

    ``options`` are those of the SEG it references (with ``seg_syntax``), so a
    different SEG gives a different SR; ``content`` is the film's content
    digest, as for the SEG. See :func:`derive_uid` for the parameters.
    """
    return SrUIDs(
        series_instance_uid=derive_uid("sr-series", source_uid, model_version, options, content),
        sop_instance_uid=derive_uid("sr-instance", source_uid, model_version, options, content),
        tracking_uids={
            group: derive_uid(f"sr-tracking-{group}", source_uid, model_version, options, content)
            for group in ("right", "left", "both")
        },
    )


def device_uid(model_version: str) -> str:
    """The Device Observer UID of medlung running a model version (the same for every film), under ``2.25``."""
    if not isinstance(model_version, str) or not model_version.strip():
        raise ValueError("model_version must be a non-empty string, e.g. '1.0.0'.")
    return f"2.25.{uuid.uuid5(MEDLUNG_UID_NAMESPACE, 'device' + chr(10) + model_version.strip()).int}"


_PLAIN_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def file_key(uid: str) -> str:
    """A file-name key for a UID received from the network: the UID itself, or a hash when it is not a plain UID.

    Never a path (no ``/``, no leading dot) and at most 64 characters, whatever a peer sends.
    """
    text = str(uid or "").strip()
    if _PLAIN_UID.match(text) and len(text) <= 64:
        return text
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:40]
