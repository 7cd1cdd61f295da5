"""Studies on a PACS for the pull tests, and the fixtures that store them on a real Orthanc.

Test modules import the fixtures (``studies``, ``move_port``, ``pacs``); each module gets its own Orthanc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests import dicom_factory as factory
from tests.pacs.orthanc import free_port, start_orthanc, stop_orthanc
from tests.writers.seg_support import load, two_lungs

#: Accession number of study B (found through C-FIND / QIDO by it).
ACCESSION_B = "ACC-PULL-B"
PATIENT = "PULL-PATIENT"
#: medlung's AE title (the PACS lets it query and retrieve) and the one it receives a C-MOVE as.
CALLING_AE, MOVE_AE = "MEDLUNG", "MEDLUNGMOVE"


@dataclass
class Studies:
    """The studies the tests store on a PACS, by name: their UIDs and files."""

    folder: Path
    uids: dict[str, str] = field(default_factory=dict)
    films: dict[str, list[str]] = field(default_factory=dict)  # study -> the SOP Instance UIDs of its CR/DX films
    files: list[Path] = field(default_factory=list)


def make_studies(shared_data: Path, folder: Path, size: int = 256) -> Studies:
    """Study A: a CR series of two films and a SEG series (not a film); study B: one DX film (ACCESSION_B);
    study C: a secondary capture only (no film); study D: a CR whose pixel data is cut short (it cannot be read)."""
    pixels = np.asarray(Image.open(shared_data / "shenzhen" / "images" / "CHNCXR_0010_0.png").resize((size, size)))
    studies = Studies(folder)
    spacing = [0.7 * 512 / size] * 2
    common = dict(PatientID=PATIENT, PatientName="Pull^Test", PatientOrientation=["L", "F"], PixelSpacing=spacing)
    plan = {
        "A": [(factory.CR, {"SeriesNumber": 1})] * 2,
        "B": [(factory.DX_PRESENTATION, {"SeriesNumber": 1, "AccessionNumber": ACCESSION_B})],
        "C": [(factory.SECONDARY_CAPTURE, {"SeriesNumber": 1})],
        "D": [(factory.CR, {"SeriesNumber": 1})],
    }
    for name, instances in plan.items():
        study, series = generate_uid(), generate_uid()
        studies.uids[name], studies.films[name] = study, []
        for index, (sop_class, extra) in enumerate(instances):
            ds = factory.radiograph(pixels, sop_class, **common, **extra)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.AccessionNumber = extra.get("AccessionNumber", f"ACC-{name}")
            ds.StudyDate, ds.StudyTime, ds.InstanceNumber = "20250101", "120000", index + 1
            if name == "D":
                ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
            path = factory.write(ds, folder / f"{name}{index}.dcm")
            studies.files.append(path)
            if sop_class != factory.SECONDARY_CAPTURE:
                studies.films[name].append(str(ds.SOPInstanceUID))
    # a SEG in study A: another series, not a film, never fetched
    from medlung.writers.dicom_seg import write_dicom_seg

    film = load(studies.files[0])
    studies.files.append(
        write_dicom_seg(film, two_lungs(film.shape), folder / "A_other_seg.dcm", model_version="someone-else")
    )
    return studies


@pytest.fixture(scope="module")
def studies(shared_data, tmp_path_factory) -> Studies:
    return make_studies(shared_data, tmp_path_factory.mktemp("studies"))


@pytest.fixture(scope="module")
def move_port() -> int:
    """The port medlung receives C-MOVEs on."""
    return free_port()


@pytest.fixture(scope="module")
def pacs(studies, tmp_path_factory, move_port):
    """An Orthanc holding the studies; CALLING_AE may query and retrieve, MOVE_AE is a C-MOVE destination."""
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-pull"))
    try:
        for path in studies.files:
            server.upload(path)
        server.add_modality("medlungpull", CALLING_AE, free_port())
        server.add_modality("medlungmove", MOVE_AE, move_port)
        yield server
    finally:
        stop_orthanc(server)
