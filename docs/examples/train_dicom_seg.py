"""Train on your own DICOM folder: films plus the DICOM-SEGs that reference them.

The usual loop in a hospital: ``medlung predict`` writes a SEG for each film,
a radiologist corrects the SEGs in a viewer (3D Slicer, OHIF, ...), and the
folder of films and corrected SEGs becomes training data. ``medlung train``
takes such a folder as DATA directly: it pairs every film (CR, DX or Secondary
Capture) with the SEG whose Referenced SOP Instance UID is the film's SOP
Instance UID, searching sub-folders too.

This script builds such a folder from Shenzhen films and their lung masks
(standing in for corrected SEGs), then trains briefly on it:

1. each PNG film is wrapped in a minimal DICOM (Secondary Capture, MONOCHROME2,
   a Study/Series/SOP Instance UID, PatientOrientation ``L\\F``);
2. its right and left lung masks become a label map (1 patient right lung,
   2 patient left lung) written with :func:`medlung.write_dicom_seg`;
3. ``medlung train DICOM_FOLDER -o RUN`` runs with the settings given.

Run (short version, about a minute on a laptop CPU)::

    python docs/examples/train_dicom_seg.py SHENZHEN_DIR -o OUT --films 4 --epochs 1

SHENZHEN_DIR holds ``images/CHNCXR_*.png`` and ``masks/CHNCXR_*_lung_R.png`` /
``_lung_L.png`` (``../shared/data/shenzhen`` in the repository's layout).
Writes ``OUT/dicom/`` (films and SEGs) and ``OUT/run/`` (the training run:
config.json, split.json, metrics.csv, best.pt, last.pt, curves.png,
samples.png, summary.json). Use the run with ``medlung predict --bundle
OUT/run`` or turn it into a bundle with ``medlung export OUT/run -o BUNDLE``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import medlung

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def png_to_dicom(png: Path, path: Path, patient_id: str) -> Path:
    """Wrap an 8-bit greyscale PNG film in a minimal single-frame Secondary Capture DICOM."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName = patient_id, f"Example^{patient_id}"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.PatientOrientation = ["L", "F"]  # PA: rows run to the patient's left, columns to the feet
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def label_map(masks: Path, stem: str) -> np.ndarray:
    """Shenzhen per-lung masks -> 0 background, 1 patient right lung, 2 patient left lung."""
    right = np.asarray(Image.open(masks / f"{stem}_lung_R.png")) > 0
    left = np.asarray(Image.open(masks / f"{stem}_lung_L.png")) > 0
    labels = np.zeros(right.shape, dtype=np.uint8)
    labels[right] = 1
    labels[left] = 2
    return labels


def build_dicom_folder(shenzhen: Path, folder: Path, films: int) -> list[Path]:
    """Films and their SEGs, one sub-folder per patient as a PACS export would give."""
    pngs = sorted((shenzhen / "images").glob("CHNCXR_*.png"))[:films]
    if len(pngs) < films:
        raise SystemExit(f"{shenzhen}/images holds {len(pngs)} films, {films} asked for")
    written = []
    for number, png in enumerate(pngs, start=1):
        patient = folder / f"patient{number:03d}"
        patient.mkdir(parents=True, exist_ok=True)
        film_path = png_to_dicom(png, patient / f"{png.stem}.dcm", f"EX{number:03d}")
        film = medlung.load_film(film_path)
        seg = medlung.write_dicom_seg(
            film,
            label_map(shenzhen / "masks", png.stem),
            patient / f"{png.stem}_seg.dcm",
            model_version="corrected-by-hand",
            overwrite=True,
        )
        written += [film_path, seg]
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shenzhen", type=Path, help="folder with images/ and masks/ (Shenzhen layout)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--films", type=int, default=4, help="films to put in the DICOM folder")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--roi-size", type=int, default=64, help="training crop on the working grid, pixels")
    parser.add_argument("--features", default="4,4,8,8,16,4", help="six channel widths (tiny for a quick run)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    dicom = args.output / "dicom"
    files = build_dicom_folder(args.shenzhen, dicom, args.films)
    print(f"{len(files) // 2} films and {len(files) // 2} SEGs in {dicom}")
    command = [
        sys.executable,
        "-m",
        "medlung",
        "train",
        str(dicom),
        "-o",
        str(args.output / "run"),
        "--overwrite",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--roi-size",
        str(args.roi_size),
        "--features",
        args.features,
        "--device",
        args.device,
        "--precision",
        "fp32",
    ]
    print("$ medlung " + " ".join(command[3:]))
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
