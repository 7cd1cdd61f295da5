"""Finding training data: folder, CSV, datalist JSON; checks; the seeded split."""

import json
import shutil

import pytest

from medlung.io.datasets import DatasetError, check_datalist, find_datalist, split_datalist


def test_shared_splits_csv_works_as_is(shared_data):
    datalist = find_datalist(shared_data / "shenzhen" / "splits.csv")
    assert datalist.has_split
    assert {p: len(v) for p, v in datalist.parts.items()} == {"training": 396, "validation": 85, "test": 85}
    first = datalist.parts["training"][0]
    assert first["image"].endswith("shenzhen/images/CHNCXR_0001_0.png")
    assert first["label"].endswith("shenzhen/masks/CHNCXR_0001_0_lungs.png")


def test_shared_shenzhen_folder_matches_the_lungs_masks(shared_data):
    datalist = find_datalist(shared_data / "shenzhen")
    assert len(datalist.parts["training"]) == 566 and not datalist.problems
    assert "'_lungs' x566" in datalist.source
    assert all(e["label"].endswith("_lungs.png") for e in datalist.parts["training"])


def test_datalist_json_with_relative_paths(shared_data, tmp_path):
    folder = tmp_path / "lists"
    (folder / "img").mkdir(parents=True)
    for stem in ("CHNCXR_0001_0", "CHNCXR_0002_0"):
        shutil.copy(shared_data / "shenzhen" / "images" / f"{stem}.png", folder / "img")
        shutil.copy(shared_data / "shenzhen" / "masks" / f"{stem}_lungs.png", folder / "img")
    (folder / "list.json").write_text(
        json.dumps(
            {
                "training": [{"image": "img/CHNCXR_0001_0.png", "label": "img/CHNCXR_0001_0_lungs.png"}],
                "validation": [{"image": "img/CHNCXR_0002_0.png", "label": "img/CHNCXR_0002_0_lungs.png"}],
            }
        )
    )
    datalist = check_datalist(find_datalist(folder / "list.json"))
    assert datalist.has_split and not datalist.problems
    assert datalist.parts["validation"][0]["image"] == str(folder / "img" / "CHNCXR_0002_0.png")


def test_split_is_seeded_and_disjoint(shared_data):
    datalist = find_datalist(shared_data / "shenzhen")
    a, b = split_datalist(datalist, seed=3), split_datalist(datalist, seed=3)
    assert a.parts == b.parts
    sizes = {p: len(v) for p, v in a.parts.items()}
    assert sizes == {"training": 452, "validation": 57, "test": 57}
    names = [e["image"] for p in a.parts.values() for e in p]
    assert len(names) == len(set(names)) == 566
    assert split_datalist(datalist, seed=4).parts != a.parts


def test_unknown_layouts_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="no images/ and masks/"):
        find_datalist(tmp_path)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a training data layout"):
        find_datalist(tmp_path / "x.txt")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="image and mask columns"):
        find_datalist(tmp_path / "bad.csv")


def test_dicom_folder_with_segs_as_a_pacs_export(shared_data, tmp_path):
    """Films plus DICOM-SEGs that reference them; a film without SEG is listed and skipped."""
    import numpy as np
    from PIL import Image

    import medlung
    from medlung.io.masks import load_label_map
    from medlung.writers.dicom_seg import write_dicom_seg
    from tests import dicom_factory as factory

    export = tmp_path / "export" / "study1"
    export.mkdir(parents=True)
    truths = {}
    for stem in ("CHNCXR_0001_0", "CHNCXR_0002_0", "CHNCXR_0003_0"):
        pixels = np.asarray(Image.open(shared_data / "shenzhen" / "images" / f"{stem}.png"))
        ds = factory.radiograph(pixels, factory.CR, PixelSpacing=[0.7, 0.7], PatientOrientation=["L", "F"])
        path = factory.write(ds, export / f"{stem}.dcm")
        if stem == "CHNCXR_0003_0":
            continue  # corrected result missing for this film
        right = np.asarray(Image.open(shared_data / "shenzhen" / "masks" / f"{stem}_lung_R.png")) > 0
        left = np.asarray(Image.open(shared_data / "shenzhen" / "masks" / f"{stem}_lung_L.png")) > 0
        labels = np.where(right, 1, np.where(left, 2, 0)).astype(np.uint8)
        truths[str(path)] = labels
        write_dicom_seg(medlung.load_film(path), labels, tmp_path / "export" / f"seg_{stem}.dcm", model_version="t")
    with pytest.warns(UserWarning, match="no DICOM-SEG references it"):
        datalist = find_datalist(tmp_path / "export")
    assert "3 films, 2 SEGs" in datalist.source
    assert len(datalist.parts["training"]) == 2
    assert len(datalist.problems) == 1 and "CHNCXR_0003_0.dcm: no DICOM-SEG" in datalist.problems[0]
    for entry in check_datalist(datalist).parts["training"]:
        np.testing.assert_array_equal(load_label_map(entry["label"]), truths[entry["image"]])


def test_split_follows_the_requested_fractions(shared_data):
    datalist = find_datalist(shared_data / "shenzhen")
    split = split_datalist(datalist, seed=1, fractions=(0.6, 0.2, 0.2))
    assert {p: len(v) for p, v in split.parts.items()} == {"training": 340, "validation": 113, "test": 113}
    assert "split 60/20/20 with seed 1" in split.source


def test_covid_v7_csv_gives_ignore_masks_and_a_conventions_column(shared_data, tmp_path):
    covid = find_datalist(shared_data / "covid_v7" / "splits.csv")
    assert {p: len(v) for p, v in covid.parts.items()} == {"training": 130, "validation": 31, "test": 31}
    with_ignore = [e for e in covid.all_entries() if e["ignore"]]
    assert with_ignore and all(e["ignore"].endswith("_ignore.png") for e in with_ignore)
    assert all(e["lungs"] == "" for e in covid.all_entries())  # the CSV does not say: callers decide
    rows = [
        "image,mask,lungs,split",
        f"{shared_data}/shenzhen/images/CHNCXR_0001_0.png,{shared_data}/shenzhen/masks/CHNCXR_0001_0_lungs.png,"
        "anatomical,train",
        f"{shared_data}/shenzhen/images/CHNCXR_0100_0.png,{shared_data}/shenzhen/masks/CHNCXR_0100_0_lungs.png,"
        "field,val",
        f"{shared_data}/shenzhen/images/CHNCXR_0101_0.png,{shared_data}/shenzhen/masks/CHNCXR_0101_0_lungs.png,"
        "whole,val",
    ]
    (tmp_path / "mixed.csv").write_text("\n".join(rows) + "\n")
    mixed = find_datalist(tmp_path / "mixed.csv")
    assert [e["lungs"] for e in mixed.all_entries()] == ["anatomical", "field"]
    assert len(mixed.problems) == 1 and "unknown lungs convention 'whole'" in mixed.problems[0]


def test_folder_layout_attaches_ignore_masks_and_checks_their_grid(shared_data, tmp_path):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    stem = "CHNCXR_0001_0"
    shutil.copy(shared_data / "shenzhen" / "images" / f"{stem}.png", folder / "images")
    shutil.copy(shared_data / "shenzhen" / "masks" / f"{stem}_lungs.png", folder / "masks")
    from PIL import Image

    Image.new("L", (512, 512)).save(folder / "masks" / f"{stem}_ignore.png")
    datalist = check_datalist(find_datalist(folder))
    (only,) = datalist.parts["training"]
    assert only["ignore"].endswith(f"{stem}_ignore.png") and not datalist.problems
    Image.new("L", (100, 100)).save(folder / "masks" / f"{stem}_ignore.png")
    datalist = check_datalist(find_datalist(folder))
    assert not datalist.parts["training"] and "ignore mask is 100x100" in datalist.problems[0]
