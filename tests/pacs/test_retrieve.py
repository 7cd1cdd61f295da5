"""Finding and fetching films (medlung.pacs.retrieve) from real PACSs: Orthanc over DICOMweb and DIMSE, dcmqrscp."""

from __future__ import annotations

import pydicom
import pytest

from medlung.errors import InvalidDestinationError
from medlung.pacs.retrieve import DicomwebSource, DimseSource, RetrieveError, open_source, parse_query
from tests.pacs.dcmqrscp import start_dcmqrscp, stop_dcmqrscp
from tests.pacs.orthanc import free_port
from tests.pacs.pull_support import (  # noqa: F401  (fixtures)
    ACCESSION_B,
    CALLING_AE,
    MOVE_AE,
    PATIENT,
    move_port,
    pacs,
    studies,
)


@pytest.fixture(scope="module")
def archive(studies, tmp_path_factory, move_port):
    """A dcmtk dcmqrscp holding the same studies (stored with dcmsend)."""
    server = start_dcmqrscp(tmp_path_factory.mktemp("dcmqrscp"), {MOVE_AE: move_port})
    try:
        server.store(*studies.files)
        yield server
    finally:
        stop_dcmqrscp(server)


def _sources(kind, pacs, archive, move_port):
    if kind == "dicomweb":
        return DicomwebSource(pacs.dicomweb)
    server = archive if kind.startswith("dcmqrscp") else pacs
    retrieve = "move" if kind.endswith("move") else "get"
    return DimseSource(
        server.destination, calling_ae=CALLING_AE, retrieve=retrieve, move_ae=MOVE_AE, move_port=move_port
    )


@pytest.mark.parametrize("kind", ["dicomweb", "orthanc-get", "orthanc-move", "dcmqrscp-get", "dcmqrscp-move"])
def test_find_by_accession_and_query_then_fetch_only_the_films_once(kind, studies, pacs, archive, move_port, tmp_path):
    with _sources(kind, pacs, archive, move_port) as source:
        assert source.find_studies({"AccessionNumber": ACCESSION_B}) == [studies.uids["B"]]
        assert sorted(source.find_studies({"PatientID": PATIENT})) == sorted(studies.uids.values())
        assert source.find_studies({"AccessionNumber": "NO-SUCH"}) == []
        films = source.find_films(studies.uids["A"])
        assert sorted(f.sop_instance_uid for f in films) == sorted(studies.films["A"])  # the CR series, not the SEG
        assert source.find_films(studies.uids["C"]) == []  # a secondary capture is not a film
        first = source.fetch(films, tmp_path / "A")
        assert first.problems == {} and first.fetched == 2
        for film in films:
            stored = pydicom.dcmread(first.files[film.sop_instance_uid])
            assert stored.SOPInstanceUID == film.sop_instance_uid and stored.Modality == "CR"
            assert stored.pixel_array.shape == (256, 256)
        again = source.fetch(films, tmp_path / "A")
        assert again.fetched == 0 and again.files == first.files  # nothing fetched a second time


def test_an_unreachable_pacs_and_an_unknown_move_destination_are_one_line_each(studies, pacs, tmp_path):
    nobody = DimseSource(f"NOBODY@127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(RetrieveError, match=r"association with NOBODY@127\.0\.0\.1:\d+ not established"):
        nobody.find_studies({"PatientID": PATIENT})
    with pytest.raises(RetrieveError, match=r"no answer from http://127\.0\.0\.1"):
        DicomwebSource(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=5).find_studies({})
    lost = DimseSource(
        pacs.destination, calling_ae=CALLING_AE, retrieve="move", move_ae="UNKNOWNAE", move_port=free_port()
    )
    films = lost.find_films(studies.uids["B"])
    result = lost.fetch(films, tmp_path / "B")
    assert list(result.problems) == [films[0].sop_instance_uid] and result.files == {}
    assert "C-MOVE" in result.problems[films[0].sop_instance_uid]


def test_addresses_and_queries_are_checked_before_anything_is_asked():
    assert parse_query("PatientID=1, ModalitiesInStudy=CR") == {"PatientID": "1", "ModalitiesInStudy": "CR"}
    with pytest.raises(InvalidDestinationError, match="is not KEY=VALUE with a known key"):
        parse_query("Colour=red")
    with pytest.raises(InvalidDestinationError, match="C-MOVE needs the AE title and port"):
        open_source("PACS@127.0.0.1:104", retrieve="move")
    with pytest.raises(InvalidDestinationError, match="apply to a DIMSE source"):
        open_source("http://127.0.0.1:8042/dicom-web", retrieve="move")
    with pytest.raises(InvalidDestinationError, match="has no AE title"):
        open_source("127.0.0.1:104")
