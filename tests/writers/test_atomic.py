"""Outputs appear whole or not at all, and are never overwritten by accident."""

import os

import numpy as np
import pytest

from medlung.atomic import write_atomically
from medlung.errors import OutputExistsError
from medlung.writers.masks import write_labels_nifti, write_lungs_png


def test_an_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "film_lungs.png"

    def crash(path):
        path.write_bytes(b"half a file")
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, crash)
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[2:6, 1:3] = 1
    path = write_lungs_png(tmp_path / "a_lungs.png", labels, (0.1, 0.2))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"a_lungs\.png: already exists"):
        write_lungs_png(path, np.ones((8, 8), np.uint8), None)
    assert path.read_bytes() == before
    write_lungs_png(path, np.ones((8, 8), np.uint8), None, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_lungs.png"]


def test_nifti_carries_spacing_or_says_unknown(tmp_path):
    import nibabel

    from medlung.writers.masks import read_nifti_spacing

    labels = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    write_labels_nifti(tmp_path / "a.nii.gz", labels, (0.1, 0.2))
    image = nibabel.load(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj)[:, :, 0], labels)
    assert read_nifti_spacing(tmp_path / "a.nii.gz") == pytest.approx((0.1, 0.2))
    write_labels_nifti(tmp_path / "b.nii.gz", labels, None)
    assert read_nifti_spacing(tmp_path / "b.nii.gz") is None


def test_written_files_follow_the_umask_and_reading_it_leaves_it_as_it_was(tmp_path):
    from medlung.atomic import current_umask

    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027 and current_umask() == 0o027  # reading does not change it
        path = write_atomically(tmp_path / "file.txt", lambda tmp: tmp.write_text("x"))
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)
