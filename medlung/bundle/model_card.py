"""The bundle's ``docs/README.md`` (model card) and ``LICENSE``, filled from the training run.

The card holds what the run knows (data, settings, validation and test Dice
on the working grid); its model and inputs/outputs sections are generated
from the plan and the metadata by :mod:`medlung.bundle.model_description`. The full evaluation (native grid, HD95, other
hospitals' films) is left in a marked section between
:data:`EVALUATION_BEGIN` and :data:`EVALUATION_END` for a later step to fill.
"""

from __future__ import annotations

from pathlib import Path

from medlung.bundle.configs import KEY_DOCS
from medlung.bundle.model_description import generated_sections
from medlung.bundle.schema import schema_md5

EVALUATION_BEGIN = "<!-- medlung:evaluation:begin -->"
EVALUATION_END = "<!-- medlung:evaluation:end -->"

REFERENCES = (
    "Jaeger S, Candemir S, Antani S, Wang YX, Lu PX, Thoma G. Two public chest X-ray datasets for computer-aided "
    "screening of pulmonary diseases. Quant Imaging Med Surg 2014;4(6):475-477.",
    "Jaeger S, Karargyris A, Candemir S, et al. Automatic tuberculosis screening using chest radiographs. "
    "IEEE Trans Med Imaging 2014;33(2):233-245.",
    "Stirenko S, Kochura Y, Alienin O, et al. Chest X-Ray Analysis of Tuberculosis by Deep Learning with "
    "Segmentation and Augmentation. arXiv:1803.01199, 2018 (source of the lung masks).",
    "Falk T, Mai D, Bensch R, et al. U-Net: deep learning for cell counting, detection, and morphometry. "
    "Nat Methods 2019;16:67-70 (the BasicUNet design).",
    "Cardoso MJ, Li W, Brown R, et al. MONAI: An open-source framework for deep learning in healthcare. "
    "arXiv:2211.02701, 2022.",
)

MASK_ATTRIBUTION = (
    'Lung masks: "Lung Masks for Shenzhen Hospital Chest X-ray Set" (Kaggle yoctoman/shcxr-lung-mask), '
    "made for Stirenko S et al., arXiv:1803.01199 (2018), licensed CC BY-NC-SA 4.0; used here "
    "thresholded at 128 (an adaptation under the same licence)."
)
IMAGE_ATTRIBUTION = (
    "Images: Shenzhen Hospital X-ray Set, U.S. National Library of Medicine with Shenzhen No.3 "
    "People's Hospital and Guangdong Medical College, released by NLM for research (Jaeger S et al., "
    "Quant Imaging Med Surg 2014;4(6):475-477)."
)

COVID_V7_ATTRIBUTION = (
    "Images and masks: COVID-19 image data collection (Cohen JP et al., arXiv:2006.11988), films "
    "under their own CC BY or CC BY-NC-SA licences (listed per film, with their source "
    "publication, in the data's splits.csv); whole-lung masks by V7 Labs, CC BY 4.0."
)
MONTGOMERY_ATTRIBUTION = (
    "Images and lung-field masks: Montgomery County X-ray Set (Department of Health and Human Services, "
    "Montgomery County, Maryland, USA), released by the U.S. National Library of Medicine for research "
    "(Jaeger S et al., Quant Imaging Med Surg 2014;4(6):475-477); half of the set (69 films) is used here."
)
#: Training sources medlung recognises, with the attribution lines their weights carry.
KNOWN_SOURCES = {
    "shenzhen": (IMAGE_ATTRIBUTION, MASK_ATTRIBUTION),
    "montgomery": (MONTGOMERY_ATTRIBUTION,),
    "covid_v7": (COVID_V7_ATTRIBUTION,),
}
#: How the card names them.
SOURCE_NAMES = {"shenzhen": "Shenzhen", "montgomery": "Montgomery County", "covid_v7": "covid_v7 (COVID-19)"}

UNKNOWN_PROVENANCE = (
    "The provenance and licence of this run's training data were not recorded by medlung: "
    "state where the films and masks come from, and their licence, before sharing these weights."
)


def licence_text(meta: dict) -> str:
    """``LICENSE``: CC BY-NC-SA 4.0 notice for weights trained on Shenzhen, else a notice to complete."""
    if "CC-BY-NC-SA-4.0" not in meta.get("license", ""):
        return f"""\
medlung chest radiograph lung segmentation model, version {meta["version"]}
==========================================================================

The trained weights in models/ (model.pt, model.ts) were trained on:
{_wrap(meta.get("data_source", "?"))}

{_wrap(UNKNOWN_PROVENANCE)}

The medlung software and the configuration files in configs/ are licensed
under the Apache License 2.0. The model is provided "as is", without
warranty of any kind; it is not a medical device.
"""
    return f"""\
medlung chest radiograph lung segmentation model, version {meta["version"]}
==========================================================================

The trained weights in models/ (model.pt, model.ts) are licensed under the
Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International
licence (CC BY-NC-SA 4.0): https://creativecommons.org/licenses/by-nc-sa/4.0/

They were trained on material under that licence, so they are shared under
the same terms:

  * Attribution: credit the authors below and indicate changes.
  * NonCommercial: no commercial use.
  * ShareAlike: models derived from these weights (fine-tuned, distilled,
    converted) are shared under CC BY-NC-SA 4.0 too.

Attribution
-----------
{chr(10).join(_wrap(line) + chr(10) for line in attributions(meta.get("training", {}).get("sources", ["shenzhen"])))}
Weights: trained and released by the medlung contributors.

Code
----
The medlung software (the package that builds, trains and runs this model,
and the configuration files in configs/) is licensed under the Apache
License 2.0. MONAI is licensed under the Apache License 2.0.

No warranty
-----------
The model is provided "as is", without warranty of any kind. It is a
research tool, not a medical device: it is not intended for diagnosis,
treatment or any clinical decision.
"""


def readme(record, meta: dict, ts_difference: float) -> str:
    """The model card, Markdown."""
    s = record.settings
    plan = record.plan
    c = record.config
    data = c.get("data_summary") or {}
    versions = c.get("versions") or {}
    name = "medlung_cxr_lung"
    best_epoch = record.best.get("epoch", record.epoch)
    val = record.best.get("val_dice")
    test = (record.summary or {}).get("test") if record.summary else None
    lines: list[str] = []
    add = lines.append

    add(f"# {name}: lung segmentation on chest radiographs (version {meta['version']})")
    add("")
    add(
        "> **Research use only.** Not a medical device: not for diagnosis, treatment or any clinical decision. "
        "Weights licensed CC BY-NC-SA 4.0 (non-commercial, share-alike); see [LICENSE](../LICENSE)."
    )
    if record.provisional:
        add(">")
        add(
            f"> **Provisional export:** training was still running when this bundle was exported "
            f"({record.epochs_done} of {record.planned_epochs} epochs done; weights from epoch {best_epoch}). "
            "Test metrics are not available yet; re-export when training has finished."
        )
    add("")
    sections = generated_sections(plan, meta)
    add(sections["model"])
    add("")
    add("## Intended use and limitations")
    add("")
    add("* Research on adult frontal (PA/AP) chest radiographs, CR or DX, DICOM or PNG.")
    trained = [SOURCE_NAMES[n] for n in KNOWN_SOURCES if n in training_sources(record)] or ["its training data"]
    add(
        "* Not validated for lateral views, children, or films from hospitals other than those it was trained on "
        f"({', '.join(trained)}; see the evaluation section)."
    )
    add(
        "* The training films were resized upstream to 512x512 without keeping the aspect ratio and without "
        "a known pixel spacing; the working grid treats them with medlung's nominal rule."
    )
    if "anatomical" in plan.conventions:
        add(
            "* Two lung conventions, one output each: `field` (the default: the radiographic lung field, bounded by "
            "the heart and mediastinum) and `anatomical` (the whole lung, behind the heart too); choose with "
            "`--lungs` / `Segmenter(lungs=...)`. Opacified lung is lung in both; a field lies inside the "
            "anatomical lung of the same film."
        )
    else:
        add(
            "* The left lung follows the heart's edge, as most training masks draw it: the part of the left lower "
            "lobe behind the heart is left out of the mask and of the left lung's area. A few annotation batches "
            "of the training masks include it (see the evaluation section)."
        )
    add("* Dice on the working grid (below) is measured before clean-up and before the native-grid resize.")
    add("")
    add("## Training data")
    add("")
    if trained_on_shenzhen(record):
        for line in attributions(training_sources(record)):
            add(f"* {line}")
    else:
        add(f"* {UNKNOWN_PROVENANCE}")
    if data:
        add(
            f"* This version: {data.get('source', '?')}: **{data.get('training', '?')} training, "
            f"{data.get('validation', '?')} validation, {data.get('test', '?')} test** films; "
            f"{data.get('problems', 0)} left out as unusable."
        )
    add("")
    add("## Training settings")
    add("")
    add("| setting | value |")
    add("|---|---|")
    rows = [
        ("network", f"`{plan.network}` features `{','.join(str(f) for f in plan.features)}`"),
        ("working spacing", f"{plan.working_spacing:g} mm"),
        ("crop / sliding window", f"{plan.roi_size}x{plan.roi_size} px"),
        ("epochs", f"{record.epochs_done} trained of {record.planned_epochs} planned; best at epoch {best_epoch}"),
        ("batch size", s.get("batch_size")),
        ("optimiser", f"AdamW, peak lr {s.get('lr')}, weight decay {s.get('weight_decay')}, one-cycle schedule"),
        ("loss", _loss_text(s)),
        ("augmentation", _augmentation_text(s)),
        ("sampling", _sampling_text(s)),
        ("seed", s.get("seed")),
        ("device / precision", f"{c.get('device_used', '?')} / {c.get('precision_used', '?')}"),
        (
            "software",
            f"medlung {record.medlung_version}, MONAI {versions.get('monai', '?')}, "
            f"PyTorch {versions.get('torch', '?')}, NumPy {versions.get('numpy', '?')}",
        ),
    ]
    if record.summary and record.summary.get("seconds"):
        rows.append(
            (
                "training time",
                f"{training_time(record.summary['seconds'])} ({record.summary.get('images_per_s', 0):.1f} crops/s)",
            )
        )
    for key, value in rows:
        add(f"| {key} | {value} |")
    add("")
    add(
        "To train this model again from the same data and settings (the split is fixed by the CSV; the seed fixes "
        "initialisation, augmentation and batch order; numbers may differ in the last digits on other hardware):"
    )
    add("")
    add("```bash")
    add(retrain_command(s))
    add(f"medlung export RUN -o bundles/{name} --version X.Y.Z")
    add("```")
    add("")
    add("## Results from training (working grid)")
    add("")
    add(
        "Mean per-film Dice and IoU of the lung mask on the working grid, as measured by `medlung train` "
        "(argmax of the logits for a softmax model, each convention's logit > 0 for a per-convention model; "
        "no clean-up):"
    )
    add("")
    add("| split | films | Dice | IoU |")
    add("|---|---|---|---|")
    val_iou = next((h.get("val_iou") for h in record.history if h.get("epoch") == best_epoch), None)
    add(f"| validation (best epoch {best_epoch}) | {data.get('validation', '?')} | {_num(val)} | {_num(val_iou)} |")
    if isinstance(test, dict):
        add(f"| test | {data.get('test', '?')} | {_num(test.get('dice'))} | {_num(test.get('iou'))} |")
    else:
        add(f"| test | {data.get('test', '?')} | not measured yet | not measured yet |")
    add("")
    add(f"TorchScript check at export: largest |eager - TorchScript| logit difference {ts_difference:.2g}.")
    add("")
    add("## Full evaluation")
    add("")
    add(EVALUATION_BEGIN)
    add(
        "_To be filled by the evaluation step (`medlung evaluate`): native-grid Dice, IoU, HD95 and mean surface "
        "distance in mm on the fixed Shenzhen test split, results on other hospitals' films, and failure cases. "
        "Until then, use the training results above._"
    )
    add("")
    add("### Shenzhen test split (native grid)")
    add("")
    add("_Not filled yet._")
    add("")
    add("### Other hospitals' films")
    add("")
    add("_Not filled yet._")
    add("")
    add("### Failure cases")
    add("")
    add("_Not filled yet._")
    add(EVALUATION_END)
    add("")
    lines.extend(_usage(name))
    add("")
    add(sections["inputs-outputs"])
    add("")
    add("## Licence")
    add("")
    add("Weights: CC BY-NC-SA 4.0, see [LICENSE](../LICENSE). medlung and these configs: Apache-2.0.")
    add("")
    add("## References")
    add("")
    for ref in meta["references"]:
        add(f"* {ref}")
    add("")
    add("## Changelog")
    add("")
    for version, text in meta["changelog"].items():
        add(f"* **{version}**: {text}")
    add("")
    return "\n".join(lines)


def _loss_text(settings: dict) -> str:
    if settings.get("head", "softmax") == "softmax":
        return "Dice + cross-entropy (MONAI DiceCELoss)"
    text = "partial-label binary cross-entropy + soft Dice per convention (medlung.training.losses)"
    weight = float(settings.get("consistency_weight") or 0)
    text += f", field-inside-anatomical consistency term x{weight:g}" if weight else ""
    return text + (
        ", deep supervision (mean over the four nested UNet++ outputs)" if settings.get("deep_supervision") else ""
    )


def _augmentation_text(settings: dict) -> str:
    names = settings.get("augmentations")
    if names is None:
        return (
            "rotation ±10°, zoom ±15 % per axis, shift ±8 %, gamma, intensity scale/shift, noise, blur"
            + ("" if settings.get("head", "softmax") == "softmax" else ", sick film (opacities, lines, leads, text)")
            + "; no left-right flip"
        )
    return ", ".join(f"`{n}`" for n in names) + " (medlung.plans.AUGMENTATIONS); no left-right flip"


def _sampling_text(settings: dict) -> str:
    shares = settings.get("sampling") or {}
    if not shares:
        return "every training film once per epoch, shuffled"
    total = sum(float(v) for v in shares.values())
    per_epoch = settings.get("samples_per_epoch")
    return (
        ", ".join(f"{g} {float(v) / total:.0%}" for g, v in shares.items())
        + " of each epoch's crops"
        + (f" ({int(per_epoch)} per epoch)" if per_epoch else " (as many as training films)")
    )


def retrain_command(settings: dict) -> str:
    """The ``medlung train`` command line that repeats a run with every recorded option.

    Paths are shown relative to the folder export runs from when they lie
    under it, else absolute (runs made before medlung recorded absolute paths
    were given relative to the folder they were started from).
    """
    import shlex

    features = ",".join(str(int(f)) for f in settings["features"])
    data = settings.get("data")
    data = shlex.quote(_shown_path(data)) if data else "DATA"
    words = [
        f"medlung train {data} -o RUN --network {settings['network']}",
        f"--features {features} --spacing {float(settings['working_spacing']):g}",
        f"--roi-size {int(settings['roi_size'])} --epochs {int(settings['epochs'])}",
        f"--batch-size {int(settings['batch_size'])} --lr {float(settings['lr']):g}",
        f"--seed {int(settings['seed'])}",
    ]
    if settings.get("val_fraction") is not None:
        words.append(f"--val-fraction {float(settings['val_fraction']):g}")
    if settings.get("limit"):
        words.append(f"--limit {int(settings['limit'])}")
    if settings.get("strict"):
        words.append("--strict")
    if settings.get("init"):
        words.append(f"--init {shlex.quote(_shown_path(settings['init']))}")
    if settings.get("sick_film_prob") is not None and float(settings["sick_film_prob"]) != 0.5:
        words.append(f"--sick-film-prob {float(settings['sick_film_prob']):g}")
    if settings.get("augmentations") is not None:
        words.append(f"--augmentations {','.join(settings['augmentations']) or 'none'}")
    if settings.get("sampling"):
        words.append("--sampling " + ",".join(f"{g}={float(v):g}" for g, v in settings["sampling"].items()))
    if settings.get("samples_per_epoch"):
        words.append(f"--samples-per-epoch {int(settings['samples_per_epoch'])}")
    if settings.get("pseudo_weight") is not None and float(settings["pseudo_weight"]) != 0.5:
        words.append(f"--pseudo-weight {float(settings['pseudo_weight']):g}")
    if settings.get("consistency_weight"):
        words.append(f"--consistency-weight {float(settings['consistency_weight']):g}")
    if settings.get("deep_supervision"):
        words.append("--deep-supervision")
    return " ".join(words)


def _shown_path(path) -> str:
    """A recorded path as the retrain command shows it: relative to the folder export runs from when it lies
    under it (the repository root, for the shipped model), else absolute."""
    absolute = Path(path).absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def training_time(seconds: float) -> str:
    """A run's duration for people: ``21 s`` under two minutes, ``90 min`` under ten hours, else hours."""
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 36000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def training_sources(record) -> set:
    """The known data sets the run's training films come from (:data:`KNOWN_SOURCES`), from its ``split.json``.

    A film's source is its datalist ``source`` when that names a known one; else a Shenzhen film is
    known by its name (``CHNCXR_*``), a Montgomery film by its name (``MCUCXR_*``) and a covid_v7 film
    by its folder (``.../covid_v7/...``); any other film adds ``"other"``.
    """
    import json

    split = Path(record.run_dir) / "split.json"
    try:
        training = json.loads(split.read_text()).get("training") or []
    except (OSError, ValueError):
        training = []
    if not training:
        source = str((record.config.get("data_summary") or {}).get("source") or record.settings.get("data") or "")
        return {"shenzhen"} if "shenzhen" in source.lower() else {"other"}
    found = set()
    for entry in training:
        path = Path(str(entry.get("image", "")))
        if entry.get("source") in KNOWN_SOURCES:
            found.add(entry["source"])
        elif path.name.startswith("CHNCXR_"):
            found.add("shenzhen")
        elif path.name.startswith("MCUCXR_"):
            found.add("montgomery")
        else:
            found.add("covid_v7" if "covid_v7" in path.parts else "other")
    return found


def trained_on_shenzhen(record) -> bool:
    """Whether every training film comes from known sources, Shenzhen among them (see :func:`training_sources`).

    Only then do the known provenance, attribution and licence (CC BY-NC-SA
    4.0, from the Shenzhen masks) apply; for any other data the card and
    metadata say what was used and ask for its provenance instead.
    """
    sources = training_sources(record)
    return "shenzhen" in sources and sources <= set(KNOWN_SOURCES)


def attributions(sources) -> list[str]:
    """The attribution lines of the known ``sources``, Shenzhen first."""
    return [line for name in KNOWN_SOURCES if name in set(sources) for line in KNOWN_SOURCES[name]]


def _usage(name: str) -> list[str]:
    b = f"bundles/{name}"
    out = [
        "## How to run",
        "",
        f"The commands are given from the folder that holds `{b}` (the medlung repository root); elsewhere, "
        f"replace `{b}` by the bundle folder's path. They need `pip install medlung` (which brings MONAI, "
        "PyTorch, `fire` for MONAI's command line and `jsonschema` for `verify_metadata`) and no network.",
        "",
        "### Inference: every film in a folder",
        "",
        "```bash",
        f"python -m monai.bundle run --bundle_root {b} --config_file {b}/configs/inference.json \\",
        "    --dataset_dir IN --output_dir OUT",
        "```",
        "",
        "segments every DICOM/PNG film under `IN` (recursively) and writes into `OUT` exactly what "
        "`medlung predict IN -o OUT --bundle "
        + b
        + "` writes: `<stem>_seg.dcm` and `<stem>_sr.dcm` (DICOM films), `<stem>_lungs.png`, "
        "`<stem>_labels.nii.gz`, `<stem>_overlay.png`, `report.csv` and `report.json`, on each film's native "
        "grid with its spacing. Without `--dataset_dir` it segments medlung's sample films. The run fails "
        "(after writing the rest) when a film fails, as `medlung predict` exits 1. Overrides, for example:",
        "",
        "```bash",
        f"python -m monai.bundle run --bundle_root {b} --config_file {b}/configs/inference.json \\",
        "    --dataset_dir IN --output_dir OUT --device cpu --roi_size 192 --tta true --formats seg,png \\",
        "    --spacing 0.143 --overwrite true",
        "```",
        "",
        "Booleans are given as `true`/`false`. The `--send AE@HOST:PORT` and `--stow URL` overrides send each "
        "DICOM-SEG to PACS as `medlung predict --send/--stow` does.",
        "",
        "### Evaluation: Dice on a datalist",
        "",
        "```bash",
        f"python -m monai.bundle run --bundle_root {b} --config_file {b}/configs/evaluate.json \\",
        "    --dataset_dir DATA --output_dir EVAL --part test",
        "```",
        "",
        "`DATA` is a folder with `images/` + `masks/`, a CSV `image,mask[,split]` or a MONAI datalist JSON. Each "
        "film is segmented by the same Segmenter and scored on its native grid, as `medlung evaluate` does; "
        "`EVAL` receives `metrics.csv` (Dice, IoU, HD95, ASSD per film, both lungs and "
        "each lung), `summary.json`, `boxplot.png` and `worst.png`.",
        "",
        "### Training",
        "",
        "```bash",
        f"python -m monai.bundle run --bundle_root {b} --config_file {b}/configs/train.json \\",
        "    --dataset_dir DATA --output_dir RUN [--export_dir NEW_BUNDLE]",
        "```",
        "",
        "runs `medlung train DATA -o RUN` with this model's settings (override `--epochs`, `--batch_size`, "
        '`--roi_size`, `--network_def#features "[8,8,16,32,64,8]"`, ...). The run folder is turned into a bundle '
        "with `medlung export RUN -o NEW_BUNDLE` (or `--export_dir`). On several GPUs (or CPU processes, gloo):",
        "",
        "```bash",
        "torchrun --standalone --nproc_per_node 2 -m monai.bundle run --bundle_root " + b + " \\",
        f"    --config_file \"['{b}/configs/train.json','{b}/configs/multi_gpu_train.json']\" \\",
        "    --dataset_dir DATA --output_dir RUN",
        "```",
        "",
        "### Checks (offline)",
        "",
        "```bash",
        f"python -m monai.bundle verify_metadata --meta_file {b}/configs/metadata.json \\",
        f"    --filepath {b}/configs/schema.json --hash_val {schema_md5()}",
        f"python -m monai.bundle verify_net_in_out network_def --meta_file {b}/configs/metadata.json \\",
        f"    --config_file {b}/configs/inference.json --device cpu --n 8",
        f"python -m monai.bundle ckpt_export network_def --filepath model.ts --bundle_root {b} \\",
        f"    --ckpt_file {b}/models/model.pt --meta_file {b}/configs/metadata.json \\",
        f"    --config_file {b}/configs/inference.json",
        "```",
        "",
        "`verify_metadata` validates against `configs/schema.json`, shipped here (written from the MONAI Bundle "
        "specification's metadata fields); MONAI skips the download when that file exists, and `--hash_val` "
        "(the file's MD5) checks it is intact. `ckpt_export` "
        "rebuilds `models/model.ts` from `models/model.pt` (same outputs).",
        "",
        "### From Python or the medlung command line",
        "",
        "```python",
        "import medlung",
        f'masks = medlung.Segmenter("{b}")(medlung.load_film("chest.dcm"))',
        "print(masks.labels.shape, masks.spacing, masks.areas_cm2)",
        "```",
        "",
        f"`medlung predict IN -o OUT --bundle {b}` does the same as the inference config.",
        "",
        "### Config keys",
        "",
        "Set any of them with `--KEY VALUE` after `python -m monai.bundle run ...`:",
        "",
        "| key | configs | meaning |",
        "|---|---|---|",
    ]
    out.extend(f"| `{key}` | {where} | {meaning} |" for key, where, meaning in KEY_DOCS)
    out += [
        "",
        "The configs name medlung components only: inference builds the run's settings "
        "(`medlung.bundle.bundle_settings`, a `medlung.pipeline.settings.PredictSettings`, the object "
        "`medlung predict` builds from its options) and its model (`medlung.bundle.bundle_segmenter`, a "
        "`medlung.inference.Segmenter`), then calls `medlung.pipeline.batch.collect_inputs` and "
        "`predict_files` (what `medlung predict` runs); training builds "
        "`medlung.training.loop.Trainer`; evaluation calls `medlung.evaluation.evaluate` "
        "(what `medlung evaluate` runs). "
        "`network_def` is `medlung.networks.build_network`.",
    ]
    return out


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def _wrap(text: str, width: int = 76) -> str:
    import textwrap

    return textwrap.fill(text, width=width)
