"""`kws-kit demo`: the README's main job, on a built-in default."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("kws-demo"), "--out", help="Folder for everything the demo makes."),
        keywords: str = typer.Option("go,stop", help="Comma-separated keywords to synthesise and learn."),
        clips_per_word: int = typer.Option(120, min=10, help="Synthetic clips per keyword."),
        epochs: int = typer.Option(40, min=1, help="Training epochs (the best epoch on validation is kept)."),
        model: str = typer.Option("default", help="Zoo model to train."),
        stream_minutes: float = typer.Option(10.0, min=0, help="Length of the evaluation stream."),
        seed: int = typer.Option(0, help="Seed for everything."),
    ) -> None:
        """Run the whole pipeline on synthetic speech: no download, no hardware, a few minutes.

        Synthesises the keywords in many espeak-ng voices, curates a speaker-disjoint dataset,
        trains, exports an int8 bundle, and evaluates clip accuracy and false accepts per hour.
        """
        from ..demo import run_demo

        words = [w.strip().lower() for w in keywords.split(",") if w.strip()]
        run_demo(out, words, clips_per_word=clips_per_word, epochs=epochs, model=model, stream_minutes=stream_minutes, seed=seed)
