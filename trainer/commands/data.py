"""`kws-kit data ...`: getting audio and curating datasets."""

import typer

data_app = typer.Typer(help="Get audio (Speech Commands, your recordings, synthetic speech) and curate datasets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
