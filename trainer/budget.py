"""Does a model fit a board? Memory budgets from the board profiles.

A board's ``budget`` block (see boards/README.md) gives the heap the keyword
spotter may use and fixed estimates for the runtime (imported device code) and
the audio/feature buffers. The runtime costs ``runtime_bytes`` when ``kwsrt`` is
frozen into the firmware and ``runtime_files_bytes`` when it is imported from
the filesystem (measured in docs/runtime.md); which one applies is the
profile's ``frozen_runtime`` unless the caller knows better (deploy's probe of
the connected board). A model fits when

    runtime + buffers + model bytes (if loaded into the heap) + arena <= heap budget

(arena: the larger of kws-kit's estimate and TFLite Micro's own figure, see
``kws_kit.tflite_info``)

and its file fits the board's filesystem. Multiply-accumulates over the board's
``max_macs_per_inference`` only warn (the model runs, maybe not in real time),
but ``pick_model`` skips such models.
"""

from __future__ import annotations

import dataclasses

from .errors import ModelError


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


@dataclasses.dataclass
class BudgetReport:
    board: str
    model_bytes: int
    arena_bytes: int
    runtime_bytes: int
    buffer_bytes: int
    budget_bytes: int
    model_in_heap: bool
    filesystem_bytes: int | None
    macs: int | None
    max_macs: int | None
    warnings: list[str] = dataclasses.field(default_factory=list)
    runtime_frozen: bool = False

    @property
    def total_bytes(self) -> int:
        return self.runtime_bytes + self.buffer_bytes + self.arena_bytes + (self.model_bytes if self.model_in_heap else 0)

    @property
    def over_by_bytes(self) -> int:
        return max(0, self.total_bytes - self.budget_bytes)

    @property
    def headroom_bytes(self) -> int:
        return max(0, self.budget_bytes - self.total_bytes)

    @property
    def fits_filesystem(self) -> bool:
        return self.filesystem_bytes is None or self.model_bytes <= self.filesystem_bytes

    @property
    def fits(self) -> bool:
        return self.over_by_bytes == 0 and self.fits_filesystem

    @property
    def fast_enough(self) -> bool:
        return self.macs is None or self.max_macs is None or self.macs <= self.max_macs

    @property
    def runtime_kind(self) -> str:
        return "frozen" if self.runtime_frozen else "from files"

    def summary(self) -> str:
        parts = (f"model {_kb(self.model_bytes)}{'' if self.model_in_heap else ' (not in heap)'} + "
                 f"arena {_kb(self.arena_bytes)} + runtime {_kb(self.runtime_bytes)} ({self.runtime_kind}) + "
                 f"buffers {_kb(self.buffer_bytes)} = {_kb(self.total_bytes)} of {_kb(self.budget_bytes)}")
        if self.over_by_bytes:
            text = f"does not fit {self.board}: {parts}, over by {self.over_by_bytes} bytes ({_kb(self.over_by_bytes)})"
        else:
            text = f"fits {self.board}: {parts}, {_kb(self.headroom_bytes)} to spare"
        if not self.fits_filesystem:
            text += f"; the model file is larger than the {_kb(self.filesystem_bytes)} filesystem"
        for w in self.warnings:
            text += f"; {w}"
        return text


def _profile(profile) -> dict:
    if isinstance(profile, str):
        from kws_kit.boards import load_profile

        return load_profile(profile)
    return profile


def runtime_cost(profile, frozen_runtime: bool | None = None) -> tuple[int, bool]:
    """(heap bytes of the runtime, frozen?) for a profile; ``frozen_runtime=None``: the profile's default."""
    profile = _profile(profile)
    budget = profile["budget"]
    frozen = bool(profile.get("frozen_runtime", False)) if frozen_runtime is None else bool(frozen_runtime)
    if frozen:
        return int(budget["runtime_bytes"]), True
    return int(budget.get("runtime_files_bytes", budget["runtime_bytes"])), False


def uses_kws_engine(profile) -> bool:
    """Whether the board runs models through the ``kws`` C module (its arena layout applies)."""
    return _profile(profile).get("runner") == "kws"


def arena_for_board(info, profile) -> int:
    """The tensor arena a board allocates for a model (a TfliteInfo): the ``kws`` C module's own
    need where the board runs it (structs, per-channel constants and kernel scratch on top of the
    activations: more than TFLite Micro's), else the larger of the estimate and TFLite Micro's."""
    if uses_kws_engine(profile):
        return int(info.kws_arena_bytes(4))
    return int(info.budget_arena_bytes)


def model_costs(model, profile=None) -> dict:
    """Bytes, arena, MACs, input shape and classes of a TfliteInfo or a zoo ``describe()`` dict.

    With ``profile``, the arena is what that board's engine allocates (:func:`arena_for_board`).
    """
    kws = profile is not None and uses_kws_engine(profile)
    if isinstance(model, dict):
        try:
            arena = max(int(model["arena_bytes"]), int(model.get("tflm_arena_bytes") or 0))
            if kws and model.get("kws_arena_bytes"):
                arena = int(model["kws_arena_bytes"])
            costs = {"model_bytes": int(model["flash_bytes"] if "flash_bytes" in model else model["size_bytes"]),
                     "arena_bytes": arena,
                     "macs": model.get("macs"),
                     "input_shape": tuple(model.get("input_shape") or ()), "n_classes": model.get("n_classes"),
                     "name": model.get("name")}
        except KeyError as exc:
            raise ModelError(f"model description lacks {exc.args[0]!r}") from None
        return costs
    try:
        shape = tuple(model.input_shape)
        arena = arena_for_board(model, profile) if profile is not None else int(model.budget_arena_bytes)
        return {"model_bytes": int(model.size_bytes), "arena_bytes": arena, "macs": model.macs,
                "input_shape": shape[1:3] if len(shape) >= 3 else shape, "n_classes": int(model.output_shape[-1]),
                "name": None}
    except AttributeError:
        raise ModelError(f"cannot read sizes from a {type(model).__name__}; pass inspect_tflite() or describe() output") from None


def check_fits(model, profile, frozen_runtime: bool | None = None) -> BudgetReport:
    """Compare a model (TfliteInfo or describe() dict) with a board profile (dict or board name).

    ``frozen_runtime``: whether the board's firmware has ``kwsrt`` frozen in (None: the profile's default).
    """
    profile = _profile(profile)
    costs = model_costs(model, profile)
    budget = profile["budget"]
    runtime, frozen = runtime_cost(profile, frozen_runtime)
    report = BudgetReport(
        board=profile["name"], model_bytes=costs["model_bytes"], arena_bytes=costs["arena_bytes"],
        runtime_bytes=runtime, buffer_bytes=int(budget["buffer_bytes"]), runtime_frozen=frozen,
        budget_bytes=int(budget["heap_budget_bytes"]), model_in_heap=bool(budget.get("model_in_heap", True)),
        filesystem_bytes=profile.get("filesystem_bytes"),
        macs=int(costs["macs"]) if costs["macs"] is not None else None,
        max_macs=budget.get("max_macs_per_inference"),
    )
    if not report.fast_enough:
        report.warnings.append(f"{report.macs / 1e6:.1f} M MACs per inference is over the board's "
                               f"{report.max_macs / 1e6:.1f} M real-time estimate")
    return report


def pick_model(profile, input_shape=(49, 10), n_classes: int = 12, frozen_runtime: bool | None = None) -> str:
    """The highest-ranked zoo model (docs/models.md) that fits the board and is fast enough for it."""
    from kws_kit.models import zoo

    profile = _profile(profile)
    budget = profile["budget"]
    fixed = runtime_cost(profile, frozen_runtime)[0] + int(budget["buffer_bytes"])
    tried = []
    for name in zoo.ranked_names():
        # int8 weights alone are a lower bound on the file: skip hopeless models without converting them.
        params = zoo.build(name, input_shape, n_classes).count_params()
        if budget.get("model_in_heap", True) and fixed + params > int(budget["heap_budget_bytes"]):
            tried.append(name)
            continue
        report = check_fits(zoo.describe(name, input_shape, n_classes), profile, frozen_runtime)
        if report.fits and report.fast_enough:
            return name
        tried.append(name)
    raise ModelError(f"no zoo model fits {profile['name']} (tried {', '.join(tried)})",
                     hint="use fewer MFCC frames/coefficients or a board with more memory")


def ensure_fits(model, profile, model_name: str | None = None, frozen_runtime: bool | None = None) -> BudgetReport:
    """``check_fits`` that raises ModelError (with how much is over and a smaller zoo model) when it does not fit."""
    profile = _profile(profile)
    report = check_fits(model, profile, frozen_runtime)
    if report.fits:
        return report
    costs = model_costs(model, profile)
    label = model_name or costs.get("name") or "the model"
    hint = None
    if report.over_by_bytes and not report.runtime_frozen and check_fits(model, profile, True).fits:
        hint = (f"it fits with the runtime frozen into the firmware: kws-kit firmware build --board {profile['name']} "
                f"(then kws-kit firmware flash)")
    elif len(costs["input_shape"]) == 2 and costs["n_classes"]:
        try:
            hint = f"try the smaller zoo model {pick_model(profile, costs['input_shape'], costs['n_classes'], frozen_runtime)!r}"
        except ModelError:
            hint = "no zoo model fits this board with this input shape"
    problem = (f"over by {report.over_by_bytes} bytes ({_kb(report.over_by_bytes)}): "
               f"model {_kb(report.model_bytes)} + arena {_kb(report.arena_bytes)} + runtime "
               f"{_kb(report.runtime_bytes)} ({report.runtime_kind}) + buffers {_kb(report.buffer_bytes)} > {_kb(report.budget_bytes)}"
               if report.over_by_bytes else
               f"the {_kb(report.model_bytes)} model file is larger than the {_kb(report.filesystem_bytes or 0)} filesystem")
    raise ModelError(f"{label} does not fit {profile['name']}: {problem}", hint=hint)
