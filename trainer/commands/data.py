"""`kws-kit data ...`: getting audio and curating datasets."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

data_app = typer.Typer(
    help=(
        "Get audio (Speech Commands, your recordings, synthetic speech) and curate datasets.\n\n"
        "Example: kws-kit data synth --words go,stop --count 200 --dest data/synth && "
        "kws-kit data curate --keywords go,stop --source data/synth --out data/go_stop"
    ),
    no_args_is_help=True,
)

SPLIT_HELP = (
    "How clips are split by speaker: 'official' uses validation_list.txt/testing_list.txt, 'speaker-hash' a stable "
    "hash of the speaker id, 'auto' the official lists when they give a usable split, else the hash."
)


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


@data_app.command("fetch")
def fetch(
    dataset: str = typer.Argument(..., help="Dataset to fetch: speech-commands."),
    dest: Path = typer.Option(..., "--dest", help="Folder to create with the extracted dataset."),
    version: str = typer.Option("0.02", "--version", help="Speech Commands release: 0.02 or 0.01."),
    from_archive: Optional[Path] = typer.Option(None, "--from-archive", help="Use an already downloaded .tar.gz instead of downloading."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this URL (a mirror) instead of the official one."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected SHA-256 of the archive (the official URL has a built-in one)."),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep the downloaded .tar.gz after extracting."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DEST if it exists (only once the new copy is complete)."),
) -> None:
    """Download Speech Commands (resumable, checksum-verified) and extract it safely.

    An interrupted download continues where it stopped when you run the same command again.
    Archives with absolute paths, '..' or links are refused; DEST appears only when complete.
    Example: kws-kit data fetch speech-commands --dest data/speech_commands
    Example: kws-kit data fetch speech-commands --dest data/sc --from-archive speech_commands_v0.02.tar.gz
    """
    from ..data import speech_commands
    from ..errors import KwsError

    if dataset.lower().replace("_", "-") not in ("speech-commands", "speechcommands"):
        raise KwsError(f"unknown dataset {dataset!r}", hint="available: speech-commands")
    speech_commands.fetch(
        dest,
        version=version.lstrip("v"),
        url=url,
        from_archive=from_archive,
        sha256=sha256,
        keep_archive=keep_archive,
        overwrite=overwrite,
    )


@data_app.command("record")
def record(
    word: str = typer.Option(..., "--word", help="The word you will say, e.g. house."),
    count: int = typer.Option(50, "--count", help="How many takes to record."),
    dest: Path = typer.Option(..., "--dest", help="Recordings folder; takes go to DEST/<word>/."),
    speaker: Optional[str] = typer.Option(None, "--speaker", help="Your speaker name (default: your login name)."),
    seconds: float = typer.Option(1.5, "--seconds", help="Length of each take; the word is cut out of it."),
) -> None:
    """Record takes from the microphone as <speaker>_nohash_<n>.wav (16 kHz mono, 1 s).

    Press Enter before each take (q + Enter stops); a level meter shows while recording,
    silent takes are asked again, numbering continues after files already there.
    Needs sounddevice and PortAudio (pip install "kws-kit[mic]").
    Example: kws-kit data record --word house --count 50 --dest data/mine --speaker anna
    """
    from ..data import own

    written = own.record_takes(word, count, dest, speaker=speaker, seconds=seconds)
    typer.echo(f"recorded {len(written)} takes into {Path(dest) / word.strip().lower()}")


@data_app.command("synth")
def synth(
    words: str = typer.Option(..., "--words", help="Comma-separated words, e.g. go,stop."),
    count: int = typer.Option(100, "--count", help="Clips per word."),
    dest: Path = typer.Option(..., "--dest", help="Synth cache folder (created; re-running adds only what is missing)."),
    seed: int = typer.Option(0, "--seed", help="Seed for voice order, rate and pitch."),
    voices: Optional[str] = typer.Option(None, "--voices", help="Comma-separated espeak voices (default: 8 English accents + 8 other languages)."),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated espeak variants, e.g. m3,f2 ('none' for the plain voice)."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Also write generated white/pink/brown noise to _background_noise_/."),
) -> None:
    """Synthesise keywords with espeak-ng in many voices (cached as WAV).

    Each voice x variant is one speaker; re-running with a higher --count or more words
    only adds the missing clips (existing ones are kept).
    Example: kws-kit data synth --words go,stop,up,down --count 200 --dest data/synth
    """
    from ..data import synth as synth_mod

    variant_list = None
    if variants is not None:
        variant_list = ["" if v.lower() == "none" else v for v in _words(variants)]
    added = synth_mod.synthesize(
        _words(words),
        count,
        dest,
        seed=seed,
        voices=_words(voices) if voices else None,
        variants=variant_list,
        noise=noise,
    )
    typer.echo(
        f"{sum(added.values())} new clips in {dest} ("
        + ", ".join(f"{w}: +{n}" for w, n in added.items())
        + "); existing clips were kept"
    )


@data_app.command("curate")
def curate(
    keywords: str = typer.Option(..., "--keywords", help="Comma-separated keywords, in model output order."),
    source: List[Path] = typer.Option(..., "--source", help="Source folder (Speech Commands, synth cache or own recordings); repeatable."),
    out: Path = typer.Option(..., "--out", help="Output folder for the curated dataset."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and augmentation."),
    unknown_share: float = typer.Option(1.0, "--unknown-share", help="_unknown_ size as a multiple of an average keyword class."),
    silence_share: float = typer.Option(1.0, "--silence-share", help="_silence_ size as a multiple of an average keyword class."),
    snr_db: str = typer.Option("0,20", "--snr-db", help="SNR range in dB for mixed-in noise, e.g. 0,20."),
    noise_prob: float = typer.Option(0.8, "--noise-prob", help="Probability that a speech example gets background noise."),
    gain_db: str = typer.Option("-6,3", "--gain-db", help="Random speech gain range in dB."),
    noise: List[Path] = typer.Option([], "--noise", help="Extra folder of background-noise recordings; repeatable."),
    materialize: bool = typer.Option(False, "--materialize", help="Also write the rendered 1 s WAVs under wav/<split>/<label>/."),
    max_per_class: Optional[int] = typer.Option(None, "--max-per-class", help="Cap on examples per class (split proportions kept)."),
    split_by: str = typer.Option("auto", "--split-by", help=SPLIT_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists (only once the new one is complete)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes for --materialize (default: up to 2)."),
) -> None:
    """Build a speaker-disjoint dataset: manifest.csv, dataset.json, report.md (+ WAVs with --materialize).

    Classes: _silence_, _unknown_ (all other words), then the keywords. Same inputs and
    seed give the same manifest; an existing --out is replaced only with --overwrite.
    Example: kws-kit data curate --keywords go,stop --source data/speech_commands --source data/synth --out data/go_stop
    """
    from ..data import curate as curate_mod

    opts = curate_mod.CurateOptions(
        keywords=_words(keywords),
        sources=[str(s) for s in source],
        out=str(out),
        seed=seed,
        unknown_share=unknown_share,
        silence_share=silence_share,
        snr_db=curate_mod.parse_range(snr_db, "--snr-db"),
        noise_prob=noise_prob,
        gain_db=curate_mod.parse_range(gain_db, "--gain-db"),
        noise_dirs=[str(n) for n in noise],
        materialize=materialize,
        max_per_class=max_per_class,
        split_by=split_by,
        overwrite=overwrite,
        workers=workers,
    )
    curate_mod.curate(opts)


@data_app.command("scan")
def scan(
    source: List[Path] = typer.Option(..., "--source", help="Source folder; repeatable."),
    split_by: str = typer.Option("auto", "--split-by", help=SPLIT_HELP),
) -> None:
    """Show what curation would find: words, speakers per split, noise files, rejected files.

    Writes nothing. Example: kws-kit data scan --source data/speech_commands
    """
    from collections import Counter

    from ..data.common import SPLITS
    from ..data.scan import scan as scan_folders

    result = scan_folders([str(s) for s in source], split_by)
    for info in result.sources:
        typer.echo(f"{info.path}: {info.kind}, {sum(info.words.values())} clips, {info.noise_files} noise files, "
                   f"{info.rejected} rejected, split: {info.split_method or '-'}")
    clips_per_split = Counter(c.split for c in result.clips)
    speakers = {s: len({c.speaker for c in result.clips if c.split == s}) for s in SPLITS}
    typer.echo("clips per split: " + ", ".join(f"{s} {clips_per_split[s]} ({speakers[s]} speakers)" for s in SPLITS))
    typer.echo("words: " + ", ".join(f"{w} ({n})" for w, n in result.words.items()))
    for r in result.rejected[:20]:
        typer.echo(f"rejected {r.path}: {r.reason}")
    if len(result.rejected) > 20:
        typer.echo(f"... and {len(result.rejected) - 20} more rejected files")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
