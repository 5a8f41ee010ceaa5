"""Benchmark: curating with materialised WAVs vs a plain per-file librosa loop.

Both sides produce the same examples (the plain loop follows the manifest that
kws-kit wrote: same clips, shifts, gains, noise segments and SNRs):

- kws-kit: ``kws-kit data curate ... --materialize`` end to end (scan, plan,
  render with noise decoded once per process, vectorised mixing, direct int16
  WAV writing, 2 worker processes);
- plain: for each example ``librosa.load(clip, sr=16000)``, ``librosa.load(noise,
  sr=16000)``, mix with numpy, ``soundfile.write`` - what a straightforward
  script does.

Input: the shared Speech Commands copy (../shared/data/speech_commands) when
present, else generated audio. Usage:

    python bench/bench_curate.py [--source DIR | --generated] [--rounds 5] [--out-dir DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KWS_NO_PROGRESS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared/data/speech_commands"
COMMAND_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def generated_source(root: Path) -> Path:
    """A Speech-Commands-like folder: 12 words x 60 speakers, plus three 60 s noise files."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    words = COMMAND_WORDS + ["cat", "dog"]
    t = np.arange(16000) / 16000
    for w_index, word in enumerate(words):
        (root / word).mkdir(parents=True)
        for s in range(60):
            f0 = 120 + 15 * w_index + rng.uniform(-5, 5)
            x = 0.2 * np.sin(2 * np.pi * f0 * t) * np.hanning(16000) + rng.normal(0, 0.003, 16000)
            sf.write(str(root / word / f"spk{s:03d}_nohash_0.wav"), x.astype(np.float32), 16000, subtype="PCM_16")
    (root / "_background_noise_").mkdir()
    for k in range(3):
        sf.write(str(root / "_background_noise_" / f"noise{k}.wav"),
                 (0.1 * rng.standard_normal(60 * 16000)).astype(np.float32), 16000, subtype="PCM_16")
    return root


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pools)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def file_creation_ms(folder: Path, count: int = 1000) -> float:
    """Kernel CPU time to create one 32 kB file here: a floor that every materialising approach pays."""
    import resource

    folder.mkdir()
    data = b"\0" * 32044
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(count):
        fd = os.open(folder / f"{i}.wav", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return 1000 * (after.ru_stime - before.ru_stime + after.ru_utime - before.ru_utime) / count


def plain_loop(rows, out_dir: Path) -> float:
    """The straightforward per-file script; returns seconds taken."""
    import librosa
    import soundfile as sf

    start = time.perf_counter()
    for row in rows:
        if row.path:
            y, _ = librosa.load(row.path, sr=16000, offset=row.offset_s, duration=row.duration_s)
            if len(y) < 16000:
                pad = 16000 - len(y)
                y = np.pad(y, (pad // 2, pad - pad // 2))
            else:
                a = (len(y) - 16000) // 2
                y = y[a : a + 16000]
            y = np.roll(y, row.shift_samples)
            if row.shift_samples > 0:
                y[: row.shift_samples] = 0
            elif row.shift_samples < 0:
                y[row.shift_samples :] = 0
            y = y * 10 ** (row.gain_db / 20)
        else:
            y = np.zeros(16000, dtype=np.float32)
        if row.noise_path:
            noise, _ = librosa.load(row.noise_path, sr=16000)
            a = int(round(row.noise_offset_s * 16000))
            segment = noise[a : a + 16000]
            if len(segment) < 16000:  # a noise file shorter than a second: repeat it
                segment = np.resize(np.concatenate([segment, noise]), 16000)
            if row.snr_db is None:
                y = segment * 10 ** (row.gain_db / 20)
            else:
                rms_y = np.sqrt(np.mean(y**2))
                rms_n = np.sqrt(np.mean(segment**2)) + 1e-12
                y = y + segment * (rms_y / (rms_n * 10 ** (row.snr_db / 20)))
        sf.write(str(out_dir / f"{row.id}.wav"), np.clip(y, -1, 1), 16000, subtype="PCM_16")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None, help="Speech-Commands-style folder (default: shared copy, else generated)")
    parser.add_argument("--generated", action="store_true", help="use generated audio even if the shared copy exists")
    parser.add_argument("--keywords", default=",".join(COMMAND_WORDS))
    parser.add_argument("--plain-limit", type=int, default=400, help="examples timed for the plain loop (a seeded random sample)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of (kws-kit, plain loop), run back to back so both see the same machine state")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where both sides write their WAVs (default: the system temp folder)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from kws_kit.data.curate import CurateOptions, curate, load_curated, render_many

    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_curate.", dir=args.out_dir))
    try:
        if args.source is not None:
            source, what = args.source, str(args.source)
        elif (SHARED / "README.md").is_file() and not args.generated:
            source, what = SHARED, f"shared Speech Commands ({SHARED})"
        else:
            source, what = generated_source(work / "generated"), "generated audio (12 words x 60 speakers)"
        keywords = [k for k in args.keywords.split(",") if k]

        def run_kws_kit(out: Path) -> tuple[float, float]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            curate(CurateOptions(keywords=keywords, sources=[str(source)], out=str(out), materialize=True,
                                 workers=args.workers, seed=0))
            return time.perf_counter() - t0, cpu_seconds() - c0

        def run_kws_kit_in_memory(out: Path) -> float:
            """kws-kit's default path, what `kws-kit train` does: curate (manifest only), then render in memory."""
            t0 = time.perf_counter()
            curate(CurateOptions(keywords=keywords, sources=[str(source)], out=str(out), seed=0))
            render_many(load_curated(out).rows, workers=args.workers)
            return time.perf_counter() - t0

        load_before = os.getloadavg()[0]
        run_kws_kit(work / "warm-up-curated")  # page cache and imports, as for the plain loop's warm-up below
        ds = load_curated(work / "warm-up-curated")
        rows = ds.rows
        rng = np.random.default_rng(0)
        sample = [rows[i] for i in sorted(rng.choice(len(rows), size=min(args.plain_limit, len(rows)), replace=False))]
        warm = work / "warm-up-plain"
        warm.mkdir()
        plain_loop(sample[:5], warm)  # librosa's import and first-call JIT compilation are not charged to the loop

        results = []  # per round: kws-kit s, kws-kit CPU s, plain s, plain CPU s, file creation ms, in-memory s
        for r in range(args.rounds):
            ours_s, ours_cpu = run_kws_kit(work / f"curated{r}")
            in_memory_s = run_kws_kit_in_memory(work / f"manifest{r}")
            plain_out = work / f"plain{r}"
            plain_out.mkdir()
            c0 = cpu_seconds()
            plain_s = plain_loop(sample, plain_out)
            plain_cpu = cpu_seconds() - c0
            results.append((ours_s, ours_cpu, plain_s, plain_cpu, file_creation_ms(work / f"creation{r}"), in_memory_s))

        batch = render_many(rows, workers=args.workers)

        import soundfile as sf

        index = {r.id: i for i, r in enumerate(rows)}
        plain_out = work / f"plain{args.rounds - 1}"
        diffs = [np.max(np.abs(sf.read(str(plain_out / f"{r.id}.wav"), dtype="float32")[0] - batch[index[r.id]]))
                 for r in sample[:50]]
        print(f"input: {what}")
        print(f"examples: {len(rows)} ({len(keywords)} keywords + _unknown_ + _silence_), noise in "
              f"{sum(r.snr_db is not None for r in rows)} of {sum(r.label != '_silence_' for r in rows)} speech examples")
        print(f"kws-kit: curate --materialize with {args.workers} workers, end to end (scan, plan, render, write, report)")
        print(f"plain:   librosa.load + mix + soundfile.write, one process, {len(sample)} of the same examples")
        print("in memory: kws-kit curate (manifest) + render_many, what `kws-kit train` does; no WAV files")
        ratios, cpu_ratios, memory_ratios = [], [], []
        for r, (ours_s, ours_cpu, plain_s, plain_cpu, create_ms, in_memory_s) in enumerate(results):
            ours, plain, in_memory_rate = len(rows) / ours_s, len(sample) / plain_s, len(rows) / in_memory_s
            cpu_ratio = (plain_cpu / len(sample)) / (ours_cpu / len(rows))
            ratios.append(ours / plain)
            cpu_ratios.append(cpu_ratio)
            memory_ratios.append(in_memory_rate / plain)
            print(f"round {r + 1}: kws-kit {ours:6.0f} examples/s ({1000 * ours_cpu / len(rows):.2f} ms CPU each), "
                  f"plain {plain:5.0f} examples/s ({1000 * plain_cpu / len(sample):.2f} ms CPU each) -> "
                  f"{ours / plain:4.1f}x wall-clock, {cpu_ratio:4.1f}x CPU; creating a 32 kB file: {create_ms:.2f} ms CPU; "
                  f"in memory {in_memory_rate:5.0f} examples/s -> {in_memory_rate / plain:4.1f}x")
        print(f"speed-up over {args.rounds} rounds, both writing WAVs: median {np.median(ratios):.1f}x "
              f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x) wall-clock; median {np.median(cpu_ratios):.1f}x CPU time")
        print(f"speed-up of the in-memory path: median {np.median(memory_ratios):.1f}x "
              f"(min {min(memory_ratios):.1f}x, max {max(memory_ratios):.1f}x)")
        creation = float(np.median([r[4] for r in results]))
        if creation > 0.1:
            print(f"note: creating a file costs {creation:.2f} ms of CPU here, several times the usual ~0.03 ms (on this "
                  "VM's ext4 the kernel's inode allocator spends it skipping recently deleted inodes, after mass "
                  "deletions such as a test run). Both sides pay it once per example written.")
        print(f"max |difference| of 50 plain vs kws-kit examples: {max(diffs):.5f}")
        print(f"output folder: {work.parent}; cpu cores: {os.cpu_count()}; "
              f"load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
