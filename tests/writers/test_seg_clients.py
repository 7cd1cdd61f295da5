"""medlung's DICOM-SEGs opened by the field's real clients: highdicom, dcmqi and Orthanc (with orthanc-gdcm).

Each film is a real film (or a real film upsampled to full resolution) with
real or drawn right/left lungs. The clients must give back exactly medlung's
labels, with the segment that says *right* on the side where the film's
PatientOrientation puts the patient's right (the image left of a PA film).
The OHIF browser test lives with the OHIF harness; what OHIF needs from the
SEG (plane orientation, plane positions, Pixel Measures) is checked here too.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medlung.errors import EmptySegmentWarning
from medlung.writers.dicom_seg import display_spacing, write_dicom_seg
from tests import dicom_factory as factory
from tests.writers.seg_support import dciodvfy, load, shenzhen_labels, tools_required, two_lungs
from tests.writers.sr_support import dcmqi_tool

#: SCT codes of the laterality modifier of each lung segment.
RIGHT, LEFT = "24028007", "7771000"
#: 4020x4892 (WxH) at 0.0875 mm: the full-resolution film of DESIGN.md.
FULL_SHAPE, FULL_SPACING = (4892, 4020), 0.0875
#: The SEG forms medlung writes.
SYNTAXES = ("uncompressed", "jpeg2000")


@dataclass
class Case:
    """A film on disk, its label map (0/1/2) and the spacing its display uses (row, col mm)."""

    name: str
    film_path: Path
    labels: np.ndarray
    spacing: tuple[float, float]


def _write_seg(case: Case, folder: Path, syntax: str) -> Path:
    film = load(case.film_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptySegmentWarning)
        return write_dicom_seg(
            film,
            case.labels,
            folder / f"{case.name}_{syntax}_seg.dcm",
            model_version="1.0.0",
            options={"case": case.name},
            transfer_syntax=syntax,
            overwrite=True,
        )


def _shenzhen_dx(folder: Path, shenzhen_pixels, shared_data) -> Case:
    """The real Shenzhen film as a DX with ImagerPixelSpacing only (0.7 mm), with its real lungs."""
    ds = factory.radiograph(
        shenzhen_pixels.astype(np.uint8),
        factory.DX_PRESENTATION,
        "MONOCHROME2",
        ImagerPixelSpacing=[0.7, 0.7],
        PatientOrientation=["L", "F"],
        StudyDate="20240102",
        StudyTime="101500",
        AccessionNumber="A1",
        StudyID="1",
        ReferringPhysicianName="",
    )
    path = factory.write(ds, folder / "shenzhen_dx_imager.dcm")
    return Case("shenzhen_dx_imager", path, shenzhen_labels(shared_data), (0.7, 0.7))


def _full_resolution(folder: Path, shenzhen_pixels, shared_data, sop_class: str, spacing_keyword: str) -> Case:
    """The real Shenzhen film and lungs upsampled to 4020x4892 at 0.0875 mm (the way DESIGN.md builds them)."""
    from PIL import Image

    rows, cols = FULL_SHAPE
    pixels = np.asarray(Image.fromarray(shenzhen_pixels).resize((cols, rows), Image.BILINEAR)).astype(np.uint16) * 16
    labels = np.asarray(Image.fromarray(shenzhen_labels(shared_data)).resize((cols, rows), Image.NEAREST))
    ds = factory.radiograph(
        pixels,
        sop_class,
        "MONOCHROME2",
        bits_stored=12,
        PatientOrientation=["L", "F"],
        **{spacing_keyword: [FULL_SPACING, FULL_SPACING]},
    )
    name = f"fullres_{'cr' if sop_class == factory.CR else 'dx'}_{spacing_keyword}"
    return Case(name, factory.write(ds, folder / f"{name}.dcm"), labels, (FULL_SPACING, FULL_SPACING))


@pytest.fixture(scope="module")
def small_cases(tmp_path_factory, shared_dicom, shared_data, shenzhen_pixels) -> list[Case]:
    """Real films: a small CR without spacing, a tiny CR and a DX (odd size) with ImagerPixelSpacing; a DX with
    ImagerPixelSpacing only made of the real Shenzhen film and its lungs."""
    folder = tmp_path_factory.mktemp("seg_client_films")
    cases = []
    for name in ("CR-MONO1-10-chest.dcm", "CR1_6154.dcm", "dx_image.dcm"):
        film = load(shared_dicom / name)
        cases.append(Case(Path(name).stem, shared_dicom / name, two_lungs(film.shape), display_spacing(film.dataset)))
    cases.append(_shenzhen_dx(folder, shenzhen_pixels, shared_data))
    expected = [(1.0, 1.0), (0.1, 0.1), (1.2, 1.2012), (0.7, 0.7)]  # none, Imager, Pixel, Imager only
    assert all(c.spacing == pytest.approx(e) for c, e in zip(cases, expected, strict=True))
    return cases


@pytest.fixture(scope="module")
def full_cases(tmp_path_factory, shared_data, shenzhen_pixels) -> list[Case]:
    """Full-resolution CR (PixelSpacing) and DX (ImagerPixelSpacing only) films."""
    folder = tmp_path_factory.mktemp("seg_client_full")
    return [
        _full_resolution(folder, shenzhen_pixels, shared_data, factory.CR, "PixelSpacing"),
        _full_resolution(folder, shenzhen_pixels, shared_data, factory.DX_PRESENTATION, "ImagerPixelSpacing"),
    ]


def _right_is_on_the_films_right(case: Case, right: np.ndarray, left: np.ndarray) -> None:
    """On these PA films (PatientOrientation L\\F or assumed) the patient's right lies on the image left."""
    assert right.any() and left.any()
    assert np.nonzero(right)[1].mean() < np.nonzero(left)[1].mean(), case.name


# --- highdicom -------------------------------------------------------------------------------------------
def _check_highdicom(case: Case, path: Path) -> None:
    import highdicom as hd

    seg = hd.seg.segread(path)  # stock highdicom: no workaround
    film_uid = str(load(case.film_path).dataset.SOPInstanceUID)
    sides = {}
    for number in seg.get_segment_numbers():
        description = seg.get_segment_description(number)
        modifier = description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
        sides[str(modifier.CodeValue)] = number
        assert description.RecommendedDisplayCIELabValue  # a colour per lung
    assert sorted(sides) == sorted([RIGHT, LEFT])
    pixels = seg.get_pixels_by_source_instance([film_uid], combine_segments=True, skip_overlap_checks=True)[0]
    assert pixels.shape == case.labels.shape
    assert np.array_equal(pixels, case.labels)  # segment numbers are medlung's label values
    _right_is_on_the_films_right(case, pixels == sides[RIGHT], pixels == sides[LEFT])
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == pytest.approx(case.spacing)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_highdicom_segread_reads_every_seg(tmp_path, small_cases, syntax):
    for case in small_cases:
        path = _write_seg(case, tmp_path, syntax)
        assert dciodvfy(path)[0] == []
        _check_highdicom(case, path)


@pytest.mark.slow
@pytest.mark.parametrize("syntax", SYNTAXES)
def test_highdicom_segread_reads_full_resolution_segs(tmp_path, full_cases, syntax):
    for case in full_cases:
        path = _write_seg(case, tmp_path, syntax)
        assert dciodvfy(path)[0] == []
        _check_highdicom(case, path)


# --- dcmqi -----------------------------------------------------------------------------------------------
def _segimage2itkimage() -> str:
    """dcmqi's converter from the PyPI wheel (``pip install dcmqi``), next to this Python."""
    return dcmqi_tool("segimage2itkimage")


def _check_dcmqi(case: Case, path: Path, out: Path) -> None:
    import SimpleITK as sitk

    out.mkdir()
    run = subprocess.run(
        [_segimage2itkimage(), "--inputDICOM", str(path), "--outputDirectory", str(out), "-t", "nrrd"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    meta = json.loads((out / "meta.json").read_text())
    masks = {}
    for group in meta["segmentAttributes"]:
        for segment in group:
            side = segment["SegmentedPropertyTypeModifierCodeSequence"]["CodeValue"]
            image = sitk.ReadImage(str(out / f"{segment['labelID']}.nrrd"))
            # ITK: x along the columns, y along the rows; one slice
            assert image.GetSpacing()[:2] == pytest.approx(case.spacing[::-1])
            array = sitk.GetArrayFromImage(image)
            assert array.shape == (1, *case.labels.shape)
            masks[side] = array[0] > 0
            assert segment["recommendedDisplayRGBValue"]  # our colours, not dcmqi's default
    assert sorted(masks) == sorted([RIGHT, LEFT])
    assert np.array_equal(masks[RIGHT], case.labels == 1)
    assert np.array_equal(masks[LEFT], case.labels == 2)
    _right_is_on_the_films_right(case, masks[RIGHT], masks[LEFT])


def test_dcmqi_converts_the_default_seg(tmp_path, small_cases):
    for case in small_cases:
        _check_dcmqi(case, _write_seg(case, tmp_path, "uncompressed"), tmp_path / f"itk_{case.name}")


@pytest.mark.slow
def test_dcmqi_converts_full_resolution_segs(tmp_path, full_cases):
    for case in full_cases:
        _check_dcmqi(case, _write_seg(case, tmp_path, "uncompressed"), tmp_path / f"itk_{case.name}")


# --- Orthanc (+ orthanc-gdcm) over DICOMweb -------------------------------------------------------------
GDCM_PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))

#: The DICOMweb requests a viewer makes of a SEG: (path after the instance, Accept header).
REQUESTS = (
    ("/frames/1", 'multipart/related; type="application/octet-stream"'),
    ("/frames/2", 'multipart/related; type="application/octet-stream"; transfer-syntax=*'),
    ("/rendered", "image/png"),
    ("/frames/1/rendered", "image/jpeg"),
    ("", 'multipart/related; type="application/dicom"'),
    ("", 'multipart/related; type="application/dicom"; transfer-syntax=*'),
    ("/metadata", "application/dicom+json"),
)


def _gdcm_plugin() -> Path:
    for folder in GDCM_PLUGIN_DIRS:
        for candidate in sorted(folder.glob("libOrthancGdcm.so*")):
            return candidate
    reason = "the Orthanc GDCM plugin is not installed (apt-get install orthanc-gdcm)"
    if tools_required():
        pytest.fail(f"CI requires it but {reason}")
    pytest.skip(reason)


def _ask(url: str, accept: str) -> tuple[int | str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:  # the server went away
        return type(error).__name__, b""


def _multipart_body(payload: bytes) -> bytes:
    """The first part of a multipart/related answer (the frame bytes)."""
    head, _, rest = payload.partition(b"\r\n\r\n")
    boundary = head.split(b"\r\n")[0]
    return rest[: rest.index(b"\r\n" + boundary)]


def _serve_everything(server, cases: list[Case], folder: Path, syntax: str) -> None:
    """Store each film and its SEG, ask for every DICOMweb form, and check the server still answers."""
    for case in cases:
        server.upload(case.film_path)
        path = _write_seg(case, folder, syntax)
        server.upload(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        base = (
            f"{server.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        answers = {}
        for route, accept in REQUESTS:
            answers[(route, accept)] = _ask(base + route, accept)
            assert server.process.poll() is None, (
                f"Orthanc died (exit {server.process.returncode}) serving {route or 'the instance'} "
                f"({accept}) of the {syntax} SEG of {case.name}"
            )
        assert server.get_json("/system")["DicomAet"] == server.ae_title  # still answers
        if syntax != "uncompressed":
            continue
        # the default form is served as it is stored: the whole instance (what a viewer loads a SEG as) and
        # its metadata; the frames endpoint only when each row of bits ends on a byte boundary (Orthanc cuts
        # 1-bit frames by rows of bytes: "Bad file format" for 4020 columns)
        status, body = answers[("", 'multipart/related; type="application/dicom"')]
        assert status == 200 and b"DICM" in body
        assert answers[REQUESTS[-1]][0] == 200
        if case.labels.shape[1] % 8 == 0:
            status, body = answers[REQUESTS[0]]
            assert status == 200
            expected = np.packbits((case.labels == 1).ravel(), bitorder="little").tobytes()
            assert _multipart_body(body) == expected


def _orthanc(folder: Path, gdcm: bool):
    """A real Orthanc with DICOMweb (start_orthanc skips, or fails under CI, when it is missing), and GDCM if asked."""
    from tests.pacs.orthanc import dicomweb_plugin, start_orthanc

    folder.mkdir()
    extra = {"Plugins": [str(dicomweb_plugin()), str(_gdcm_plugin())]} if gdcm else {}
    return start_orthanc(folder, **extra)


_GDCM_J2K = pytest.mark.xfail(
    reason="measured: Orthanc 1.10 with orthanc-gdcm 1.5 crashes (SIGSEGV) transcoding the 1-bit JPEG 2000 frames "
    "of some films (440x440: 'Bits Allocated are different'; 4020x4892 ones survive); this is why the default SEG "
    "is uncompressed and medlung never sends a JPEG 2000 SEG to a PACS",
    strict=False,
)

SERVERS = [
    pytest.param("uncompressed", False, id="uncompressed-orthanc"),
    pytest.param("uncompressed", True, id="uncompressed-orthanc-gdcm"),
    pytest.param("jpeg2000", False, id="jpeg2000-orthanc"),
    pytest.param("jpeg2000", True, id="jpeg2000-orthanc-gdcm", marks=_GDCM_J2K),
]


@pytest.mark.parametrize("syntax, gdcm", SERVERS)
def test_orthanc_serves_every_seg_and_survives(tmp_path, small_cases, syntax, gdcm):
    from tests.pacs.orthanc import stop_orthanc

    server = _orthanc(tmp_path / "orthanc", gdcm)
    try:
        assert ("gdcm" in server.get_json("/plugins")) == gdcm
        _serve_everything(server, small_cases, tmp_path, syntax)
    finally:
        stop_orthanc(server)


@pytest.mark.slow
@pytest.mark.parametrize("syntax, gdcm", SERVERS)
def test_orthanc_serves_full_resolution_segs_and_survives(tmp_path, full_cases, syntax, gdcm):
    from tests.pacs.orthanc import stop_orthanc

    server = _orthanc(tmp_path / "orthanc", gdcm)
    try:
        _serve_everything(server, full_cases, tmp_path, syntax)
    finally:
        stop_orthanc(server)
