"""`kws-kit export`: run folder -> int8 TFLite model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        run: Path = typer.Argument(..., help="Run folder made by `kws-kit train`."),
        out: Optional[Path] = typer.Option(None, "--out", help="Bundle folder to create (default: RUN/bundle)."),
        representative: int = typer.Option(
            400, min=1, help="Training examples used to calibrate int8 ranges (at least 50)."
        ),
        overwrite: bool = typer.Option(False, help="Replace an existing bundle folder (only once the new one is complete)."),
    ) -> None:
        """Quantise the best checkpoint to a full-int8 TFLite model and write a bundle.

        The bundle (model.tflite, labels.txt, frontend.json, recognizer.json, metadata.json,
        MODEL_CARD.md) is what `kws-kit deploy`, `simulate` and `listen` use on every board.
        """
        from ..export import export

        export(run, out or (run / "bundle"), representative=representative, overwrite=overwrite)
