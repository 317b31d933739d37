"""Shelf calibration: the arithmetic, the interactive routine on a fake HX711, and the stored file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationStore,
    calibrate,
    scale_from_known_weight,
    tare,
)
from edge.errors import SensorError, StorageError
from edge.sensors.weight import Hx711Shelf
from tests.edge.sensors.fake_hx711 import FakeHx711


def test_tare_is_the_median_of_the_empty_shelf() -> None:
    assert tare([8400.0, 8412.0, 90_000.0, 8410.0, 8405.0]) == 8410.0
    assert tare([-12.0]) == -12.0


def test_scale_is_counts_per_gram_above_the_tare() -> None:
    assert scale_from_known_weight([8000 + 200_000, 8000 + 200_100, 8000 + 199_900], 8000.0, 500.0) == 400.0
    # A load cell mounted upside down reads less under load: the scale is negative, grams still positive.
    scale = scale_from_known_weight([8000 - 100_000], 8000.0, 250.0)
    assert scale == -400.0
    assert ((8000 - 40_000) - 8000) / scale == 100.0


def test_a_weight_that_does_not_move_the_reading_is_a_sensor_error() -> None:
    with pytest.raises(SensorError, match=r"moved by only 150 counts with 500 g on it: check .*wiring"):
        scale_from_known_weight([8150.0, 8150.0], 8000.0, 500.0)


@pytest.mark.parametrize(("samples", "grams"), [([], 500.0), ([1e6], 0.0), ([1e6], -5.0)])
def test_scale_needs_readings_and_a_positive_weight(samples: list[float], grams: float) -> None:
    with pytest.raises(ValueError, match=r"at least one|more than 0 g"):
        scale_from_known_weight(samples, 0.0, grams)


def test_tare_needs_readings() -> None:
    with pytest.raises(ValueError, match="at least one"):
        tare([])


def test_calibrate_a_shelf_on_a_fake_hx711(factory: MockFactory) -> None:
    chip = FakeHx711(factory, 5, 6)
    shown: list[str] = []
    # The chip converts whatever is on the shelf when the user says it is ready.
    loads = iter([[8400, 8410, 8405, 8412, 8395], [214_355, 214_405, 214_455, 70, 214_405]])  # 412 counts/g

    def press_enter() -> None:
        chip.queue(*next(loads))

    with Hx711Shelf("fridge-top", 5, 6, scale=1.0, offset=0.0, pin_factory=factory, samples=1) as shelf:
        calibration = calibrate(shelf.read_raw, 500.0, shown.append, press_enter)
    assert shown == ["Empty the shelf, then press Enter.", "Put 500 g on the shelf, then press Enter."]
    offset, scale = calibration
    assert offset == 8405.0
    assert scale == pytest.approx(412.0)
    assert not chip.readings


def test_calibrate_reads_only_after_each_wait() -> None:
    log: list[str] = []
    readings = iter([100.0, 100.0, 100.0, 50_100.0, 50_100.0, 50_100.0])

    def reader() -> float:
        log.append("read")
        return next(readings)

    result = calibrate(
        reader, 100.0, lambda text: log.append(text[:5]), lambda: log.append("wait"), readings=3
    )
    assert log == ["Empty", "wait", "read", "read", "read", "Put 1", "wait", "read", "read", "read"]
    assert result == Calibration(offset=100.0, scale=500.0)


def test_calibrate_refuses_a_bad_weight_before_asking_anything() -> None:
    shown: list[str] = []
    with pytest.raises(ValueError, match="more than 0 g"):
        calibrate(lambda: 0.0, 0.0, shown.append, lambda: None)
    assert shown == []


def test_store_keeps_each_shelf(tmp_path: Path) -> None:
    store = CalibrationStore.in_data_dir(tmp_path / "data")
    assert store.path == tmp_path / "data" / CALIBRATION_FILE
    assert store.load() == {}
    assert store.get("fridge-top") is None
    store.save("fridge-top", Calibration(offset=8405.0, scale=412.0))
    store.save("door", Calibration(offset=-120.5, scale=-98.25))
    store.save("fridge-top", Calibration(offset=8410.0, scale=411.5))
    assert CalibrationStore(store.path).load() == {
        "door": Calibration(offset=-120.5, scale=-98.25),
        "fridge-top": Calibration(offset=8410.0, scale=411.5),
    }
    assert json.loads(store.path.read_text()) == {
        "door": {"offset": -120.5, "scale": -98.25},
        "fridge-top": {"offset": 8410.0, "scale": 411.5},
    }
    assert sorted(path.name for path in store.path.parent.iterdir()) == [CALIBRATION_FILE]  # no temp files


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CalibrationStore(tmp_path / CALIBRATION_FILE)
    store.save("a", Calibration(offset=1.0, scale=2.0))
    before = store.path.read_text()

    def full_disk(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(
        StorageError, match=r"cannot write .*No space left on device; check the data directory"
    ):
        store.save("b", Calibration(offset=3.0, scale=4.0))
    assert store.path.read_text() == before
    assert [path.name for path in tmp_path.iterdir()] == [CALIBRATION_FILE]


def test_an_unreadable_file_is_a_storage_error(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / CALIBRATION_FILE)
    store.path.mkdir()
    with pytest.raises(StorageError, match=r"cannot read .*check the data directory"):
        store.load()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"a": 1}',
        '{"a": {"offset": 1}}',
        '{"a": {"offset": 1, "scale": 2, "gain": 128}}',
        '{"a": {"offset": "1", "scale": 2}}',
        '{"a": {"offset": true, "scale": 2}}',
        '{"a": {"offset": 1, "scale": 0}}',
        '{"a": {"offset": NaN, "scale": 2}}',
    ],
)
def test_an_invalid_file_says_how_to_recover(tmp_path: Path, text: str) -> None:
    store = CalibrationStore(tmp_path / CALIBRATION_FILE)
    store.path.write_text(text)
    with pytest.raises(SensorError, match=r"is not valid .*delete it and run 'frigo edge calibrate'"):
        store.load()


def test_save_refuses_an_unusable_calibration(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / CALIBRATION_FILE)
    with pytest.raises(ValueError, match="scale"):
        store.save("a", Calibration(offset=1.0, scale=0.0))
    assert not store.path.exists()
