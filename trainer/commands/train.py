"""`kws-kit train`: curated dataset -> trained Keras model in a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        data: Path = typer.Option(..., "--data", help="Curated dataset folder (from `kws-kit data curate`)."),
        out: Path = typer.Option(..., "--out", help="Run folder to create (checkpoints, curves, history)."),
        model: str = typer.Option(
            "default", "--model", help="Zoo model name (`kws-kit models` lists them); 'default' = the recommended one."
        ),
        epochs: int = typer.Option(40, min=1, help="Maximum epochs (early stopping may end sooner)."),
        batch_size: int = typer.Option(32, min=1, help="Examples per training step."),
        learning_rate: float = typer.Option(3e-3, help="Initial learning rate (cosine decay)."),
        patience: int = typer.Option(10, min=1, help="Stop after this many epochs without validation improvement."),
        seed: int = typer.Option(0, help="Seed for weights, shuffling and augmentation: same seed, same run."),
        no_augment: bool = typer.Option(False, "--no-augment", help="Turn off noise/shift/gain/SpecAugment."),
        board: Optional[str] = typer.Option(None, help="Refuse models that will not fit this board (e.g. nucleo)."),
        resume: bool = typer.Option(False, help="Continue an interrupted run in --out."),
        overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
    ) -> None:
        """Train a keyword-spotting model on the features the device computes.

        Augmentation happens on the fly (background noise at random SNR, time shift, gain,
        SpecAugment masks); the best epoch on the validation split is kept as best.keras.
        Example: kws-kit train --data curated/ --out runs/go --model ds_cnn_s
        """
        from ..models import zoo
        from ..train import TrainConfig, train

        name = zoo.DEFAULT_MODEL if model == "default" else model
        cfg = TrainConfig(
            data=str(data.resolve()),
            model=name,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            seed=seed,
            augment=not no_augment,
            board=board,
        )
        train(cfg, out, resume=resume, overwrite=overwrite)

    @app.command("models")
    def models_cmd(
        board: Optional[str] = typer.Option(None, help="Show whether each model fits this board."),
        frames: int = typer.Option(49, help="Feature frames per inference."),
        coeffs: int = typer.Option(10, help="Coefficients per frame."),
        classes: int = typer.Option(6, help="Number of output classes."),
    ) -> None:
        """List the model zoo with parameters, MACs, int8 size and arena estimate."""
        from rich.console import Console
        from rich.table import Table

        from ..models import zoo

        profile = None
        if board:
            from ..boards import load_profile

            profile = load_profile(board)
        table = Table(title="kws-kit model zoo")
        for col in ("name", "params", "MACs", "int8 bytes", "arena bytes", "description"):
            table.add_column(col)
        if profile is not None:
            table.add_column(f"fits {board}")
        for name in zoo.model_names():
            d = zoo.describe(name, (frames, coeffs), classes)
            row = [
                name + (" (default)" if name == zoo.DEFAULT_MODEL else ""),
                str(d["params"]),
                str(d["macs"]),
                str(d["flash_bytes"]),
                str(d["arena_bytes"]),
                zoo.ZOO[name].description,
            ]
            if profile is not None:
                from ..budget import check_fits

                row.append("yes" if check_fits(d, profile).fits else "no")
            table.add_row(*row)
        Console().print(table)
