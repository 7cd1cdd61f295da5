"""Deterministic DICOM UIDs (medlung.uids), without writing a SEG."""

from __future__ import annotations

import uuid

import pytest
from pydicom.uid import UID

from medlung.uids import MEDLUNG_UID_NAMESPACE, UID_KINDS, canonical_options, derive_uid, device_uid, seg_uids, sr_uids


def test_a_uid_is_the_decimal_uuid5_of_its_inputs_under_2_25():
    uid = derive_uid("seg-instance", "1.2.3", "1.0.0", {"tta": True, "roi_size": 224})
    name = "seg-instance\n1.2.3\n1.0.0\n" + '{"roi_size":224,"tta":true}'
    assert uid == f"2.25.{uuid.uuid5(MEDLUNG_UID_NAMESPACE, name).int}"
    assert UID(uid).is_valid and len(uid) <= 64


def test_same_inputs_same_uid_and_option_order_does_not_matter():
    assert derive_uid("seg-series", "1.2.3", "1.0", {"a": 1, "b": 2}) == derive_uid(
        "seg-series", " 1.2.3", "1.0 ", {"b": 2, "a": 1}
    )
    assert canonical_options(None) == canonical_options({}) == "{}"
    assert canonical_options({"p": (0.5, 1.5)}) == '{"p":[0.5,1.5]}'


@pytest.mark.parametrize("change", [("source", "1.2.4"), ("version", "1.0.1"), ("options", {"tta": False})])
def test_anything_that_changes_the_output_changes_every_uid(change):
    base = dict(source="1.2.3", version="1.0.0", options={"tta": True})
    changed = {**base, change[0]: change[1]}
    before, after = (_every_uid(inputs["source"], inputs["version"], inputs["options"]) for inputs in (base, changed))
    assert not set(before) & set(after)
    assert len(set(before)) == len(UID_KINDS)  # the kinds (SEG's and SR's) differ from each other


def _every_uid(source: str, version: str, options: dict) -> list[str]:
    """The SEG's and the SR's UIDs of one film."""
    sr = sr_uids(source, version, options)
    return [
        *seg_uids(source, version, options),
        sr.series_instance_uid,
        sr.sop_instance_uid,
        *sr.tracking_uids.values(),
    ]


def test_the_device_uid_follows_the_model_version_only():
    assert device_uid("2.0.0") == device_uid(" 2.0.0") != device_uid("2.0.1")
    assert UID(device_uid("2.0.0")).is_valid
    with pytest.raises(ValueError, match="model_version must be"):
        device_uid("")


@pytest.mark.parametrize(
    "args, message",
    [
        (("film", "1.2.3", "1"), "kind must be one of"),
        (("seg-series", " ", "1"), "source_uid must be"),
        (("seg-series", "1.2.3", ""), "model_version must be"),
    ],
)
def test_bad_inputs_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        derive_uid(*args)
    with pytest.raises(TypeError, match="options must be a mapping"):
        canonical_options([("a", 1)])
