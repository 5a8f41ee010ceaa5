"""Streaming evaluation: stream building, device-like scoring, matching, sweeps, DET plot.

Fake scorers stand in for models: one reads the answer key (exact expected
numbers), one detects tone bursts from band energies (real audio path).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from kws_kit import streaming
from kws_kit.device.kwsrt import recognizer as device_recognizer
from kws_kit.errors import DataError, KwsError, ModelError
from kws_kit.streaming import (
    Detection,
    Event,
    ScoreTrack,
    SweepPoint,
    build_stream,
    evaluate,
    inference_frames,
    match,
    plot_det,
    probs_to_scores,
    run_recognizer,
    score_stream,
    sweep_thresholds,
    threshold_for_target,
)

SR = 16000
HOP = 320
FRAME = 480
LABELS = ["_silence_", "_unknown_", "yes", "no"]
TONES = {"yes": 500.0, "no": 1000.0, "_unknown_": 2000.0}


def tone(freq: float, seconds: float = 0.5, amp: float = 0.3, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t + phase) * np.hanning(len(t))).astype(np.float32)


def keyword_tones(per_label: int = 3) -> dict[str, list[np.ndarray]]:
    return {
        label: [tone(TONES[label] * (1 + 0.01 * i), 0.4 + 0.1 * i, phase=i) for i in range(per_label)]
        for label in ("yes", "no")
    }


def unknown_tones() -> list[np.ndarray]:
    return [tone(TONES["_unknown_"] * (1 + 0.01 * i), 0.5) for i in range(3)]


def white_noise(seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(int(seconds * SR)).astype(np.float32) * 0.1, rng.uniform(-0.2, 0.2, SR * 7).astype(np.float32)]


def frame_count(n: int) -> int:
    return 0 if n < FRAME else 1 + (n - FRAME) // HOP


def frame_index_features(audio: np.ndarray) -> np.ndarray:
    """'Features' that say which frame they are: lets a scorer know the time."""
    return np.arange(frame_count(len(audio)), dtype=np.float32)[:, None]


def frame_end_s(k: np.ndarray) -> np.ndarray:
    return (k * HOP + FRAME) / SR


# --- an answer-key scorer: exact expected results ---------------------------------------


class PlanScorer:
    """Scores from a plan: for each planned burst (start_s, label, level) the label
    gets ``level`` while the window end lies in [start, start + 1.3 s), _silence_
    gets 255 - level; elsewhere _silence_ gets 255. Also checks every window is
    the 49 consecutive frames ending at the device's newest frame."""

    def __init__(self, bursts: list[tuple[float, str, int]]):
        self.bursts = sorted(bursts)
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        assert batch.dtype == np.float32 and batch.shape[1:] == (49, 1)
        idx = batch[:, :, 0].astype(np.int64)
        assert np.all(np.diff(idx, axis=1) == 1), "window frames must be consecutive"
        end = frame_end_s(idx[:, -1])
        out = np.zeros((len(batch), len(LABELS)), dtype=np.uint8)
        out[:, 0] = 255
        for start, label, level in self.bursts:
            on = (end >= start) & (end < start + 1.3)
            out[on, LABELS.index(label)] = level
            out[on, 0] = 255 - level
        return out


def gaps_for_ghosts(stream, count: int) -> list[float]:
    """Times far from any word, where a planned false accept can go."""
    words = sorted(list(stream.events) + list(stream.distractors))
    spots = []
    for a, b in zip(words, words[1:]):
        if b.start_s - a.end_s >= 6.0:
            spots.append(a.end_s + 2.5)
    assert len(spots) >= count, "stream too dense for the planned false accepts"
    return spots[:count]


def planned_stream(seed: int = 4, duration_s: float = 600.0):
    return build_stream(
        keyword_tones(), unknown_tones(), None, duration_s, seed,
        keyword_every_s=(5.0, 12.0), unknown_every_s=(15.0, 25.0),
    )


def test_exact_false_accepts_and_misses_from_a_plan():
    stream = planned_stream()
    rng = np.random.default_rng(0)
    n_events = len(stream.events)
    missed = set(rng.choice(n_events, size=n_events // 4, replace=False).tolist())
    bursts = [(e.start_s, e.label, 230) for i, e in enumerate(stream.events) if i not in missed]
    ghosts = gaps_for_ghosts(stream, 7)
    bursts += [(t, ["yes", "no"][i % 2], 240) for i, t in enumerate(ghosts)]
    scorer = PlanScorer(bursts)

    track = score_stream(frame_index_features, scorer, stream)
    result = evaluate(track, stream, LABELS, {"detection_threshold": 0.8})

    hours = stream.duration_s / 3600
    assert result.n_events == n_events and n_events >= 40
    assert result.false_rejects == len(missed)
    assert result.frr == pytest.approx(len(missed) / n_events)
    assert result.false_accepts == 7
    assert result.fa_per_hour == pytest.approx(7 / hours)
    assert result.duplicates == 0 and result.fa_on_distractors == 0
    per = result.per_keyword
    assert sum(v["misses"] for v in per.values()) == len(missed)
    assert per["yes"]["false_accepts"] == 4 and per["no"]["false_accepts"] == 3
    for label in ("yes", "no"):
        expected_misses = sum(1 for i in missed if stream.events[i].label == label)
        assert per[label]["misses"] == expected_misses
        assert per[label]["hits"] + per[label]["misses"] == per[label]["events"]
    assert scorer.calls == math.ceil(len(track.times_ms) / 512)
    d = result.to_dict()
    assert d["false_accepts_per_hour"] == pytest.approx(7 / hours)
    assert "false accepts/hour" in result.summary()


def test_unknown_words_that_trigger_are_counted_as_false_accepts():
    stream = planned_stream(seed=5, duration_s=300)
    bursts = [(e.start_s, e.label, 230) for e in stream.events]
    bursts += [(d.start_s, "yes", 230) for d in stream.distractors]  # model confuses unknown words
    track = score_stream(frame_index_features, PlanScorer(bursts), stream)
    result = evaluate(track, stream, LABELS)
    assert len(stream.distractors) >= 5
    assert result.false_rejects == 0
    assert result.false_accepts == len(stream.distractors)
    assert result.fa_on_distractors == len(stream.distractors)


def test_sweep_follows_the_score_levels_exactly():
    stream = planned_stream(seed=6, duration_s=400)
    rng = np.random.default_rng(1)
    levels = [140, 170, 200, 230, 250]
    event_levels = rng.choice(levels, size=len(stream.events)).tolist()
    ghosts = gaps_for_ghosts(stream, 6)
    ghost_levels = [levels[i % len(levels)] for i in range(len(ghosts))]
    bursts = [(e.start_s, e.label, lv) for e, lv in zip(stream.events, event_levels)]
    bursts += [(t, "no", lv) for t, lv in zip(ghosts, ghost_levels)]
    track = score_stream(frame_index_features, PlanScorer(bursts), stream)

    thresholds = np.linspace(0.3, 1.0, 15)
    sweep = sweep_thresholds(track, stream.events, LABELS, {}, thresholds)
    hours = track.duration_s / 3600
    assert [p.threshold for p in sweep] == pytest.approx(thresholds.tolist())
    for point in sweep:
        score = min(255, math.floor(point.threshold * 256))
        expected_misses = sum(lv < score for lv in event_levels)
        expected_fa = sum(lv >= score for lv in ghost_levels)
        assert point.frr == pytest.approx(expected_misses / len(event_levels))
        assert point.fa_per_hour == pytest.approx(expected_fa / hours)
    fas = [p.fa_per_hour for p in sweep]
    frrs = [p.frr for p in sweep]
    assert fas == sorted(fas, reverse=True) and frrs == sorted(frrs)
    assert fas[0] > fas[-1] and frrs[0] < frrs[-1]

    # Target: the lowest miss rate among points with few enough false accepts.
    target = 2.5 / hours  # at most 2 of the ghosts
    best = threshold_for_target(sweep, target)
    assert best is not None and best.fa_per_hour <= target
    assert all(p.frr >= best.frr for p in sweep if p.fa_per_hour <= target)
    assert threshold_for_target(sweep, -1.0) is None


# --- the real audio path with a tone-detecting scorer ------------------------------


BANDS = [(400, 620), (900, 1150), (1800, 2300)]


def band_energy_features(audio: np.ndarray) -> np.ndarray:
    """log energy in three bands per 30 ms frame, 20 ms hop (frame k = [k*320, k*320+480))."""
    x = audio.astype(np.float32) / 32768
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]
    spec = np.abs(np.fft.rfft(frames * np.hanning(FRAME).astype(np.float32), n=512)) ** 2
    freqs = np.fft.rfftfreq(512, 1 / SR)
    bands = [spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in BANDS]
    total = spec.sum(axis=1)
    return np.log(np.stack(bands + [total], axis=1) + 1e-10).astype(np.float32)


def tone_scorer(batch: np.ndarray) -> np.ndarray:
    """A frame 'belongs' to a band holding most of its energy; class score = the
    share of such frames among the last 25 (0.5 s) of the window."""
    recent = batch[:, -25:, :]
    share = np.exp(recent[:, :, :3] - recent[:, :, 3:4])  # band energy / total
    active = (share > 0.3).mean(axis=1)  # (N, 3): yes, no, unknown
    probs = np.zeros((len(batch), 4))
    probs[:, 2] = active[:, 0] * 4
    probs[:, 3] = active[:, 1] * 4
    probs[:, 1] = active[:, 2] * 4
    probs[:, 0] = 1 - probs[:, 1:].max(axis=1).clip(0, 1)
    return probs_to_scores(probs)


def test_tone_bursts_in_noise_are_found_and_unknown_words_ignored():
    stream = build_stream(keyword_tones(), unknown_tones(), white_noise(20), 240, seed=2, snr_db=(5, 15))
    track = score_stream(band_energy_features, tone_scorer, stream)
    result = evaluate(track, stream, LABELS, {"detection_threshold": 0.6})
    assert len(stream.events) >= 20 and len(stream.distractors) >= 8
    assert result.false_rejects == 0
    assert result.false_accepts == 0
    # ...and the unknown tones do trigger when the ignore list leaves _unknown_ out.
    loud = evaluate(track, stream, LABELS, {"detection_threshold": 0.6, "ignore_labels": ["_silence_"]})
    assert loud.false_accepts == len(stream.distractors)


# --- build_stream ------------------------------------------------------------------


def test_stream_layout():
    stream = build_stream(keyword_tones(), unknown_tones(), white_noise(20), 300, seed=7,
                          keyword_every_s=(4, 8), unknown_every_s=(6, 12), guard_s=2.0)
    assert stream.audio.dtype == np.int16 and stream.audio.ndim == 1
    assert len(stream.audio) == 300 * SR and stream.duration_s == 300
    words = sorted(stream.events + stream.distractors)
    assert words[0].start_s >= 1.5 and words[-1].end_s <= 300 - 1.5
    for a, b in zip(words, words[1:]):
        assert b.start_s >= a.end_s + 2.0 - 1e-9  # no overlap, guard kept
    starts = [e.start_s for e in stream.events]
    assert min(np.diff(starts)) >= 4.0 - 1e-6
    # Rate: about one keyword per 6 s (pushed back a little by unknown words).
    assert 300 / 10 <= len(stream.events) <= 300 / 4
    counts = [sum(e.label == lab for e in stream.events) for lab in ("yes", "no")]
    assert abs(counts[0] - counts[1]) <= 1
    assert all(d.label == "_unknown_" for d in stream.distractors)
    assert all(5.0 - 1e-6 <= s <= 20.0 + 1e-6 for s in stream.event_snr_db + stream.distractor_snr_db)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x.astype(np.float64) / 32768)))


def test_noise_level_and_snr_are_what_was_asked():
    stream = build_stream(keyword_tones(), unknown_tones(), white_noise(20), 200, seed=8,
                          snr_db=(0, 15), noise_dbfs=-35.0)
    audio = stream.audio
    noise_power = 10 ** (-35.0 / 10)
    for event, snr in zip(stream.events + stream.distractors, stream.event_snr_db + stream.distractor_snr_db):
        s0, s1 = round(event.start_s * SR), round(event.end_s * SR)
        before = audio[s0 - SR : s0 - SR // 4]
        assert 10 * math.log10(_power(before) / noise_power) == pytest.approx(0.0, abs=0.5)
        speech_power = _power(audio[s0:s1]) - _power(before)
        assert 10 * math.log10(speech_power / _power(before)) == pytest.approx(snr, abs=1.0)


def test_noise_segments_join_without_clicks():
    # A pure 100 Hz hum as "noise": segments start at random phases, so a hard
    # join would jump by up to twice the amplitude between two samples.
    hum = np.sin(2 * np.pi * 100 * np.arange(SR * 3) / SR).astype(np.float32)
    stream = build_stream({"yes": [tone(500)]}, None, [hum], 120, seed=4, segment_s=(0.5, 1.0),
                          keyword_every_s=(20, 30))
    amplitude = math.sqrt(2) * 10 ** (-40 / 20) * 32768
    quiet = np.ones(len(stream.audio), bool)
    for e in stream.events:
        quiet[round(e.start_s * SR) - 1 : round(e.end_s * SR) + 1] = False
    steps = np.abs(np.diff(stream.audio.astype(np.int32)))[quiet[1:] & quiet[:-1]]
    smooth_step = amplitude * 2 * np.pi * 100 / SR  # steepest step of the hum itself
    assert steps.max() <= 1.6 * smooth_step + 2


def test_stream_is_reproducible_and_seed_dependent():
    args = (keyword_tones(), unknown_tones(), white_noise(20))
    a = build_stream(*args, 60, seed=1)
    b = build_stream(*args, 60, seed=1)
    c = build_stream(*args, 60, seed=2)
    assert np.array_equal(a.audio, b.audio) and a.events == b.events
    assert not np.array_equal(a.audio, c.audio)


def test_accepts_int16_clips_pairs_and_one_noise_array():
    clips = [("yes", (tone(500) * 32767).astype(np.int16)), ("no", tone(1000))]
    noise = (np.random.default_rng(0).standard_normal(SR * 5) * 3000).astype(np.int16)
    stream = build_stream(clips, None, noise, 40, seed=0)
    assert {e.label for e in stream.events} == {"yes", "no"} and stream.distractors == []


def test_without_noise_words_keep_their_level():
    stream = build_stream({"yes": [tone(500, amp=0.25)]}, None, None, 30, seed=0, trim_db=None)
    assert all(math.isinf(s) for s in stream.event_snr_db)
    e = stream.events[0]
    s0 = round(e.start_s * SR)
    peak = np.abs(stream.audio[s0 : s0 + SR // 2]).max() / 32768
    assert peak == pytest.approx(0.25, abs=0.01)
    quiet = np.ones(len(stream.audio), bool)
    for ev in stream.events:
        quiet[round(ev.start_s * SR) : round(ev.end_s * SR)] = False
    assert not stream.audio[quiet].any()


def test_memory_stays_near_the_int16_output():
    args = (keyword_tones(), unknown_tones(), white_noise(40))
    duration = 600
    tracemalloc.start()
    try:
        stream = build_stream(*args, duration, seed=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    int16_bytes = duration * SR * 2
    assert stream.audio.nbytes == int16_bytes
    # A float32 copy of the stream alone would be 2x the int16 output.
    assert peak < 1.6 * int16_bytes, peak / int16_bytes


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(keyword_clips={}), DataError),
        (dict(keyword_clips={"yes": [np.zeros(SR, np.float32)]}), DataError),
        (dict(noise=[np.zeros(SR * 3, np.float32)]), DataError),
        (dict(keyword_every_s=(5, 2)), KwsError),
        (dict(snr_db=(1,)), KwsError),
        (dict(duration_s=2.0), KwsError),
        (dict(keyword_clips={"yes": [np.zeros((2, 100), np.float32)]}), DataError),
    ],
)
def test_build_stream_errors(kwargs, error):
    args = dict(keyword_clips=keyword_tones(1), unknown_clips=None, noise=white_noise(5), duration_s=30.0, seed=0)
    args.update(kwargs)
    with pytest.raises(error):
        build_stream(**args)


# --- score_stream ---------------------------------------------------------------


def test_inference_schedule_matches_the_device():
    times, last = inference_frames(5 * SR)
    assert times[0] == 1000 and last[0] == 48  # 49 frames end at 990 ms
    assert np.all(np.diff(times) == 250) and times[-1] == 5000
    assert np.array_equal(last, (times * 16 - FRAME) // HOP)
    # Shorter period / window: first inference as soon as the window is full.
    times, last = inference_frames(2 * SR, inference_period_ms=100, window_frames=10)
    assert times[0] == 300 and last[0] == (300 * 16 - FRAME) // HOP >= 9


def test_score_stream_checks_features_and_scores():
    stream = build_stream({"yes": [tone(500)]}, None, None, 10, seed=0)
    padded = lambda audio: np.zeros((frame_count(len(audio)) + 1, 1), np.float32)  # noqa: E731
    with pytest.raises(KwsError, match="expected"):
        score_stream(padded, lambda b: np.zeros((len(b), 4), np.uint8), stream)
    with pytest.raises(ModelError):
        score_stream(frame_index_features, lambda b: np.zeros((len(b), 4), np.float32) + 0.5, stream)
    with pytest.raises(ModelError):
        score_stream(frame_index_features, lambda b: np.zeros((len(b) + 1, 4), np.uint8), stream)
    ints = score_stream(frame_index_features, lambda b: np.full((len(b), 4), 7, np.int64), stream)
    assert ints.scores.dtype == np.uint8 and (ints.scores == 7).all()
    assert ints.duration_s == 10


def test_score_track_round_trip(tmp_path):
    track = ScoreTrack(np.arange(1000, 3000, 250, dtype=np.int64), np.arange(32, dtype=np.uint8).reshape(8, 4), 3.0)
    path = track.save(tmp_path / "track.npz")
    back = ScoreTrack.load(path)
    assert np.array_equal(back.times_ms, track.times_ms) and np.array_equal(back.scores, track.scores)
    assert back.duration_s == 3.0
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError):
        ScoreTrack.load(tmp_path / "bad.npz")


# --- the recogniser used is the device file ----------------------------------------


def test_run_recognizer_uses_the_device_class(monkeypatch):
    assert streaming.device_recognizer is device_recognizer
    seen = []

    class Spy(device_recognizer.Recognizer):
        def update(self, scores, now_ms):
            seen.append(now_ms)
            return super().update(scores, now_ms)

    monkeypatch.setattr(device_recognizer, "Recognizer", Spy)
    scores = np.zeros((12, 4), np.uint8)
    scores[:, 0] = 255
    scores[4:9, 0] = 0
    scores[4:9, 2] = 250
    track = ScoreTrack(np.arange(12, dtype=np.int64) * 250 + 1000, scores, 4.0)
    found = run_recognizer(track, LABELS, {"detection_threshold": 0.5})
    assert seen == track.times_ms.tolist()
    # Default 750 ms window = 3 results: at the second yes row (t=2250) yes has
    # 500 // 3 = 166 against _silence_ 255 // 3 = 85.
    assert found == [Detection(2.25, "yes", 166)]


def test_run_recognizer_rejects_bad_setup():
    track = ScoreTrack(np.array([1000], np.int64), np.zeros((1, 4), np.uint8), 1.0)
    with pytest.raises(KwsError):
        run_recognizer(track, LABELS[:3])
    with pytest.raises(KwsError):
        run_recognizer(track, LABELS, {"detection_threshold": 2})
    with pytest.raises(KwsError):
        run_recognizer(track, LABELS, {"no_such_option": 1})


def test_host_and_device_score_conversion_agree():
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(5000), np.arange(258) / 256, [-0.1, 1.2, np.nan]])
    assert probs_to_scores(p).tolist() == device_recognizer.probs_to_scores(p.tolist())
    p32 = p.astype(np.float32)
    assert probs_to_scores(p32).tolist() == device_recognizer.probs_to_scores(p32.tolist())
    q = np.arange(-128, 128, dtype=np.int8)
    assert streaming.int8_to_scores(q).tolist() == device_recognizer.int8_to_scores(q.tolist())


# --- match ---------------------------------------------------------------------


def test_match_window_edges():
    events = [Event(10.0, 10.5, "yes")]
    assert match([Detection(10.0, "yes", 200)], events, 1.0, 3600).hits == 1  # at start
    assert match([Detection(11.5, "yes", 200)], events, 1.0, 3600).hits == 1  # at end + tolerance
    late = match([Detection(11.5001, "yes", 200)], events, 1.0, 3600)
    assert late.hits == 0 and late.false_accepts == 1 and late.false_rejects == 1
    early = match([Detection(9.999, "yes", 200)], events, 1.0, 3600)
    assert early.hits == 0 and early.false_accepts == 1
    assert early.fa_per_hour == pytest.approx(1.0) and early.frr == 1.0
    # Poisson 95 % upper bounds: 1 event in 1 h -> 4.74/h; 0 events in 2 h -> 1.50/h.
    assert early.fa_per_hour_upper95 == pytest.approx(4.744, abs=1e-3)
    assert match([], events, 1.0, 7200).fa_per_hour_upper95 == pytest.approx(2.996 / 2, abs=1e-3)


def test_match_wrong_label_duplicates_and_neighbours():
    events = [Event(10.0, 10.5, "yes"), Event(12.0, 12.5, "yes"), Event(20.0, 20.5, "no")]
    dets = [
        Detection(10.2, "yes", 200),  # hit event 0
        Detection(10.4, "yes", 200),  # window of event 0 (hit) only: duplicate
        Detection(12.1, "yes", 200),  # windows of 0 (hit) and 1 (free): hits event 1
        Detection(20.3, "yes", 200),  # wrong label: false accept, event 2 missed
    ]
    r = match(dets, events, 1.0, 1800)
    assert (r.hits, r.false_accepts, r.false_rejects, r.duplicates) == (2, 2, 1, 1)
    assert r.per_keyword == {
        "no": {"events": 1, "hits": 0, "misses": 1, "false_accepts": 0},
        "yes": {"events": 2, "hits": 2, "misses": 0, "false_accepts": 2},
    }
    assert r.fa_per_hour == pytest.approx(4.0)


def test_match_overlapping_windows_go_to_the_earliest_free_event():
    events = [Event(1.0, 1.5, "yes"), Event(2.0, 2.5, "yes")]
    # 2.2 is in both windows, 3.2 only in the second: 2.2 must go to the first.
    r = match([Detection(2.2, "yes", 200), Detection(3.2, "yes", 200)], events, 1.0, 10)
    assert r.hits == 2 and r.false_accepts == 0
    # order of detections in the input does not matter
    r2 = match([Detection(3.2, "yes", 200), Detection(2.2, "yes", 200)], events, 1.0, 10)
    assert r2.hits == 2


def test_match_counts_detections_on_unknown_words():
    distractors = [Event(5.0, 5.5, "_unknown_")]
    r = match([Detection(6.0, "yes", 200), Detection(8.0, "no", 200)], [], 1.0, 60, distractors)
    assert r.false_accepts == 2 and r.fa_on_distractors == 1
    assert r.n_events == 0 and r.frr == 0.0


def test_match_plain_tuples_and_default_duration():
    r = match([(3.0, "yes", 9)], [(2.0, 2.5, "yes"), (7.0, 7.5, "no")], 1.0)
    assert r.hits == 1 and r.false_rejects == 1 and r.duration_s == 7.5
    with pytest.raises(KwsError):
        match([], [], -1.0, 10)


# --- thresholds and plots ------------------------------------------------------------


def test_threshold_for_target_picks_fewest_misses_then_fewest_false_accepts():
    sweep = [(0.5, 3.0, 0.01), (0.6, 0.5, 0.05), (0.7, 0.2, 0.05), (0.8, 0.0, 0.2)]
    assert threshold_for_target(sweep, 0.5) == SweepPoint(0.7, 0.2, 0.05)
    assert threshold_for_target(sweep, 0.1) == SweepPoint(0.8, 0.0, 0.2)
    assert threshold_for_target(sweep, 10) == SweepPoint(0.5, 3.0, 0.01)


def test_plot_det_writes_a_png_atomically(tmp_path):
    sweep = [SweepPoint(t, fa, frr) for t, fa, frr in [(0.5, 12.0, 0.0), (0.7, 1.5, 0.05), (0.8, 0.3, 0.1), (0.9, 0.0, 0.4)]]
    path = plot_det(sweep, tmp_path / "plots" / "det.png", target_fa_per_hour=0.5, title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["det.png"]
    # all-zero false accepts still plots
    plot_det([SweepPoint(0.9, 0.0, 0.5)], tmp_path / "zero.png")
    with pytest.raises(KwsError):
        plot_det([], tmp_path / "none.png")


# --- real recordings and the project's front end ------------------------------------------

SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared/data/speech_commands"


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared Speech Commands data not present")
def test_real_clips_real_noise_and_the_project_front_end():
    from kws_kit.audio_io import load
    from kws_kit.frontend import Frontend

    keyword_clips = {w: [load(p) for p in sorted((SHARED / w).glob("*.wav"))[:8]] for w in ("yes", "no")}
    unknown = [load(p) for p in sorted((SHARED / "bed").glob("*.wav"))[:5]]
    noise = [load(p) for p in sorted((SHARED / "_background_noise_").glob("*.wav"))[:2]]
    stream = build_stream(keyword_clips, unknown, noise, 90, seed=0, snr_db=(5, 15))
    assert len(stream.events) >= 8 and stream.distractors
    assert all(5 - 1e-6 <= s <= 15 + 1e-6 for s in stream.event_snr_db)

    frontend = Frontend()
    seen = []

    def scorer(batch):
        seen.append(batch)
        return np.tile(np.array([[200, 55, 0, 0]], np.uint8), (len(batch), 1))

    track = score_stream(frontend.stream_features, scorer, stream)
    windows = np.concatenate(seen)
    assert windows.shape[1:] == frontend.spec.feature_shape
    # The window scored at time t is exactly the clip features of the second of audio before it.
    for i in (0, len(track.times_ms) // 2, len(track.times_ms) - 1):
        t = int(track.times_ms[i])
        last = (t * 16 - FRAME) // HOP
        start = (last - 48) * HOP
        clip = frontend.clip_features(stream.audio[start : start + SR])
        np.testing.assert_array_equal(windows[i], clip)
    result = evaluate(track, stream, LABELS)
    assert result.false_accepts == 0 and result.false_rejects == len(stream.events)


# --- the sweep's vectorised recogniser equals the device class -----------------------


def _adversarial_track(rng, n, n_classes, gaps=True):
    """Scores that hover around thresholds, tie between classes, and times with
    repeats and long gaps (windows that empty), so every latch / suppression /
    ring path of Recognizer.update is taken."""
    steps = rng.choice([0, 250, 250, 250, 100, 400, 1000, 5000] if gaps else [250], size=n)
    times = (np.cumsum(steps) + 500).astype(np.int64)
    base = rng.choice([0, 60, 120, 128, 129, 200, 255], size=(n, n_classes))
    bursts = rng.random(n) < 0.3
    base[bursts, rng.integers(0, n_classes, bursts.sum())] = rng.integers(150, 256, bursts.sum())
    ties = rng.random(n) < 0.05
    base[ties, 1] = base[ties, 2]
    return times, base.astype(np.uint8)


@pytest.mark.parametrize("params", [
    {},
    {"average_window_ms": 500, "suppression_ms": 0, "minimum_count": 1},
    {"average_window_ms": 2000, "max_results": 3, "minimum_count": 3, "suppression_ms": 700},
    {"average_window_ms": 1000, "max_results": 1, "minimum_count": 1, "ignore_labels": ()},
    {"average_window_ms": 250, "suppression_ms": 250, "ignore_labels": ("yes",)},
    {"average_window_ms": 750.5, "suppression_ms": 1499.5},
])
def test_vectorised_recogniser_equals_the_device_class(params):
    rng = np.random.default_rng(len(str(params)))
    for trial in range(6):
        times, scores = _adversarial_track(rng, 600, len(LABELS), gaps=trial % 3 != 2)
        track = ScoreTrack(times, scores, float(times[-1]) / 1000)
        for threshold in (0.0, 0.3, 0.47, 0.5, 0.5039, 0.7, 0.9, 1.0):
            p = {**params, "detection_threshold": threshold}
            rec = streaming._make_recognizer(LABELS, p)
            stats = streaming._WindowStats(rec, times, scores)
            fast = streaming._run_fast(rec, LABELS, stats)
            expected = run_recognizer(track, LABELS, p)  # Recognizer.update row by row
            assert fast == expected, (params, trial, threshold)
        assert len(expected) >= 0


def test_sweep_uses_equal_detections_and_falls_back_on_bad_tracks():
    rng = np.random.default_rng(11)
    times, scores = _adversarial_track(rng, 2000, len(LABELS))
    track = ScoreTrack(times, scores, float(times[-1]) / 1000)
    events = [(float(t) / 1000 - 0.3, float(t) / 1000, lab) for t, lab in
              zip(times[::40], [LABELS[2 + i % 2] for i in range(len(times[::40]))])]
    thresholds = np.linspace(0.2, 1.0, 17)
    sweep = sweep_thresholds(track, events, LABELS, {"suppression_ms": 600}, thresholds)
    seen_fa = set()
    for point in sweep:
        found = run_recognizer(track, LABELS, {"suppression_ms": 600, "detection_threshold": point.threshold})
        result = streaming.match(found, events, 1.0, track.duration_s)
        assert (point.fa_per_hour, point.frr) == (result.fa_per_hour, result.frr)
        seen_fa.add(result.false_accepts)
    assert len(seen_fa) > 3  # the thresholds really change the outcome
    # times that go back: the device class itself is run, and refuses
    bad = ScoreTrack(times[::-1].copy(), scores, 10.0)
    with pytest.raises((KwsError, ValueError)):
        sweep_thresholds(bad, events, LABELS, {}, [0.5])
