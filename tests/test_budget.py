"""Board profiles and memory budgets."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from kws_kit.boards import BOARD_DIR, board_names, load_profile, resolve_board
from kws_kit.budget import BudgetReport, check_fits, ensure_fits, pick_model
from kws_kit.errors import BoardError, ModelError

README = Path(__file__).resolve().parents[1] / "boards" / "README.md"


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    old = os.environ.get("KWS_CACHE_DIR")
    os.environ["KWS_CACHE_DIR"] = str(tmp_path_factory.mktemp("kws-cache"))
    yield
    if old is None:
        os.environ.pop("KWS_CACHE_DIR", None)
    else:
        os.environ["KWS_CACHE_DIR"] = old


def test_three_boards_with_aliases():
    assert set(board_names()) == {"nucleo_l476rg", "esp32s3", "openmv"}
    assert resolve_board("nucleo") == "nucleo_l476rg"
    assert resolve_board("NUCLEO-L476RG") == "nucleo_l476rg"
    assert resolve_board("esp32-s3") == "esp32s3"
    assert resolve_board("OpenMV") == "openmv"
    profile = load_profile("nucleo")
    profile["budget"]["heap_budget_bytes"] = 1  # callers get a copy
    assert load_profile("nucleo")["budget"]["heap_budget_bytes"] == 60 * 1024


def test_unknown_board_lists_known_ones():
    with pytest.raises(BoardError) as err:
        load_profile("arduino-uno")
    assert all(name in err.value.one_line() for name in board_names())


def test_nucleo_facts():
    p = load_profile("nucleo")
    assert p["clock_hz"] == 80_000_000
    assert p["heap_bytes"] == 88 * 1024
    assert p["firmware_flash_left_bytes"] == 57 * 1024
    b = p["budget"]
    assert b["heap_budget_bytes"] == 60 * 1024


def test_nucleo_budget_leaves_room_for_a_20_kb_model_and_its_arena():
    """Issue #4's goal: runtime + a 20 KB model + arena + buffers within 60 KB (arena: tds_resnet-like 16 KB)."""
    b = load_profile("nucleo")["budget"]
    assert b["runtime_bytes"] + b["buffer_bytes"] + 20 * 1024 + 16 * 1024 <= b["heap_budget_bytes"]


def test_every_profile_field_is_documented():
    documented = set(re.findall(r"^\| `([a-z_.]+)`", README.read_text(), flags=re.M))
    for path in BOARD_DIR.glob("*.json"):
        profile = json.loads(path.read_text())
        keys = set(profile) | {f"budget.{k}" for k in profile["budget"]} | {f"audio.{k}" for k in profile["audio"]}
        keys |= {f"led.{k}" for k in profile["led"]} | {f"serial.{k}" for k in profile["serial"]}
        assert keys <= documented, f"{path.name}: undocumented {sorted(keys - documented)}"
        assert profile["budget"]["heap_budget_bytes"] <= profile["heap_bytes"]
        assert profile["runner"] in {"kws", "openmv_ml", "ulab"}
        assert profile["frontend"] in {"kws", "ulab"}


def _fake(flash, arena, macs=1000, name="fake"):
    return {"name": name, "flash_bytes": flash, "arena_bytes": arena, "macs": macs, "input_shape": [49, 10], "n_classes": 12}


def test_check_fits_arithmetic():
    p = load_profile("nucleo")
    b = p["budget"]
    room = b["heap_budget_bytes"] - b["runtime_bytes"] - b["buffer_bytes"]
    exact = check_fits(_fake(room - 1000, 1000), p)
    assert exact.fits and exact.over_by_bytes == 0 and exact.headroom_bytes == 0
    over = check_fits(_fake(room - 1000, 1100), "nucleo")
    assert not over.fits and over.over_by_bytes == 100
    assert "over by 100 bytes" in over.summary()
    slow = check_fits(_fake(1000, 1000, macs=10**9), p)
    assert slow.fits and not slow.fast_enough and "MACs" in slow.summary()


def test_large_model_on_nucleo_fails_with_over_by_and_a_suggestion():
    from kws_kit.models import zoo

    big = zoo.describe("tc_resnet8", (49, 10), 12)
    report = check_fits(big, "nucleo")
    assert isinstance(report, BudgetReport) and not report.fits and report.over_by_bytes > 0
    with pytest.raises(ModelError) as err:
        ensure_fits(big, "nucleo")
    text = err.value.one_line()
    assert f"over by {report.over_by_bytes} bytes" in text
    suggested = re.search(r"smaller zoo model '(\w+)'", text).group(1)
    assert check_fits(zoo.describe(suggested, (49, 10), 12), "nucleo").fits


def test_pick_model_fits_and_prefers_bigger_boards():
    from kws_kit.models import zoo

    nucleo = pick_model("nucleo", (49, 10), 12)
    assert check_fits(zoo.describe(nucleo, (49, 10), 12), "nucleo").fits
    esp = pick_model(load_profile("esp32s3"), (49, 10), 12)
    assert zoo.ZOO[esp].rank >= zoo.ZOO[nucleo].rank
    assert check_fits(zoo.describe(esp, (49, 10), 12), "esp32s3").fits


def test_pick_model_when_nothing_fits():
    p = load_profile("nucleo")
    p["budget"]["heap_budget_bytes"] = p["budget"]["runtime_bytes"] + p["budget"]["buffer_bytes"] + 2000
    with pytest.raises(ModelError, match="no zoo model fits"):
        pick_model(p, (49, 10), 12)


def test_check_fits_accepts_tflite_info():
    from kws_kit.models import zoo
    from kws_kit.quantize import to_int8_tflite
    from kws_kit.tflite_info import inspect_tflite
    import numpy as np

    model = zoo.build("tiny_conv", (49, 10), 12)
    info = inspect_tflite(to_int8_tflite(model, np.zeros((16, 49, 10), np.float32) + np.linspace(-1, 1, 16)[:, None, None]))
    report = check_fits(info, "nucleo")  # runs the kws C module: its arena layout, larger than TFLite Micro's
    assert report.model_bytes == info.size_bytes and report.arena_bytes == info.kws_arena_bytes(4) > info.budget_arena_bytes
    report = check_fits(info, "openmv")  # TFLite Micro-based ml.Model
    assert report.arena_bytes == info.budget_arena_bytes >= info.arena_bytes
    assert report.fits
    with pytest.raises(ModelError):
        check_fits(object(), "nucleo")


def test_zoo_description_budgets_the_kws_arena_on_kws_boards():
    from kws_kit.models import zoo

    d = zoo.describe("tiny_conv", (49, 10), 12)
    assert d["kws_arena_bytes"] > max(d["arena_bytes"], d["tflm_arena_bytes"] or 0)
    assert check_fits(d, "nucleo").arena_bytes == d["kws_arena_bytes"]
    assert check_fits(d, "openmv").arena_bytes == max(d["arena_bytes"], d["tflm_arena_bytes"] or 0)
