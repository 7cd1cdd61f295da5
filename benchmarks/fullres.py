"""Full-resolution prediction: medlung's working grid against the naive native-grid sliding window.

Builds a 4020x4892 (WxH) 16-bit DX DICOM at 0.0875 mm from a real Shenzhen
film (bicubic upsampling), JPEG 2000 lossless, then measures:

(a) ``medlung``: decode, working grid, network, back to the native grid and
    clean-up, and writing DICOM-SEG, PNG, NIfTI and overlay -- per stage, end
    to end, and the process's peak RSS;
(b) ``naive``: MONAI ``sliding_window_inference`` with roi 512 directly on the
    native grid with the same network (own process, own peak RSS);
(c) ``floor``: decode + writing the default outputs (SEG, PNG, NIfTI, overlay)
    from a ready mask, per film over ``--films N`` copies of the film (default 4);
(d) ``batch``: :func:`medlung.pipeline.batch.predict_files` on the same N
    films (model loaded once): what a user's batch costs per film, with the
    next film read and the last one written while one is segmented; and the
    same films one after the other (``segment_one``) for comparison;
    (c) and (d) in ``--rounds R`` rounds (default 3), rotated, medians printed.

Prints the ratios naive/medlung, medlung/floor and batch/floor (wall and CPU
seconds) and the Dice between (a) and (b), measured in this one run (the
machine is noisy: compare ratios).
Run: ``.venv/bin/python benchmarks/fullres.py [--skip-naive] [--device cpu] [--films N] [--rounds R] [--parts]
[--modes N_PNG,N_DICOM] [--modes-only]``.
Also times a batch of 512x512 PNG films (model loaded once).

``--parts`` adds where a film's floor goes, each in wall and CPU seconds
(CPU seconds stay meaningful when other work shares the machine): every
JPEG 2000 decoder installed (with a bit-exactness check against pydicom's
default), each output alone (SEG lossless and uncompressed, PNG and NIfTI at
several compression levels, overlay), and the clean-up on the native grid.
``--modes`` times ``medlung predict`` as a user runs it on N_PNG 512x512 PNGs
and N_DICOM full-resolution DICOMs: one process, ``--workers 2`` and
``--scheduler local:2`` (films/min, model loading and cluster start included).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "medlung" / "samples" / "CHNCXR_0001_0.png"


def make_film(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    from tests import dicom_factory as factory

    small = np.asarray(Image.open(SAMPLE))
    big = np.asarray(Image.fromarray(small).resize((4020, 4892), Image.BICUBIC)).astype(np.uint16) * 257
    ds = factory.radiograph(
        big, factory.DX_PRESENTATION, bits_stored=16, PixelSpacing=[0.0875, 0.0875], PatientOrientation=["L", "F"]
    )
    return factory.write(ds, folder / "film.dcm", factory.JPEG2000Lossless)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_medlung(film: Path, out: Path, device: str) -> dict:
    import numpy as np

    import medlung
    from medlung.pipeline.batch import planned_outputs, write_outputs
    from medlung.pipeline.settings import PredictSettings
    from medlung.writers.overlay import MAX_SIDE

    decode = _flag("--decode", "reduced")
    segmenter = medlung.Segmenter(device=device)
    segmenter(medlung.load_film(SAMPLE))  # warm-up, as in a batch
    options = PredictSettings(decode=decode)
    working = segmenter.spec.working_spacing

    def load(path):
        return medlung.load_film(path, decode=decode, working_spacing=working, preview_side=MAX_SIDE)

    warm = load(film)  # warm-up of the decoders and writers (imports, first calls), as in a batch
    write_outputs(warm, segmenter(warm), planned_outputs(out / f"w_{decode}", warm, options.formats), "w", options)
    stages = {}
    cpu = {}
    started = _clock()
    loaded = load(film)
    cpu["decode"] = _since(started)["cpu"]
    stages["decode"] = _since(started)["wall"]
    mark = _clock()
    masks = segmenter(loaded)
    stages.update(masks.timings)
    cpu["segment"] = _since(mark)["cpu"]
    mark = _clock()
    write_outputs(
        loaded, masks, planned_outputs(out / f"a_{decode}", loaded, options.formats), segmenter.model_version, options
    )
    stages["write"] = _since(mark)["wall"]
    cpu["write"] = _since(mark)["cpu"]
    total = _since(started)["wall"]
    cpu["total"] = _since(started)["cpu"]
    np.save(out / f"medlung_labels_{decode}.npy", masks.labels)
    one_film_rss = _peak_rss_mb()  # the model, a warm-up film and this film; the batches below hold two films

    # (c) the floor: decode + the default writes from a ready mask, film after film; (d) a batch of the same
    # films as medlung predict runs it (one worker, pipelined), and film after film (segment_one). A shared
    # machine's load changes by the minute: each round runs the three in a rotated order, and the medians count.
    from medlung.pipeline import batch as pipeline

    films = int(sys.argv[sys.argv.index("--films") + 1]) if "--films" in sys.argv else 4
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    batch_in = out / f"batch_in_{decode}"
    batch_in.mkdir()
    for index in range(films):
        os.link(film, batch_in / f"film{index}.dcm")
    inputs = sorted(batch_in.iterdir())

    def floor_run(folder: Path) -> None:
        for index in range(films):
            again = load(film)
            write_outputs(
                again,
                masks,
                planned_outputs(folder / f"floor{index}", again, options.formats),
                segmenter.model_version,
                options,
                segmenter,
            )

    overlap = []  # the films' own seconds (read + segment + write) added up, over the batch's wall seconds

    def batch_run(folder: Path) -> None:
        started = time.perf_counter()
        report = pipeline.predict_files(inputs, folder, segmenter, options)
        overlap.append(sum(row["seconds"] for row in report.rows) / (time.perf_counter() - started))
        assert all(row["status"] == "ok" for row in report.rows), report.rows

    def sequential_run(folder: Path) -> None:
        for path in inputs:
            assert pipeline.segment_one(path, folder / path.stem, segmenter, options)["status"] == "ok"

    runs = {"floor": floor_run, "batch": batch_run, "sequential": sequential_run}
    measured: dict = {name: [] for name in runs}
    for number in range(rounds):
        names = list(runs)[number % 3 :] + list(runs)[: number % 3]
        for name in names:
            folder = out / f"{name}{number}"
            folder.mkdir()
            start = _clock()
            runs[name](folder)
            measured[name].append({k: v / films for k, v in _since(start).items()})
            shutil.rmtree(folder)

    # 512x512 PNG films in a batch
    paths = sorted((REPO.parent / "shared" / "data" / "shenzhen" / "images").glob("*.png"))[:20] or [SAMPLE] * 20
    started = time.perf_counter()
    for _, result in segmenter.segment_files(paths):
        assert not isinstance(result, Exception), result
    png_each = (time.perf_counter() - started) / len(paths)
    return {
        "decode": decode,
        "stages": stages,
        "cpu": cpu,
        "total": total,
        "rounds": measured,
        "overlap": overlap,
        "films": films,
        "png_each": png_each,
        "peak_rss_mb": _peak_rss_mb(),
        "one_film_rss_mb": one_film_rss,
        "total_cm2": masks.areas_cm2["total"],
    }


def _flag(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start) -> dict:
    return {"wall": time.perf_counter() - start[0], "cpu": time.process_time() - start[1]}


def child_parts(film: Path, out: Path, device: str) -> dict:
    """Decoders, each output alone, compression levels and the clean-up, on the full-resolution film."""
    import gzip
    import io
    import warnings

    import numpy as np
    import pydicom
    from PIL import Image

    import medlung
    from medlung.inference.native_grid import upsample_margin
    from medlung.inference.postprocess import clean_and_split
    from medlung.io import j2k
    from medlung.writers.dicom_seg import write_dicom_seg
    from medlung.writers.masks import write_labels_nifti, write_lungs_png
    from medlung.writers.overlay import write_overlay

    warnings.simplefilter("ignore")
    parts: dict = {"decode": {}, "write": {}}
    reference = pydicom.pixels.pixel_array(film, decoding_plugin="pylibjpeg")
    j2k.register()
    decoders = [("pylibjpeg-openjpeg (pydicom default)", "pylibjpeg", None)]
    decoders += [(f"imagecodecs {n} thread{'s' if n > 1 else ''}", j2k.PLUGIN, str(n)) for n in (1, 2)]
    decoders += [("python-gdcm", "gdcm", None)]  # Pillow (also exact) was 1.5x slower than the default
    for name, plugin, threads in decoders:
        if threads:
            os.environ["MEDLUNG_DECODE_THREADS"] = threads
        try:
            start = _clock()
            pixels = pydicom.pixels.pixel_array(film, decoding_plugin=plugin)
            parts["decode"][name] = {**_since(start), "exact": bool(np.array_equal(pixels, reference))}
        except Exception as exc:  # not installed here
            parts["decode"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:80]}"}
    os.environ.pop("MEDLUNG_DECODE_THREADS", None)
    start = _clock()
    loaded = medlung.load_film(film)
    parts["load_film (default decoder)"] = _since(start)

    segmenter = medlung.Segmenter(device=device)
    masks = segmenter(loaded)
    labels = masks.labels
    targets = {
        "seg lossless": lambda p: write_dicom_seg(
            loaded, labels, p, model_version="bench", options={}, transfer_syntax="lossless"
        ),
        "seg uncompressed": lambda p: write_dicom_seg(
            loaded, labels, p, model_version="bench", options={}, transfer_syntax="uncompressed"
        ),
        "png (medlung)": lambda p: write_lungs_png(p, labels, loaded.spacing),
        "nifti (medlung)": lambda p: write_labels_nifti(p, labels, loaded.spacing),
        "overlay (medlung)": lambda p: write_overlay(p, loaded.pixels, labels, ["right lung 1 cm2"]),
    }
    for index, (name, write) in enumerate(targets.items()):
        write(out / f"warm{index}_{name.split()[0]}")  # a batch pays imports and first-call costs once
        path = out / f"part{index}_{name.split()[0]}"
        start = _clock()
        write(path)
        parts["write"][name] = {**_since(start), "kB": path.stat().st_size / 1000}
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    for level in (1, 6, 9):
        buffer = io.BytesIO()
        start = _clock()
        Image.fromarray(mask).save(buffer, format="PNG", compress_level=level)
        parts["write"][f"png level {level}"] = {**_since(start), "kB": len(buffer.getvalue()) / 1000}
    import nibabel

    raw = nibabel.Nifti1Image(labels[:, :, None], np.eye(4)).to_bytes()
    for level in (1, 6, 9):
        start = _clock()
        data = gzip.compress(raw, compresslevel=level, mtime=0)
        parts["write"][f"nifti gzip {level}"] = {**_since(start), "kB": len(data) / 1000}
    # the clean-up as the Segmenter runs it: on the raw mask (the lung margin resized to the native grid, > 0)
    working = segmenter.working_image(loaded)
    raw_mask = upsample_margin(segmenter.lung_margin(working.as_tensor()), working.meta["native_shape"]) > 0
    start = _clock()
    clean_and_split(raw_mask, float(np.prod(working.meta["native_spacing"])), working.meta["orientation"])
    parts["cleanup native grid"] = _since(start)
    parts["segmenter stages"] = masks.timings
    return parts


def modes(folder: Path, counts: tuple[int, int], film: Path) -> list[tuple[str, str, int, float, float]]:
    """``medlung predict`` as run by a user, in each mode: (inputs, mode, films, wall s, CPU s of the run)."""
    shenzhen = sorted((REPO.parent / "shared" / "data" / "shenzhen" / "images").glob("*.png"))
    inputs = {"512x512 PNG": folder / "modes_png", "4020x4892 J2K DICOM": folder / "modes_dicom"}
    inputs["512x512 PNG"].mkdir()
    inputs["4020x4892 J2K DICOM"].mkdir()
    for path in (shenzhen or [SAMPLE])[: counts[0]]:
        shutil.copy(path, inputs["512x512 PNG"])
    for index in range(counts[1]):
        shutil.copy(film, inputs["4020x4892 J2K DICOM"] / f"film{index}.dcm")
    results = []
    for kind, source in inputs.items():
        count = len(list(source.iterdir()))
        if not count:
            continue
        for mode, extra in (
            ("1 process", []),
            ("--workers 2", ["--workers", "2"]),
            ("--scheduler local:2", ["--scheduler", "local:2"]),
        ):
            out = folder / f"out_{source.name}_{len(results)}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            run = subprocess.run(
                [sys.executable, "-m", "medlung", "predict", str(source), "-o", str(out), "--device", "cpu", *extra],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if run.returncode:
                sys.exit(f"{kind} {mode} failed:\n{run.stderr[-3000:]}")
            results.append((kind, mode, count, wall, cpu))
    return results


def child_naive(film: Path, out: Path, device: str) -> dict:
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import ScaleIntensityRangePercentiles

    import medlung
    from medlung.networks.loading import load_model
    from medlung.networks.running import autocast, resolve_device, resolve_precision

    device = resolve_device(device)
    model, spec = load_model(None, device)
    started = time.perf_counter()
    image = torch.from_numpy(medlung.load_film(film).pixels)[None]
    scaled = torch.as_tensor(ScaleIntensityRangePercentiles(*spec.intensity_percentiles, 0.0, 1.0, clip=True)(image))
    with torch.no_grad(), autocast(device, resolve_precision("auto", device)):
        logits = sliding_window_inference(
            scaled[None].to(device), (512, 512), 4, model, overlap=0.25, mode="gaussian", sw_device=device, device="cpu"
        )
    labels = (logits[0, 1] > logits[0, 0]).numpy()
    seconds = time.perf_counter() - started
    np.save(out / "naive_labels.npy", labels)
    return {"total": seconds, "peak_rss_mb": _peak_rss_mb()}


def main() -> None:
    import numpy as np

    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        film = make_film(folder)
        results = {}
        kinds = ("medlung", "medlung-full") + (() if "--skip-naive" in sys.argv else ("naive",))
        kinds += ("parts",) if "--parts" in sys.argv else ()
        kinds = () if "--modes-only" in sys.argv else kinds
        for kind in kinds:
            passed = [
                a
                for flag in ("--films", "--rounds")
                if flag in sys.argv
                for a in (flag, sys.argv[sys.argv.index(flag) + 1])
            ]
            if kind == "medlung-full":
                passed += ["--decode", "full"]
            run = subprocess.run(
                [sys.executable, __file__, "--child", kind.split("-")[0], str(film), str(folder), device, *passed],
                capture_output=True,
                text=True,
            )
            if run.returncode:
                sys.exit(f"{kind} failed:\n{run.stderr[-3000:]}")
            results[kind] = json.loads(run.stdout.strip().splitlines()[-1])
        m = results.get("medlung")
        if m:
            print_medlung(m, device)
        if "medlung-full" in results:
            print("--decode full (every native pixel decoded first: the path before #30), same run:")
            print_medlung(results["medlung-full"], device)
            print_versus(m, results["medlung-full"], folder)
        if "naive" in results:
            n = results["naive"]
            a = np.load(folder / "medlung_labels_reduced.npy") > 0
            b = np.load(folder / "naive_labels.npy")
            dice = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
            print(
                f"(b) naive sliding window roi 512 on the native grid: {n['total']:.1f} s; "
                f"peak RSS {n['peak_rss_mb']:.0f} MB"
            )
            print(f"    ratio naive / medlung: {n['total'] / m['total']:.1f}x; Dice(medlung, naive) = {dice:.4f}")
        if "parts" in results:
            print_parts(results["parts"], m)
        if "--modes" in sys.argv:
            counts = tuple(int(v) for v in sys.argv[sys.argv.index("--modes") + 1].split(","))
            print("medlung predict as a user runs it (model loading and cluster start included):")
            rows = modes(folder, counts, film)
            for kind, mode, count, wall, cpu in rows:
                print(
                    f"  {kind:20s} {mode:22s} {count:3d} films  {wall:7.1f} s  {60 * count / wall:6.1f} films/min"
                    f"  (CPU {cpu:6.1f} s, {cpu / count:5.2f} CPU s/film)"
                )
            for kind in dict.fromkeys(r[0] for r in rows):
                base = next(r[3] for r in rows if r[0] == kind)
                print(
                    f"  {kind}: speed-up over 1 process: "
                    + ", ".join(f"{mode} {base / wall:.2f}x" for k, mode, _, wall, _ in rows if k == kind)
                )


def print_medlung(m: dict, device: str) -> None:
    """The end-to-end and floor lines of (a) and (c)."""
    print("film: 4020x4892 (WxH), 16-bit DX, JPEG 2000 lossless, 0.0875 mm; device:", device)
    print(
        f"(a) medlung end to end (--decode {m.get('decode', 'reduced')}): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in m["stages"].items())
        + f" = {m['total']:.2f} s wall; CPU: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in m.get("cpu", {}).items())
        + f"; peak RSS after this film {m.get('one_film_rss_mb', 0):.0f} MB (over the whole run, batches "
        f"included: {m['peak_rss_mb']:.0f} MB); lungs {m['total_cm2']:.1f} cm2"
    )
    import statistics

    rounds = m["rounds"]
    median = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu")} for name, runs in rounds.items()
    }
    floor, batch, one = median["floor"], median["batch"], median["sequential"]
    count = len(rounds["floor"])
    print(f"per film, medians of {count} rounds of {m['films']} films each (the three in a rotated order per round):")
    print(
        f"(c) floor (decode + the default writes from a ready mask): {floor['wall']:.2f} s wall, "
        f"{floor['cpu']:.2f} s CPU"
    )
    print(
        f"(d) batch (predict_files, one worker, pipelined):         {batch['wall']:.2f} s wall, {batch['cpu']:.2f} s CPU"
    )
    print(f"    the same films one after the other (segment_one):     {one['wall']:.2f} s wall, {one['cpu']:.2f} s CPU")
    per_floor = ", ".join(f"{b['wall'] / f['wall']:.2f}" for b, f in zip(rounds["batch"], rounds["floor"]))
    per_one = ", ".join(f"{b['wall'] / o['wall']:.2f}" for b, o in zip(rounds["batch"], rounds["sequential"]))
    print(
        f"    ratio batch / floor: {batch['wall'] / floor['wall']:.2f} wall, {batch['cpu'] / floor['cpu']:.2f} CPU "
        f"(per round, wall: {per_floor})"
    )
    print(
        f"    ratio one after the other / floor: {one['wall'] / floor['wall']:.2f} wall; pipelined / one after the "
        f"other: {batch['wall'] / one['wall']:.2f} wall (per round: {per_one})"
    )
    print(
        "    overlap in the batch (the films' read + segment + write seconds added up / the batch's wall "
        f"seconds; 1.00 = one step at a time): {', '.join(f'{v:.2f}' for v in m['overlap'])}"
    )
    print(f"    ratio medlung (one film, warm) / floor: {m['total'] / floor['wall']:.2f}")
    print(f"512x512 PNG films in a batch: {m['png_each']:.3f} s per film")


def print_versus(reduced: dict, full: dict, folder: Path) -> None:
    """The ratios of #30: --decode full over the default, and the Dice of their masks."""
    import statistics

    import numpy as np

    def median(result, name, key):
        return statistics.median(r[key] for r in result["rounds"][name])

    a = np.load(folder / "medlung_labels_reduced.npy") > 0
    b = np.load(folder / "medlung_labels_full.npy") > 0
    dice = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
    print("ratios --decode full / default (reduced), same run:")
    for name in ("batch", "floor", "sequential"):
        print(
            f"  {name:10s} wall {median(full, name, 'wall') / median(reduced, name, 'wall'):.2f}x, "
            f"CPU {median(full, name, 'cpu') / median(reduced, name, 'cpu'):.2f}x"
        )
    print(
        f"  one film: decode {full['stages']['decode'] / reduced['stages']['decode']:.1f}x, "
        f"end to end {full['total'] / reduced['total']:.2f}x; CPU end to end "
        f"{full['cpu']['total'] / reduced['cpu']['total']:.2f}x"
    )
    print(
        f"  peak RSS, one film: {reduced['one_film_rss_mb']:.0f} MB (default) vs {full['one_film_rss_mb']:.0f} MB "
        f"(full); whole run: {reduced['peak_rss_mb']:.0f} vs {full['peak_rss_mb']:.0f} MB"
    )
    print(f"  Dice(default, --decode full) = {dice:.5f}")


def print_parts(parts: dict, m: dict) -> None:
    """Where the floor of a film goes (wall and CPU seconds)."""

    def fmt(v):
        return f"{v['wall']:6.2f} s wall {v['cpu']:6.2f} s CPU"

    print("decode 4020x4892 JPEG 2000 lossless (bit-exact = same pixels as pydicom's default):")
    for name, v in parts["decode"].items():
        print(f"  {name:38s} " + (v["error"] if "error" in v else f"{fmt(v)}  bit-exact {v['exact']}"))
    print(f"  {'load_film (default decoder)':38s} {fmt(parts['load_film (default decoder)'])}")
    print("each output alone (4020x4892 labels):")
    for name, v in parts["write"].items():
        print(f"  {name:38s} {fmt(v)}  {v['kB']:8.0f} kB")
    print(f"clean-up + right/left on the native grid: {fmt(parts['cleanup native grid'])}")
    decode = parts["load_film (default decoder)"]["wall"]
    default = ("seg uncompressed", "png (medlung)", "nifti (medlung)", "overlay (medlung)")
    writes = sum(parts["write"][k]["wall"] for k in default)
    writes_cpu = sum(parts["write"][k]["cpu"] for k in default)
    print(
        f"the four default outputs one after the other: {writes:.2f} s wall, {writes_cpu:.2f} s CPU; with the "
        f"decode: {decode + writes:.2f} s wall, {parts['load_film (default decoder)']['cpu'] + writes_cpu:.2f} s CPU"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, film, out, device = sys.argv[2:6]
        function = {"medlung": child_medlung, "naive": child_naive, "parts": child_parts}[kind]
        print(json.dumps(function(Path(film), Path(out), device)))
    else:
        main()
