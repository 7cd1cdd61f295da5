"""End to end in OHIF: medlung's DICOM-SEG opened by a reader in the OHIF Viewer, on a real Orthanc.

A real film is segmented by the shipped model, its SEG written by medlung's
writer (defaults, unmodified), both stored with STOW-RS on a real Orthanc
with the DICOMweb plugin, behind one origin that also serves OHIF's prebuilt
app (npm ``@ohif/app``, pinned in ``tests/interop/package.json``). A Node
driver (``ohif_driver.js``, puppeteer-core) drives the system's headless
Chromium: it opens the study, double-clicks the SEG's thumbnail, answers Yes
to "open this Segmentation?" and takes screenshots. The test then maps
medlung's labels onto the screenshot (the viewer says where the film's
pixels are drawn) and checks that the coloured overlay covers each lung, in
that lung's colour, and little else.

The screenshots and the driver's ``state.json`` are kept in
``$MEDLUNG_ARTIFACTS/ohif/<film>/`` (default: a temporary folder; the path
is printed). Needs ``chromium``, ``node``/``npm`` and ``npm ci`` in
``tests/interop`` (``.ci/run`` does it); OHIF's app is fetched on first use
by ``prepare_ohif.js``. Without them the tests skip, or fail under
``MEDLUNG_REQUIRE_SHARED=1`` (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

import medlung
from medlung.pacs.send import stow_rs
from medlung.writers.dicom_seg import write_dicom_seg
from medlung.writers.overlay import COLOURS
from tests import dicom_factory as factory
from tests.conftest import skip_or_fail
from tests.interop.ohif_server import OhifServer
from tests.pacs.orthanc import orthanc  # noqa: F401  (the real Orthanc fixture)

pytestmark = [pytest.mark.slow, pytest.mark.shared]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "ohif_driver.js"
DRIVER_TIMEOUT_S = 480  # the driver stops itself after this; the test waits a minute more
NPM_TIMEOUT_S = 600

#: Films for the test: name -> (Shenzhen film, how it is stored). The large two are of the test split; the small
#: one (train split) is the film the other SEG tests use.
FILMS = {
    "cr_512": ("CHNCXR_0001_0", "a 512x512 CR with PixelSpacing 0.7 mm"),
    "cr_4020x4892": ("CHNCXR_0010_0", "a 4020x4892 CR (WxH) with PixelSpacing 0.0875 mm, 12 bits"),
    "dx_imager_spacing": ("CHNCXR_0148_0", "a 2048x2048 DX For Presentation, MONOCHROME1, ImagerPixelSpacing only"),
}


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} not found ({hint})")
    return found


@pytest.fixture(scope="session")
def ohif_dist() -> Path:
    """OHIF's prebuilt app; ``npm ci`` (puppeteer-core) and ``prepare_ohif.js`` run here when not done yet."""
    chromium = os.environ.get("MEDLUNG_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file():
        skip_or_fail(f"no Chromium at {chromium} (apt-get install chromium, or set MEDLUNG_CHROMIUM)")
    node = _tool("node", "apt-get install nodejs npm")
    npm = _tool("npm", "apt-get install nodejs npm")
    environment = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1")
    if not (HERE / "node_modules" / "puppeteer-core").is_dir():
        run = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            env=environment,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
        if run.returncode != 0:
            skip_or_fail(f"npm ci in {HERE} failed: {run.stderr.strip()[-500:]}")
    run = subprocess.run(
        [node, str(HERE / "prepare_ohif.js")], env=environment, capture_output=True, text=True, timeout=NPM_TIMEOUT_S
    )
    if run.returncode != 0:
        skip_or_fail(
            f"OHIF's app could not be fetched (node tests/interop/prepare_ohif.js): {run.stderr.strip()[-500:]}"
        )
    return Path(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where the screenshots go: ``$MEDLUNG_ARTIFACTS/ohif`` or a temporary folder."""
    root = os.environ.get("MEDLUNG_ARTIFACTS")
    folder = Path(root) / "ohif" if root else tmp_path_factory.mktemp("ohif-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _film(kind: str, shared_data: Path, folder: Path) -> Path:
    """Write the film of ``kind`` (see :data:`FILMS`) as DICOM into ``folder``."""
    stem = FILMS[kind][0]
    small = Image.open(shared_data / "shenzhen" / "images" / f"{stem}.png").convert("L")
    study = dict(
        PatientOrientation=["L", "F"],
        StudyDate="20240102",
        StudyTime="101500",
        StudyID="42",
        SeriesNumber=3,
        InstanceNumber=1,
        BodyPartExamined="CHEST",
        ViewPosition="PA",
        PatientName=f"Medlung^{kind}",
        PatientID=f"OHIF-{kind}",
        SeriesDescription=FILMS[kind][1][:64],
    )
    if kind == "cr_512":
        ds = factory.radiograph(np.asarray(small), factory.CR, "MONOCHROME2", PixelSpacing=[0.7, 0.7], **study)
    elif kind == "cr_4020x4892":
        big = np.asarray(small.resize((4020, 4892), Image.BICUBIC)).astype(np.uint16) * 16
        ds = factory.radiograph(
            big,
            factory.CR,
            "MONOCHROME2",
            bits_stored=12,
            PixelSpacing=[0.0875, 0.0875],
            WindowCenter=2048,
            WindowWidth=4096,
            **study,
        )
    else:
        big = np.asarray(small.resize((2048, 2048), Image.BICUBIC)).astype(np.uint16) * 16
        ds = factory.radiograph(
            (4095 - big).astype(np.uint16),
            factory.DX_PRESENTATION,
            "MONOCHROME1",
            bits_stored=12,
            ImagerPixelSpacing=[0.2, 0.2],
            PresentationLUTShape="INVERSE",
            PresentationIntentType="FOR PRESENTATION",
            WindowCenter=2048,
            WindowWidth=4096,
            **study,
        )
    return factory.write(ds, folder / f"{kind}.dcm")


def _drive(server: OhifServer, study: str, seg_series: str, out: Path) -> dict:
    """Run the Node driver; its state.json (also when it failed: the test says which step)."""
    arguments = dict(
        url=server.url,
        study=study,
        segSeries=seg_series,
        out=str(out),
        timeoutS=DRIVER_TIMEOUT_S,
        chromium=os.environ.get("MEDLUNG_CHROMIUM", "/usr/bin/chromium"),
    )
    # its own process group: if it outlives its own limit, the driver and its Chromium are stopped together
    process = subprocess.Popen(
        ["node", str(DRIVER), json.dumps(arguments)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = process.communicate(timeout=DRIVER_TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
    (out / "driver.log").write_text(log)
    state = json.loads((out / "state.json").read_text()) if (out / "state.json").is_file() else {}
    state["returncode"] = process.returncode
    state["log"] = log[-3000:]
    return state


def screen_labels(geometry: dict, labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """medlung's labels as the viewer draws them: a ``(height, width)`` map of the screenshot, -1 off the film.

    Parameters
    ----------
    geometry : dict
        The driver's ``film`` record: screenshot ``(x, y)`` (CSS pixels) =
        ``origin + col * perCol + row * perRow`` for the centre of film pixel ``(row, col)``.
    labels : numpy.ndarray
        ``(rows, cols)`` label map on the film's grid.
    size : tuple of int
        The screenshot's ``(width, height)`` in pixels (device pixel ratio 1).
    """
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    matrix = np.array([[geometry["perCol"][0], geometry["perRow"][0]], [geometry["perCol"][1], geometry["perRow"][1]]])
    inverse = np.linalg.inv(matrix)
    dx, dy = xs + 0.5 - geometry["origin"][0], ys + 0.5 - geometry["origin"][1]
    col = np.rint(inverse[0, 0] * dx + inverse[0, 1] * dy).astype(np.int64)
    row = np.rint(inverse[1, 0] * dx + inverse[1, 1] * dy).astype(np.int64)
    inside = (row >= 0) & (row < labels.shape[0]) & (col >= 0) & (col < labels.shape[1])
    left, top, box_w, box_h = geometry["viewportBox"]
    inside &= (xs >= left) & (xs < left + box_w) & (ys >= top) & (ys < top + box_h)
    out = np.full((height, width), -1, dtype=np.int16)
    out[inside] = labels[row[inside], col[inside]]
    return out


def drawn_segments(screenshot: np.ndarray, colours: dict[int, tuple], chroma_min: float = 12.0) -> np.ndarray:
    """Which segment each screenshot pixel shows: 0 none (grey film), else the segment whose colour it carries.

    The film is grey, so any colour is the overlay; a pixel is given to the
    segment whose colour (minus its grey) points the same way as the pixel's.
    """
    rgb = screenshot[..., :3].astype(np.float64)
    chroma = rgb - rgb.mean(axis=-1, keepdims=True)
    strength = np.linalg.norm(chroma, axis=-1)
    numbers = sorted(colours)
    directions = []
    for number in numbers:
        colour = np.asarray(colours[number][:3], dtype=np.float64)
        colour = colour - colour.mean()
        directions.append(colour / np.linalg.norm(colour))
    scores = np.einsum("hwc,sc->hws", chroma, np.asarray(directions))
    best = np.asarray(numbers)[np.argmax(scores, axis=-1)]
    return np.where(strength >= chroma_min, best, 0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def overlay_agreement(screenshot: np.ndarray, geometry: dict, labels: np.ndarray, colours: dict) -> dict:
    """How the drawn overlay matches medlung's labels on the screen.

    Returns, per segment number, the Dice of the drawn lung (the largest patch
    of the segment's colour) against the projected labels and both centres
    (screenshot pixels); ``stray_share``: the share of the film's non-lung
    screen pixels that carry any overlay colour.
    """
    expected = screen_labels(geometry, labels, (screenshot.shape[1], screenshot.shape[0]))
    drawn = drawn_segments(screenshot, colours)
    film = expected >= 0
    result = {"film_screen_pixels": int(film.sum())}
    for number in colours:
        # the lung as drawn: the largest patch of its colour (the viewer's own blue or orange controls that lie
        # on the film, such as its frame and arrows, are small patches apart; they count in stray_share)
        patches, count = ndimage.label((drawn == number) & film)
        sizes = np.bincount(patches.ravel())[1:]
        got = patches == (1 + int(np.argmax(sizes))) if count else np.zeros_like(film)
        want = expected == number
        ys, xs = np.nonzero(want)
        gys, gxs = np.nonzero(got)
        result[number] = {
            "dice": _dice(want, got),
            "expected_pixels": int(want.sum()),
            "drawn_pixels": int(got.sum()),
            "centre_expected": [float(xs.mean()), float(ys.mean())] if xs.size else None,
            "centre_drawn": [float(gxs.mean()), float(gys.mean())] if gxs.size else None,
        }
    stray = (drawn > 0) & film & (expected == 0)
    result["stray_share"] = float(stray.sum() / max(1, (film & (expected == 0)).sum()))
    return result


@pytest.mark.parametrize("kind", list(FILMS))
def test_ohif_draws_both_lungs_where_medlung_labels_them(
    kind, ohif_dist, shared_data, segmenter, orthanc, artifacts, tmp_path
):
    started = time.perf_counter()
    film_path = _film(kind, shared_data, tmp_path)
    film = medlung.load_film(film_path)
    masks = segmenter(film)
    labels = masks.labels
    assert (labels == 1).any() and (labels == 2).any()
    seg_path = write_dicom_seg(film, labels, tmp_path / f"{kind}_seg.dcm", model_version=segmenter.model_version)
    out = artifacts / kind
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"\nOHIF screenshots for {kind}: {out}")
    Image.fromarray((labels * 100).astype(np.uint8)).save(out / "medlung_labels.png")  # 100 right, 200 left

    with OhifServer(ohif_dist, orthanc.http_port) as server:
        sent = stow_rs([film_path, seg_path], f"{server.url}/dicom-web")
        assert all(result.ok for result in sent), [result.message for result in sent]
        for result in sent:  # stored indeed, not only answered 200
            assert orthanc.instances_with_uid(result.sop_instance_uid), f"Orthanc lacks {result.path.name}"
        study = str(film.dataset.StudyInstanceUID)
        seg_series = str(pydicom.dcmread(seg_path, stop_before_pixels=True).SeriesInstanceUID)
        state = _drive(server, study, seg_series, out)
        errors = [f"{status} {method} {path}" for method, path, status in server.requests if status >= 400]
    (out / "server_errors.txt").write_text("\n".join(errors))

    steps = [step["name"] for step in state.get("steps", [])]
    assert state["returncode"] == 0, (
        f"OHIF did not open the SEG of {kind}: steps {steps}, error {state.get('error')}, page errors "
        f"{state.get('pageErrors', [])[:3]}, console {state.get('console', [])[-5:]}, server {errors[:5]} "
        f"(screenshots in {out})"
    )
    segments = {s["index"]: s for s in state["hydrated"]["segmentations"][0]["segments"]}
    assert segments[1]["label"] == "Right lung field" and segments[2]["label"] == "Left lung field"
    colours = {number: tuple(segments[number]["color"][:3]) for number in (1, 2)}
    for number in (1, 2):  # the SEG's Recommended Display CIELab Values are the colours OHIF draws in
        assert np.abs(np.subtract(colours[number], COLOURS[number])).max() <= 3, (number, colours)

    geometry = state["filmHydrated"]
    assert (geometry["rows"], geometry["cols"]) == labels.shape
    # seg.png (the preview before "Yes") is kept for the record; its question box covers part of the film.
    shot = np.asarray(Image.open(out / "hydrated.png").convert("RGB"))
    result = overlay_agreement(shot, geometry, labels, colours)
    (out / "agreement.json").write_text(json.dumps(result, indent=2))
    print(f"{kind}: {json.dumps(result)}; {time.perf_counter() - started:.0f} s")

    right, left = result[1], result[2]
    assert right["dice"] >= 0.9 and left["dice"] >= 0.9, result
    for side in (right, left):  # centres within 2 screen pixels
        assert np.hypot(*np.subtract(side["centre_drawn"], side["centre_expected"])) <= 2.0, side
    assert right["centre_drawn"][0] < left["centre_drawn"][0]  # the patient's right lung on the screen's left
    assert result["stray_share"] <= 0.01, result  # little colour off the lungs
