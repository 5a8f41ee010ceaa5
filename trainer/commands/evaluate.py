"""`kws-kit eval`: clip accuracy and streaming false accepts per hour for a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        bundle: Path = typer.Argument(..., help="Model bundle folder (from `kws-kit export`)."),
        data: Path = typer.Option(
            ..., "--data", help="A curated dataset (its test split is used) or any folder of <word>/*.wav speech."
        ),
        out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: BUNDLE/eval)."),
        split: str = typer.Option("test", help="Split of a curated dataset to evaluate."),
        stream_minutes: float = typer.Option(60.0, min=0, help="Length of the synthetic test stream; 0 skips it."),
        target_fa: float = typer.Option(0.5, help="False accepts per hour to find a threshold for."),
        seed: int = typer.Option(0, help="Seed for building the stream."),
        overwrite: bool = typer.Option(True, help="Replace an existing report folder."),
    ) -> None:
        """Evaluate honestly: int8 vs float clip accuracy, per-class F1, confusion matrix PNG,
        then false accepts per hour and false-reject rate on a long stream, with a DET curve PNG."""
        from ..evaluate import evaluate

        evaluate(
            bundle,
            data,
            out or (bundle / "eval"),
            split=split,
            stream_minutes=stream_minutes,
            target_fa_per_hour=target_fa,
            seed=seed,
            overwrite=overwrite,
        )
