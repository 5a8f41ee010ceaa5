"""The kws-kit model zoo (see zoo.py and docs/models.md)."""

from .zoo import (
    DEFAULT_INPUT_SHAPE,
    DEFAULT_MODEL,
    DEFAULT_N_CLASSES,
    ZOO,
    ModelEntry,
    build,
    count_macs,
    describe,
    get_entry,
    model_names,
    ranked_names,
)

__all__ = [
    "DEFAULT_INPUT_SHAPE", "DEFAULT_MODEL", "DEFAULT_N_CLASSES", "ZOO", "ModelEntry", "build", "count_macs",
    "describe", "get_entry", "model_names", "ranked_names",
]
