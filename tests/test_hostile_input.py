"""Hostile and broken input: every file is a Film or a one-line MedlungError, quickly, with bounded memory.

The corpus is built from the real files in ../shared/data (DICOM and PNG):
truncations, flipped bytes, malformed elements, absurd sizes, nested
sequences, odd header strings. Each input goes through ``load_film``; a
sample also goes through ``medlung predict`` and ``medlung info`` as
processes.
"""

from __future__ import annotations

import copy
import io
import os
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset

import medlung
from medlung.errors import MedlungError
from medlung.spacing import check_spacing, parse_user_spacing
from tests import dicom_factory as factory

SMALL_DICOM = [
    "CR-MONO1-10-chest.dcm",
    "CR-MONO1-10-chest_RLE.dcm",
    "dx_image.dcm",
    "CR1_6154.dcm",
    "vlut_04.dcm",
    "seg_image_cr_binary.dcm",
]
LARGE_DICOM = ["RG1_J2KI.dcm", "RG2_JPLL.dcm", "CR-ModalitySequenceLUT.dcm", "RG1_JLSN.dcm"]
REJECT_SECONDS = 5.0


def _png_bytes(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with a tiny (wrong) image stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _dataset_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _element_offset(data: bytes, tag: tuple[int, int]) -> int:
    return data.find(struct.pack("<HH", *tag))


def build_corpus(shared: Path, shenzhen_pixels: np.ndarray) -> dict[str, bytes]:
    """Name -> file content for every hostile input."""
    rng = np.random.default_rng(2026)
    corpus: dict[str, bytes] = {}
    for name in SMALL_DICOM + LARGE_DICOM:
        data = (shared / "dicom" / name).read_bytes()
        cuts = np.unique(np.linspace(1, len(data) - 1, 12 if name in SMALL_DICOM else 4).astype(int))
        for cut in cuts:
            corpus[f"trunc{cut}_{name}"] = data[:cut]
        flips = 10 if name in SMALL_DICOM else 3
        for i in range(flips):  # flipped bytes in the header
            mutated = bytearray(data)
            for offset in rng.integers(128, min(len(data), 2000), 8):
                mutated[offset] ^= 0xFF
            corpus[f"headerflip{i}_{name}"] = bytes(mutated)
        for i in range(2):  # flipped bytes in the pixel data
            mutated = bytearray(data)
            for offset in rng.integers(len(data) // 2, len(data), 64):
                mutated[offset] ^= int(rng.integers(1, 256))
            corpus[f"pixelflip{i}_{name}"] = bytes(mutated)
        pixel = _element_offset(data, (0x7FE0, 0x0010))
        if pixel > 0 and data[pixel + 4 : pixel + 6] in (b"OW", b"OB"):
            mutated = bytearray(data)  # explicit VR: 2 reserved bytes then a 4-byte length
            mutated[pixel + 8 : pixel + 12] = struct.pack("<I", 0xFFFFFFF0)
            corpus[f"hugelength_{name}"] = bytes(mutated)
    # Rows / Columns / BitsAllocated that disagree with the pixel data
    base = factory.radiograph(shenzhen_pixels, factory.CR, PixelSpacing=[0.7, 0.7])
    for keyword, value in (
        ("Rows", 4000),
        ("Columns", 1),
        ("Rows", 0),
        ("BitsAllocated", 0),
        ("BitsAllocated", 64),
        ("BitsStored", 40),
        ("SamplesPerPixel", 3),
        ("Rows", 20000),
        ("PhotometricInterpretation", "PALETTE COLOR"),
    ):
        ds = copy.deepcopy(base)
        setattr(ds, keyword, value)
        corpus[f"header_{keyword}_{value}.dcm"] = _dataset_bytes(ds)
    huge = copy.deepcopy(base)
    huge.Rows, huge.Columns = 20000, 20000
    corpus["declared_20000x20000.dcm"] = _dataset_bytes(huge)
    one = factory.radiograph(np.array([[7]], np.uint16), factory.DX_PRESENTATION, bits_stored=12)
    corpus["one_pixel.dcm"] = _dataset_bytes(one)
    # wrong VR / length of an ordinary element
    data = _dataset_bytes(base)
    offset = _element_offset(data, (0x0028, 0x0030))
    mutated = bytearray(data)
    mutated[offset + 6 : offset + 8] = struct.pack("<H", 0xFFFF)
    corpus["bad_length_pixelspacing.dcm"] = bytes(mutated)
    mutated = bytearray(data)
    mutated[offset + 4 : offset + 6] = b"SQ"
    corpus["wrong_vr_pixelspacing.dcm"] = bytes(mutated)
    # deeply nested sequences, written as raw bytes (undefined lengths), 50 to 5000 levels
    data = _dataset_bytes(base)
    pixel = _element_offset(data, (0x7FE0, 0x0010))
    open_level = (
        struct.pack("<HH", 0x0040, 0xA730)
        + b"SQ\0\0"
        + struct.pack("<I", 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    )
    close_level = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    for depth in (50, 500, 5000):
        corpus[f"nested_{depth}.dcm"] = data[:pixel] + open_level * depth + close_level * depth + data[pixel:]
    # hostile strings: non-ASCII, path-like UIDs and names
    odd = copy.deepcopy(base)
    odd.PatientName = "../../etc/passwd^Ünïcødé"
    odd.PatientID = "/tmp/x;rm -rf"
    odd.SOPInstanceUID = "../../evil"
    odd.SeriesDescription = "é" * 300
    corpus["hostile_strings.dcm"] = _dataset_bytes(odd)
    # a DICOM whose preamble is a TIFF header, and a PNG named .dcm
    dicom = bytearray(_dataset_bytes(base))
    dicom[:4] = b"II*\x00"
    corpus["tiff_preamble.dcm"] = bytes(dicom)
    corpus["png_named.dcm"] = _png_bytes(shenzhen_pixels)
    # PNG variants
    corpus["png16.png"] = _png_bytes(shenzhen_pixels.astype(np.uint16) * 257)
    palette = Image.fromarray(shenzhen_pixels).convert("P", palette=Image.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    corpus["palette.png"] = buffer.getvalue()
    corpus["declared_20000x20000.png"] = _png_declaring(20000, 20000)
    corpus["declared_0x10.png"] = _png_declaring(0, 10)
    corpus["one_pixel.png"] = _png_bytes(np.array([[9]], np.uint8))
    png = _png_bytes(shenzhen_pixels)
    for cut in (9, 30, 100, len(png) // 2, len(png) - 5):
        corpus[f"trunc{cut}.png"] = png[:cut]
    for i in range(5):
        mutated = bytearray(png)
        for offset in rng.integers(8, len(png), 16):
            mutated[offset] ^= 0xFF
        corpus[f"flip{i}.png"] = bytes(mutated)
    corpus["empty.dcm"] = b""
    corpus["random.bin"] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    corpus["text.dcm"] = "not a film, ünïcødé\n".encode() * 50
    return corpus


@pytest.fixture(scope="module")
def corpus(shared_data, shenzhen_pixels, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    paths = {}
    for name, content in build_corpus(shared_data, shenzhen_pixels).items():
        path = folder / name
        path.write_bytes(content)
        path.chmod(0o444)  # read-only: nothing may write to an input
        paths[name] = path
    return paths


@pytest.mark.slow
def test_every_corpus_input_is_a_film_or_a_one_line_error(corpus):
    outcomes: Counter = Counter()
    slowest = (0.0, "")
    for name, path in corpus.items():
        before = path.read_bytes()
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                film = medlung.load_film(path)
        except MedlungError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message, (name, message)
            outcomes[type(exc).__name__] += 1
        else:
            assert film.pixels.ndim == 2 and film.pixels.dtype == np.float32, name
            assert np.isfinite(film.pixels).all(), name
            outcomes["Film"] += 1
        seconds = time.perf_counter() - started
        slowest = max(slowest, (seconds, name))
        assert seconds < REJECT_SECONDS, (name, seconds)
        assert path.read_bytes() == before, f"{name} was modified"
    print(f"\ncorpus: {len(corpus)} inputs; outcomes {dict(outcomes)}; slowest {slowest[1]} {slowest[0]:.2f} s")
    assert sum(outcomes.values()) == len(corpus) >= 150
    assert outcomes["Film"] >= 10 and outcomes["UnreadableFileError"] >= 30


def test_declared_sizes_are_refused_before_decoding(corpus):
    for name in ("declared_20000x20000.dcm", "declared_20000x20000.png"):
        with pytest.raises(MedlungError, match="more than the limit"):
            medlung.load_film(corpus[name])
    with pytest.raises(MedlungError, match="more than the limit of 100"):
        medlung.load_film(corpus["one_pixel.png"].parent / "png16.png", max_pixels=100)


def test_dicom_with_tiff_preamble_is_read_as_dicom(corpus):
    assert medlung.load_film(corpus["tiff_preamble.dcm"]).facts["format"] == "DICOM"


@pytest.mark.slow
def test_batch_predict_over_the_corpus_keeps_its_contract(corpus, shipped_bundle, tmp_path):
    names = sorted(corpus)[::3]  # a third of the corpus through the real command line
    out = tmp_path / "out"
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "hostile_strings_lungs.png").symlink_to(tmp_path / "elsewhere" / "target.png")
    names.append("hostile_strings.dcm")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            *[corpus[n] for n in names],
            "-o",
            out,
            "--format",
            "png,nifti,seg",
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)},
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    import csv

    rows = list(csv.DictReader(open(out / "report.csv")))
    assert len(rows) == len(set(names))
    for row in rows:
        assert row["status"] in ("ok", "error")
        if row["status"] == "error":
            assert row["error"] and "\n" not in row["error"]
    written = [p for p in out.rglob("*")]
    assert not [p for p in written if p.name.endswith(".part")]
    assert all(p.resolve().parent == out.resolve() or p.is_symlink() is False for p in written)
    # the symlink planted in OUT was replaced, not followed
    assert not (tmp_path / "elsewhere" / "target.png").exists()
    assert not (out / "hostile_strings_lungs.png").is_symlink()
    report_text = (out / "report.csv").read_text() + (out / "report.json").read_text()
    assert "passwd" not in report_text and "rm -rf" not in report_text  # no patient identifiers in the report


def test_info_never_shows_a_traceback(corpus):
    names = sorted(corpus)[1::4]
    result = subprocess.run(
        [sys.executable, "-m", "medlung", "info", *[corpus[n] for n in names]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    assert "passwd" not in result.stdout + result.stderr


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.text(max_size=20),
        st.floats(allow_nan=True),
        st.lists(
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.integers(-5, 5)),
            max_size=4,
        ),
    )
)
def test_spacing_checker_never_accepts_a_non_spacing(value):
    spacing, problem = check_spacing(value)
    if spacing is None:
        assert problem
    else:
        assert len(spacing) == 2 and all(np.isfinite(v) and v > 0 for v in spacing)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=20), st.floats(), st.integers()))
def test_user_spacing_parser_returns_a_spacing_or_a_clear_error(value):
    try:
        spacing = parse_user_spacing(value)
    except MedlungError as exc:
        assert "spacing" in str(exc) and "\n" not in str(exc)
    else:
        assert all(np.isfinite(v) and v > 0 for v in spacing)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    bits=st.integers(1, 16),
    slope=st.sampled_from([1.0, 0.5, 2.0, -1.0]),
    intercept=st.integers(-1024, 1024),
    seed=st.integers(0, 1000),
)
def test_film_normaliser_properties(tmp_path_factory, rows, cols, bits, slope, intercept, seed):
    """Any valid greyscale film: shape kept, float32, finite, and MONOCHROME1 == inverted MONOCHROME2."""
    folder = tmp_path_factory.mktemp("prop")
    stored = np.random.default_rng(seed).integers(0, 2**bits, (rows, cols)).astype(np.uint16)
    attrs = {"RescaleSlope": slope, "RescaleIntercept": intercept}
    mono2 = medlung.load_film(factory.write(factory.radiograph(stored, bits_stored=bits, **attrs), folder / "a.dcm"))
    assert mono2.shape == (rows, cols) and mono2.pixels.dtype == np.float32 and np.isfinite(mono2.pixels).all()
    np.testing.assert_allclose(mono2.pixels, stored * slope + intercept, rtol=1e-6, atol=1e-3)
    inverse = (2**bits - 1 - stored).astype(np.uint16)
    mono1 = medlung.load_film(
        factory.write(
            factory.radiograph(
                inverse, photometric="MONOCHROME1", bits_stored=bits, RescaleSlope=1.0, RescaleIntercept=0
            ),
            folder / "b.dcm",
        )
    )
    np.testing.assert_array_equal(mono1.pixels, stored.astype(np.float32))
