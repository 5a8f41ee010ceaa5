"""Deploy a model bundle and the device runtime to a MicroPython board.

What lands on the board (``ROOT`` is the folder the board boots from: ``/`` on
the ESP32-S3 and the virtual board, ``/flash`` on the Nucleo and OpenMV; the
probe reads it from the board's working directory)::

    ROOT/main.py             device/main.py
    ROOT/lib/kwsrt/*.py      device/kwsrt/*.py  (not when the firmware has this runtime frozen in)
    ROOT/model/<DEVICE_FILES>  model.tflite, labels.txt, frontend.json, recognizer.json
    ROOT/model/config.json     generated here (board profile + --on actions + chosen runner)

Order of work, so nothing is copied that cannot run:

1. the budget check (``budget.ensure_fits``) - before any board is touched;
2. connect, undo a previous deploy that died half-way (see below), probe the
   firmware (MicroPython version, ``ulab`` / ``kws`` / ``ml``, free space);
3. compare digests computed on the board with the host's: only changed files move;
4. upload each changed file to ``path.new`` and check its digest on the board;
5. commit: one script on the board writes a journal listing the files, renames
   ``path -> path.bak`` and ``path.new -> path`` for each, deletes the journal
   (the commit point) and then the ``.bak`` files.

A failure in 1-4 leaves the old files untouched (stray ``.new`` files are
removed now or on the next deploy). A reset or power cut during 5 leaves the
journal: the next deploy's first step puts every ``.bak`` back, so the board
ends up with the complete previous set, never a mix.

Frozen runtime: firmware made by ``kws-kit firmware build`` has ``kwsrt`` frozen
in, with ``kwsrt._build.DIGEST`` = ``runtime_digest()`` of the runtime it froze.
The probe imports that with ``sys.path`` set to ``['.frozen']`` alone. When it
equals this kws-kit's digest, the runtime is not copied (only main.py, the bundle
and config.json), the budget counts the frozen runtime's smaller heap cost, and
a ``ROOT/lib/kwsrt`` left by an earlier deploy is deleted after the commit: on
the stock ports '.frozen' comes before the lib folder in ``sys.path`` (stm32:
'', '.frozen', '/flash', '/flash/lib'; esp32: '', '.frozen', '/lib'), so such a
copy is never imported and only takes filesystem space; where a board's
``sys.path`` puts the lib folder first it would shadow the frozen runtime, which
the deletion also prevents. A frozen runtime with another digest (firmware from
another kws-kit version) is refused, since copying files cannot override it.

``force=True`` deploys even when the firmware lacks the modules the runtime
needs (used for the plain MicroPython unix port behind ``kws-kit board
emulate`` in tests; the loop will report an ``err`` event on such a board).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from importlib import resources
from pathlib import Path

from .bundle import DEVICE_FILES, load_bundle
from .errors import BoardError, ModelError

JOURNAL = ".kws_deploy"
MIN_MICROPYTHON = (1, 20)
# Leave this much of the filesystem free (littlefs/FAT metadata, the journal).
FS_MARGIN_BYTES = 4096

RUNNER_FEATURE = {"kws": "kws", "openmv_ml": "ml", "ml": "ml", "ulab": "ulab"}
ACTIONS = ("led", "print", "pin")


@dataclasses.dataclass
class DeployFile:
    path: str          # absolute path on the board
    data: bytes
    kind: str          # runtime | model | config

    @property
    def size(self) -> int:
        return len(self.data)


@dataclasses.dataclass
class DeployPlan:
    profile: dict
    bundle_path: Path
    root: str
    files: list[DeployFile]
    budget: object          # kws_kit.budget.BudgetReport
    config: dict
    labels: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> DeployFile:
        return next(f for f in self.files if f.path == path)


@dataclasses.dataclass
class DeployResult:
    plan: DeployPlan
    port: str | None
    copied: list[str]
    unchanged: list[str]
    bytes_copied: int
    seconds: float
    runner: str | None
    frontend: str | None
    warnings: list[str]
    restored: int = 0       # files put back from an interrupted earlier deploy
    runtime: str = "files"  # "frozen": the firmware's runtime is used, "files": copied to ROOT/lib/kwsrt
    removed: int = 0        # files of a filesystem runtime deleted because the frozen one is used


# -- what to copy -------------------------------------------------------------
def runtime_files(runtime_dir=None) -> dict[str, bytes]:
    """``{"main.py": ..., "lib/kwsrt/x.py": ...}`` from the installed package (or ``runtime_dir``)."""
    base = Path(runtime_dir) if runtime_dir is not None else resources.files("kws_kit.device")
    files: dict[str, bytes] = {}
    main = base / "main.py"
    if not main.is_file():
        raise BoardError(f"the device runtime has no main.py (looked in {base})",
                         hint="reinstall kws-kit; the runtime ships in kws_kit/device")
    files["main.py"] = main.read_bytes()
    pkg = base / "kwsrt"
    names = sorted(p.name for p in pkg.iterdir() if p.name.endswith(".py")) if pkg.is_dir() else []
    if "__init__.py" not in names:
        raise BoardError(f"the device runtime package kwsrt is missing or incomplete (looked in {pkg})")
    for name in names:
        files[f"lib/kwsrt/{name}"] = (pkg / name).read_bytes()
    return files


def runtime_digest(runtime_dir=None) -> str:
    """A short digest of the ``kwsrt`` package (not main.py): names and bytes of its ``.py`` files.

    ``kws-kit firmware build`` freezes it into ``kwsrt._build.DIGEST``; deploy compares it with
    the runtime it would copy to tell whether a board's frozen runtime is this one.
    """
    files = runtime_files(runtime_dir)
    h = hashlib.sha256()
    for rel in sorted(files):
        if rel.startswith("lib/kwsrt/"):
            name = rel[len("lib/kwsrt/"):].encode()
            h.update(b"%d:%s:%d:" % (len(name), name, len(files[rel])))
            h.update(files[rel])
    return h.hexdigest()[:16]


def parse_actions(specs, keywords: list[str], labels: list[str]) -> dict:
    """``["go=led", "go=print", "stop=pin:D7:200"]`` -> config ``actions``; every keyword gets LED+print by default."""
    if not specs:
        return {k: [{"do": "led", "pin": "LED", "ms": 500}, {"do": "print"}] for k in keywords}
    actions: dict[str, list] = {}
    for spec in specs:
        label, sep, action = str(spec).partition("=")
        label, action = label.strip(), action.strip()
        if not sep or not label or not action:
            raise BoardError(f"--on {spec!r}: expected LABEL=ACTION, e.g. go=led, stop=print, yes=pin:D7:300")
        if label not in labels:
            raise ModelError(f"--on {spec!r}: the model has no label {label!r}",
                             hint=f"its keywords: {', '.join(keywords)}")
        kind, *args = action.split(":")
        try:
            if kind == "led":
                entry = {"do": "led", "pin": "LED", "ms": int(args[0]) if args else 500}
            elif kind == "print":
                entry = {"do": "print"}
            elif kind == "pin" and args:
                entry = {"do": "pin", "pin": args[0], "ms": int(args[1]) if len(args) > 1 else 500}
            else:
                raise ValueError
        except ValueError:
            raise BoardError(f"--on {spec!r}: unknown action {action!r}",
                             hint="use led[:MS], print or pin:PIN[:MS]") from None
        actions.setdefault(label, []).append(entry)
    return actions


def _join(root: str, rel: str) -> str:
    return root.rstrip("/") + "/" + rel


def make_config(profile: dict, bundle, *, root: str, actions: dict, verbose: bool, arena_bytes: int,
                runners: list[str], frontends: list[str]) -> dict:
    led = profile.get("led", {})
    return {
        "board": profile["name"],
        "bundle_dir": _join(root, "model"),
        "inference_period_ms": int(bundle.recognizer.get("inference_period_ms", 250)),
        "verbose": bool(verbose),
        "actions": actions,
        "audio": profile["audio"],
        "led_pin": led.get("pin"),
        "led_active_high": bool(led.get("active_high", True)),
        "runner": runners,
        "frontend": frontends,
        "arena_size": int(arena_bytes),
    }


def _preferences(profile: dict, key: str) -> list[str]:
    names = [profile.get(key), profile.get(f"{key}_fallback")]
    out = []
    for n in names:
        if n and RUNNER_FEATURE.get(n, n) not in out:
            out.append(RUNNER_FEATURE.get(n, n))
    return out


def plan_deploy(board, bundle_path, *, actions=(), verbose: bool = False, runtime_dir=None,
                root: str | None = None, runners: list[str] | None = None,
                frontends: list[str] | None = None, frozen_runtime: bool | None = None,
                check_budget: bool = True) -> DeployPlan:
    """Everything deploy will copy, with the budget check; raises ModelError when the model does not fit.

    ``frozen_runtime``: the firmware has this runtime frozen in, so ``lib/kwsrt`` is not copied
    (None: what the board profile's ``frozen_runtime`` says). ``check_budget=False`` reports the
    budget without raising (``--force``).
    """
    from .boards import load_profile
    from .budget import arena_for_board, check_fits, ensure_fits
    from .tflite_info import inspect_tflite

    profile = load_profile(board) if isinstance(board, str) else board
    bundle = load_bundle(bundle_path)
    tinfo = inspect_tflite(bundle.model_bytes)
    if frozen_runtime is None:
        frozen_runtime = bool(profile.get("frozen_runtime", False))
    if check_budget:
        report = ensure_fits(tinfo, profile, model_name=bundle.metadata.get("model"), frozen_runtime=frozen_runtime)
    else:
        report = check_fits(tinfo, profile, frozen_runtime)
    root = root or profile.get("deploy", {}).get("root", "/")
    action_table = parse_actions(list(actions), bundle.keywords, bundle.labels)
    config = make_config(profile, bundle, root=root, actions=action_table, verbose=verbose,
                         arena_bytes=arena_for_board(tinfo, profile),
                         runners=runners or _preferences(profile, "runner"),
                         frontends=frontends or _preferences(profile, "frontend"))
    files = [DeployFile(_join(root, rel), data, "runtime") for rel, data in runtime_files(runtime_dir).items()
             if not (frozen_runtime and rel.startswith("lib/kwsrt/"))]
    files += [DeployFile(_join(root, f"model/{name}"), (Path(bundle_path) / name).read_bytes(), "model")
              for name in DEVICE_FILES]
    files.append(DeployFile(_join(root, "model/config.json"), json.dumps(config, indent=1).encode(), "config"))
    return DeployPlan(profile, Path(bundle_path), root, files, report, config, bundle.labels)


# -- firmware checks ----------------------------------------------------------
def _firmware_hint(profile: dict) -> str:
    hint = profile.get("deploy", {}).get("firmware_hint")
    return hint or f"build and flash firmware with the modules: kws-kit firmware build --board {profile['name']}, then kws-kit firmware flash --board {profile['name']}"


def choose_features(profile: dict, caps, *, force: bool = False) -> tuple[str | None, str | None, list[str]]:
    """(runner, front end, warnings) for a probed board; BoardError naming what is missing otherwise."""
    warnings = []
    version = tuple(int(v) for v in caps.version.split(".")[:2] if v.isdigit())
    if version and version < MIN_MICROPYTHON:
        warnings.append(f"MicroPython {caps.version} is older than the {'.'.join(map(str, MIN_MICROPYTHON))} "
                        f"the runtime is tested with")
    picks, missing = [], []
    for key, what in (("runner", "the int8 model runner"), ("frontend", "the feature front end")):
        prefs = _preferences(profile, key)
        available = [p for p in prefs if caps.has(p)]
        if available:
            if available[0] != prefs[0]:
                warnings.append(f"{what} falls back to {available[0]!r}: the firmware lacks {prefs[0]!r} "
                                f"({_firmware_hint(profile)})")
            picks.append(available[0])
        else:
            missing.append(f"{what} needs {' or '.join(repr(p) for p in prefs)}")
            picks.append(None)
    if missing:
        text = (f"the board (MicroPython {caps.version}, {caps.platform}) lacks firmware modules: "
                f"{'; '.join(missing)}")
        if not force:
            raise BoardError(text, hint=_firmware_hint(profile))
        warnings.append(text + " (deploying anyway: --force)")
    return picks[0], picks[1], warnings


def use_frozen_runtime(profile: dict, caps, runtime_dir=None, *, force: bool = False) -> tuple[bool, list[str]]:
    """(use the firmware's frozen kwsrt?, warnings) from a probe; BoardError for a frozen runtime of another version."""
    frozen = getattr(caps, "frozen_runtime", None)
    if frozen is None:
        return False, []
    mine = runtime_digest(runtime_dir)
    if frozen == mine:
        return True, []
    what = ("a kwsrt runtime frozen in without a version digest" if frozen == "?" else
            f"a kwsrt runtime frozen in from another kws-kit version (digest {frozen}; this kws-kit's is {mine})")
    text = f"the board's firmware has {what}, which runs instead of any copy on the filesystem"
    if not force:
        raise BoardError(text, hint=f"build and flash firmware with this kws-kit: kws-kit firmware build --board "
                                    f"{profile['name']} --micropython DIR, then kws-kit firmware flash")
    return True, [text + " (deploying anyway: --force; the firmware's runtime will run)"]


# -- the deploy ---------------------------------------------------------------
def _connect(port, profile, board_factory):
    from .boardio import Board, find_port

    if board_factory is None:
        board_factory = Board
    if port is None:
        port = find_port(profile.get("serial", {}).get("usb_ids", ()), profile.get("title", profile["name"]))
    return board_factory(port, baudrate=int(profile.get("serial", {}).get("baudrate", 115200)))


def deploy(board, bundle_path, *, port: str | None = None, actions=(), verbose: bool = False,
           force: bool = False, reset: bool = True, runtime_dir=None, board_factory=None,
           progress=None, log=None) -> DeployResult:
    """Copy what changed to the board atomically (see the module docstring). ``progress(path, done, total)``."""
    from .boardio import local_digest

    log = log or (lambda message: None)
    started = time.monotonic()
    plan = plan_deploy(board, bundle_path, actions=actions, verbose=verbose, runtime_dir=runtime_dir)
    profile = plan.profile
    conn = _connect(port, profile, board_factory)
    with conn:
        caps = conn.probe()
        root = caps.cwd or "/"
        journal = _join(root, JOURNAL)
        restored = conn.rollback(journal)
        if restored:
            log(f"an earlier deploy was interrupted: put back the previous {restored} file(s)")
        runner, frontend, warnings = choose_features(profile, caps, force=force)
        frozen, more = use_frozen_runtime(profile, caps, runtime_dir, force=force)
        warnings += more
        prefs_r = _preferences(profile, "runner")
        prefs_f = _preferences(profile, "frontend")
        options = dict(actions=actions, verbose=verbose, runtime_dir=runtime_dir, root=root, frozen_runtime=frozen,
                       runners=[runner] + [r for r in prefs_r if r != runner] if runner else prefs_r,
                       frontends=[frontend] + [f for f in prefs_f if f != frontend] if frontend else prefs_f)
        try:  # the budget again, now that the probe says where the runtime comes from
            plan = plan_deploy(profile, bundle_path, **options)
        except ModelError as exc:
            if not force or frozen:
                raise
            # a board whose profile expects the runtime frozen in, with firmware that has none
            warnings.append(f"{exc.one_line()} (deploying anyway: --force)")
            plan = plan_deploy(profile, bundle_path, check_budget=False, **options)
        paths = [f.path for f in plan.files]
        conn.remove([p + ".new" for p in paths])  # leftovers of an upload that died before its commit
        algo = caps.digest_algo
        on_board = conn.digests(paths)
        changed = [f for f in plan.files if on_board.get(f.path) != local_digest(f.data, algo)]
        unchanged = [f.path for f in plan.files if f not in changed]
        need = sum(f.size for f in changed)
        if changed and caps.fs_free is not None and caps.fs_free < need + FS_MARGIN_BYTES:
            raise BoardError(f"the board's filesystem has {caps.fs_free} bytes free; this deploy needs "
                             f"{need + FS_MARGIN_BYTES} (the new files sit beside the old ones until the swap)",
                             hint="delete files you no longer need from the board, or use a smaller model")
        if changed:
            for folder in sorted({f.path.rsplit("/", 1)[0] for f in changed if f.path.rsplit("/", 1)[0]}):
                conn.mkdirs(folder)
            try:
                for f in changed:
                    conn.write_file(f.path + ".new", f.data,
                                    progress=(lambda done, f=f: progress(f.path, done, f.size)) if progress else None)
                uploaded = conn.digests([f.path + ".new" for f in changed])
                bad = [f.path for f in changed if uploaded[f.path + ".new"] != local_digest(f.data, algo)]
                if bad:
                    raise BoardError(f"{', '.join(bad)} arrived corrupted on the board (digest mismatch)",
                                     hint="check the cable and deploy again; the previous files are unchanged")
            except BoardError:
                try:
                    conn.remove([f.path + ".new" for f in changed])
                except BoardError:
                    pass  # the connection is gone; the next deploy clears them
                raise
            existed = [(f.path, on_board.get(f.path) is not None) for f in changed]
            conn.commit(existed, journal)
            final = conn.digests([f.path for f in changed])
            wrong = [f.path for f in changed if final[f.path] != local_digest(f.data, algo)]
            if wrong:
                raise BoardError(f"after the swap {', '.join(wrong)} do not match what was sent")
        removed = 0
        if frozen:
            lib = _join(root, "lib/kwsrt")
            removed = conn.remove_tree(lib)
            if removed:
                log(f"deleted {removed} file(s) of an earlier filesystem runtime in {lib}: the firmware's "
                    f"frozen runtime is used" + (" (it would have shadowed it)" if caps.runtime_shadowed(_join(root, "lib")) else ""))
        if reset:
            conn.soft_reset()
    return DeployResult(plan, conn.port, [f.path for f in changed], unchanged, need, time.monotonic() - started,
                        runner, frontend, warnings, restored, "frozen" if frozen else "files", removed)


def describe_plan(plan: DeployPlan) -> list[tuple[str, int, str]]:
    return [(f.path, f.size, f.kind) for f in plan.files]

