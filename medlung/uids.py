"""Deterministic DICOM UIDs for the objects medlung derives from a film.

A UID under the ``2.25`` root is the decimal form of a UUID (PS3.5 B.2).
medlung builds that UUID with :func:`uuid.uuid5` from the source image's SOP
Instance UID, the model version and the options that change the result, so
that writing the same result twice gives the same UIDs (a PACS keeps one
copy) and a new model version gives new ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

#: Fixed namespace of every UID medlung derives (a random UUID drawn once;
#: changing it would change every UID medlung has ever written).
MEDLUNG_UID_NAMESPACE = uuid.UUID("e9454556-dfb6-433b-b356-08e46039dc5a")

#: The kinds of UID derived per source image; each gives a distinct UID.
UID_KINDS = ("seg-series", "seg-instance", "seg-dimension-organization")


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


def derive_uid(kind: str, source_uid: str, model_version: str, options: Mapping[str, Any] | None = None) -> str:
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
    name = "\n".join((kind, str(source_uid).strip(), model_version.strip(), canonical_options(options)))
    return f"2.25.{uuid.uuid5(MEDLUNG_UID_NAMESPACE, name).int}"


def seg_uids(source_uid: str, model_version: str, options: Mapping[str, Any] | None = None) -> SegUIDs:
    """The Series and SOP Instance UIDs of the DICOM-SEG of one source image.

    See :func:`derive_uid` for the parameters.
    """
    return SegUIDs(
        series_instance_uid=derive_uid("seg-series", source_uid, model_version, options),
        sop_instance_uid=derive_uid("seg-instance", source_uid, model_version, options),
        dimension_organization_uid=derive_uid("seg-dimension-organization", source_uid, model_version, options),
    )
