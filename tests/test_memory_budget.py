"""``--max-memory``: a batch never holds more films than its budget allows (#28)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from medlung.errors import MedlungError
from medlung.memory import (
    BYTES_PER_PIXEL,
    PER_FILM_BYTES,
    MemoryBudget,
    MemoryBudgetError,
    declared_decode_cost,
    default_budget,
    machine_memory,
    parse_memory,
)
from tests import dicom_factory as factory


def test_parse_memory_and_the_default():
    assert parse_memory("4G") == 4 * 2**30 and parse_memory("1500M") == 1500 * 2**20
    assert parse_memory("2.5GB") == int(2.5 * 2**30) and parse_memory("800MiB") == 800 * 2**20
    for bad in ("abc", "100M", "-1G", ""):
        with pytest.raises(MedlungError):
            parse_memory(bad)
    assert 512 * 2**20 <= default_budget() <= machine_memory()


def test_films_wait_for_memory_and_a_film_over_the_budget_is_refused():
    cost = declared_decode_cost(4892, 4020, 16)  # the 4020x4892 16-bit film: ~640 MB (measured: 373 MB at most)
    assert cost == 4892 * 4020 * (2 + BYTES_PER_PIXEL) + PER_FILM_BYTES
    budget = MemoryBudget(600 * 2**20 + int(2.5 * cost))  # room for two such films, not three
    assert budget.films_at_once(cost) == 2
    holding, most = [0], [0]
    lock = threading.Lock()

    def film() -> None:
        with budget.hold(cost, "film.dcm"):
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0.05)
            with lock:
                holding[0] -= 1

    threads = [threading.Thread(target=film) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2
    with pytest.raises(MemoryBudgetError, match=r"film\.dcm: needs about .* more than"):
        budget.acquire(3 * cost, "film.dcm")


def test_predict_refuses_a_film_its_budget_cannot_hold_and_goes_on(shipped_bundle, tmp_path):
    big = factory.write(factory.radiograph(np.zeros((4892, 4020), np.uint16)), tmp_path / "big.dcm")
    small = factory.write(
        factory.radiograph(factory.chest_pixels(256, 256), PixelSpacing=[1.4, 1.4]), tmp_path / "small.dcm"
    )
    env = {**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)}
    command = [sys.executable, "-m", "medlung", "predict", big, small, "-o", tmp_path / "out", "--format", "png"]
    result = subprocess.run([*command, "--max-memory", "1G", "--workers", "2"], capture_output=True, text=True, env=env)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "big.dcm: needs about" in errors[0] and "--max-memory" in errors[0]
    assert (tmp_path / "out" / "small_lungs.png").exists() and not (tmp_path / "out" / "big_lungs.png").exists()
    bad = subprocess.run([*command, "--max-memory", "lots"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "not an amount of memory" in bad.stderr
