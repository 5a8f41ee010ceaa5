"""FeatureCache: computes only misses, keys by spec, survives corrupted entries."""

from __future__ import annotations

import numpy as np
import pytest

from kws_kit.features import FeatureCache, default_root, pcm_key, row_key
from kws_kit.frontend import Frontend, FrontendSpec, preset


def _clips(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 16000)) * 2000).astype(np.int16)


def test_misses_are_computed_once_in_one_batch(tmp_path):
    spec = FrontendSpec()
    frontend = Frontend(spec)
    clips = _clips(5)
    keys = [pcm_key(c) for c in clips]
    calls = []

    def compute(positions):
        calls.append(list(positions))
        return frontend.batch_features(clips[positions])

    cache = FeatureCache(tmp_path, spec)
    first = cache.get_or_compute(keys[:3], compute)
    assert calls == [[0, 1, 2]]
    # Two old, two new, one repeated key: only the new ones are computed, together.
    order = [keys[1], keys[3], keys[0], keys[4], keys[3]]
    second = cache.get_or_compute(order, lambda pos: frontend.batch_features(clips[[keys.index(order[p]) for p in pos]]))
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    np.testing.assert_array_equal(second[4], second[1])
    np.testing.assert_array_equal(second, frontend.batch_features(clips[[1, 3, 0, 4, 3]]))
    assert (cache.hits, cache.misses) == (2, 5)

    # A new cache object on the same folder reads everything back from disk.
    again = FeatureCache(tmp_path, spec)
    out = again.get_or_compute(keys, lambda pos: pytest.fail("nothing should be recomputed"))
    np.testing.assert_array_equal(out, frontend.batch_features(clips))
    assert not list(tmp_path.rglob("*.tmp"))


def test_spec_change_uses_another_folder(tmp_path):
    clips = _clips(2)
    keys = [pcm_key(c) for c in clips]
    a = FeatureCache(tmp_path, FrontendSpec())
    b = FeatureCache(tmp_path, preset("mfcc13"))
    assert a.folder != b.folder
    a.get_or_compute(keys, lambda pos: Frontend(a.spec).batch_features(clips[pos]))
    out = b.get_or_compute(keys, lambda pos: Frontend(b.spec).batch_features(clips[pos]))
    assert out.shape == (2, 49, 13) and b.misses == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "nan"])
def test_corrupted_entries_are_recomputed(tmp_path, damage):
    spec = FrontendSpec()
    frontend = Frontend(spec)
    clips = _clips(2, seed=3)
    keys = [pcm_key(c) for c in clips]
    cache = FeatureCache(tmp_path, spec)
    good = cache.get_or_compute(keys, lambda pos: frontend.batch_features(clips[pos]))
    path = cache.path(keys[1])
    if damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "wrong_shape":
        np.save(path, np.zeros((49, 13), np.float32))
    else:
        bad = good[1].copy()
        bad[3, 3] = np.nan
        np.save(path, bad)
    recomputed = []
    fresh = FeatureCache(tmp_path, spec)
    out = fresh.get_or_compute(keys, lambda pos: recomputed.extend(pos) or frontend.batch_features(clips[pos]))
    assert recomputed == [1] and fresh.repaired == 1
    np.testing.assert_array_equal(out, good)
    np.testing.assert_array_equal(np.load(path), good[1])  # repaired on disk


def test_keys_and_default_root(tmp_path, monkeypatch):
    clip = _clips(1)[0]
    assert pcm_key(clip) == pcm_key(clip.copy())
    changed = clip.copy()
    changed[100] += 1
    assert pcm_key(changed) != pcm_key(clip)
    assert pcm_key(clip.astype(np.float32) / 32768.0) == pcm_key(clip)  # float audio keyed as the int16 it becomes
    assert row_key("a.wav", 100, 0.5) == row_key("a.wav", 100, 0.5) != row_key("a.wav", 100, 0.25)
    monkeypatch.setenv("KWS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
    assert FeatureCache(None, FrontendSpec()).folder.parent == tmp_path / "elsewhere"
    monkeypatch.delenv("KWS_CACHE_DIR")
    assert default_root().parts[-3:] == (".cache", "kws-kit", "features")
    with pytest.raises(ValueError):
        FeatureCache(tmp_path, FrontendSpec()).path("../../etc")


def test_compute_fn_shape_is_checked(tmp_path):
    cache = FeatureCache(tmp_path, FrontendSpec())
    with pytest.raises(ValueError, match="compute_fn returned"):
        cache.get_or_compute(["k" * 16], lambda pos: np.zeros((1, 49, 13), np.float32))


def test_spec_per_call_and_row_keys(tmp_path):
    """The unbound form used by the trainer: FeatureCache(root).get_or_compute(spec, keys, fn)."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Row:
        path: str
        offset: float

    rows = [Row("a.wav", 0.0), Row("a.wav", 0.5)]
    keys = [row_key(r) for r in rows]
    assert keys[0] != keys[1] and keys[0] == row_key(Row("a.wav", 0.0))
    clips = _clips(2, seed=5)
    cache = FeatureCache(tmp_path)
    for spec in (FrontendSpec(), preset("logmel40")):
        out = cache.get_or_compute(spec, keys, lambda pos: Frontend(spec).batch_features(clips[pos]))
        assert out.shape == (2, *spec.feature_shape)
        assert (cache.folder_for(spec) / keys[0][:2] / f"{keys[0]}.npy").is_file()
    with pytest.raises(TypeError):
        cache.get_or_compute(keys, lambda pos: None)  # no spec bound, none given
