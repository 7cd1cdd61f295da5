"""Regenerate the pictures of the documentation (docs/img/) from medlung's own outputs.

* ``overlay.png``: the overlay ``medlung predict`` writes for the sample film
  ``CR-MONO1-10-chest.dcm`` (shipped model);
* ``working_grid.png``: that film on its native grid and on the model's
  working grid, as the network sees it;
* ``areas.png``: the plot of ``docs/examples/area_report.py`` on the sample films.

Each picture is stored as a palette PNG and checked to stay under 300 KB.
Run from the repository root::

    python docs/make_figures.py [--out docs/img] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "medlung" / "samples"
FILM = SAMPLES / "CR-MONO1-10-chest.dcm"
MAX_BYTES = 300_000


def save_small(source: Path, target: Path, colours: int = 128) -> Path:
    """Copy a PNG as a palette PNG (much smaller for overlays and plots)."""
    from PIL import Image

    with Image.open(source) as image:
        small = image.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(target, optimize=True)
    size = target.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{target} is {size} bytes, over the {MAX_BYTES} allowed for a committed picture")
    print(f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target}: {size // 1024} KB")
    return target


def overlay(out: Path, work: Path, device: str) -> None:
    folder = work / "predict"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            str(FILM),
            "-o",
            str(folder),
            "--format",
            "overlay",
            "--device",
            device,
        ],
        check=True,
    )
    save_small(folder / f"{FILM.stem}_overlay.png", out / "overlay.png")


def working_grid(out: Path, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import medlung
    from medlung.networks.loading import find_default_model, load_model
    from medlung.transforms import ToWorkingGrid, film_to_metatensor, nominal_spacing

    spec = load_model(find_default_model(), "cpu")[1]
    film = medlung.load_film(FILM)
    working = ToWorkingGrid(spec.working_spacing)(film_to_metatensor(film))[0].numpy()
    native_mm = film.spacing or nominal_spacing(film.shape)
    fig, axes = plt.subplots(
        1, 2, figsize=(7.2, 3.9), dpi=100, gridspec_kw={"width_ratios": [film.cols, working.shape[1]]}
    )
    axes[0].imshow(film.pixels, cmap="gray", interpolation="nearest")
    axes[0].set_title(
        f"native grid: {film.rows}x{film.cols} px at {native_mm[0]:.2f} mm{'' if film.spacing else ' (nominal)'}",
        fontsize=9,
    )
    axes[1].imshow(working, cmap="gray", interpolation="nearest", extent=(0, film.cols, film.rows, 0))
    axes[1].set_title(
        f"working grid: {working.shape[0]}x{working.shape[1]} px at {spec.working_spacing:g} mm", fontsize=9
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("The network sees the right-hand picture; every output is on the left-hand grid", fontsize=9)
    fig.tight_layout()
    fig.savefig(work / "working_grid.png")
    plt.close(fig)
    save_small(work / "working_grid.png", out / "working_grid.png", colours=64)


def areas(out: Path, work: Path, device: str) -> None:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "docs" / "examples" / "area_report.py"),
            str(SAMPLES),
            "-o",
            str(work / "areas"),
            "--device",
            device,
        ],
        check=True,
    )
    save_small(work / "areas" / "areas.png", out / "areas.png", colours=32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="medlung-figures-"))
    try:
        overlay(args.out, work, args.device)
        working_grid(args.out, work)
        areas(args.out, work, args.device)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
