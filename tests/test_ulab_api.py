"""Device code calls nothing ulab 6.x lacks, and its ulab branches compute what the numpy ones do.

Three checks:
* static (AST): every ``np.<name>`` / ``numpy.<name>`` / ``ulab.<...>`` in
  device/ is in ulab 6.x's API, except inside CPython-only regions (the
  convention, enforced here):
    - ``if not ULAB:`` (and the ``else`` of ``if ULAB:``),
    - ``if HAS_X:`` where the module sets ``HAS_X`` from ``hasattr(np, "x")``
      for an ``x`` ulab lacks (``HAS_INT64``); a flag for a name ulab has
      (``HAS_TAKE``) is a ulab-version guard, its branch is checked,
    - the body of a ``try:`` with an ``except AttributeError`` handler (a
      feature probe; the handler holds the ulab fallback),
    - functions named ``_np_*`` (numpy-only helpers); every call to one must
      itself sit in a CPython-only region.
* the board front end runs on the golden vectors with ``tests/ulab_shim`` as
  ``ulab`` (float32 arrays, complex fft, Welford sums, no take before 6.6);
* the pure-ulab int8 runner runs every zoo model with trained-like weights
  under the shim and must equal TensorFlow Lite Micro bit for bit.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ulab_shim  # noqa: E402
from frontend_helpers import GOLDEN, relative_error  # noqa: E402

DEVICE = Path(__file__).resolve().parents[1] / "device"
NUMPY_ALIASES = {"np", "_np", "numpy"}


# --------------------------------------------------------------------------- #
# Static check
# --------------------------------------------------------------------------- #

def allowed_names(version=ulab_shim.VERSION) -> dict[str, set[str]]:
    version = tuple(version)[:2]
    numpy_names = {n for n, since in ulab_shim.NUMPY_NAMES.items() if since <= version}
    return {"numpy": numpy_names, "fft": set(ulab_shim.FFT_NAMES), "linalg": set(ulab_shim.LINALG_NAMES),
            "utils": set(ulab_shim.UTILS_NAMES), "ulab": set(ulab_shim.ULAB_NAMES)}


def _attribute_chain(node):
    """``a.b.c`` -> ["a", "b", "c"] (the base may be any expression: its last name is kept)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def _probe_flags(tree, ulab_has):
    """Module-level ``HAS_X = ... hasattr(np, "x") ...`` flags for names ulab lacks (CPython guards)."""
    flags = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            for call in ast.walk(node.value):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "hasattr"
                        and len(call.args) == 2 and isinstance(call.args[1], ast.Constant)
                        and _attribute_chain(call.args[0])[-1:] == ["np"] and call.args[1].value not in ulab_has):
                    flags.add(node.targets[0].id)
    return flags


def _guard(test, flags):
    """'cpython' if the if-test's true branch is CPython-only, 'ulab' if its else branch is, else None."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and isinstance(test.operand, ast.Name):
        if test.operand.id == "ULAB":
            return "cpython"
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        # "HAS_INT64 and ...": the true branch still needs the CPython-only condition
        return "cpython" if any(_guard(v, flags) == "cpython" for v in test.values) else None
    if isinstance(test, ast.Name):
        if test.id in flags:
            return "cpython"
        if test.id == "ULAB":
            return "ulab"
    return None


def check_source(source: str, filename: str = "<src>", version=ulab_shim.VERSION) -> list[str]:
    """Problems: 'file:line: np.name' for each reference outside ulab 6.x's API in checked code."""
    allowed = allowed_names(version)
    tree = ast.parse(source, filename)
    flags = _probe_flags(tree, allowed["numpy"])
    problems = []

    def check_reference(node):
        chain = _attribute_chain(node)
        for i, part in enumerate(chain[:-1]):
            rest = chain[i + 1:]
            if part in NUMPY_ALIASES:
                if rest[0] not in allowed["numpy"]:
                    return "%s.%s" % (part, rest[0])
                if rest[0] in ("fft", "linalg") and len(rest) > 1 and rest[1] not in allowed[rest[0]]:
                    return "%s.%s.%s" % (part, rest[0], rest[1])
                return None
            if part == "ulab":
                if rest[0] not in allowed["ulab"]:
                    return "ulab.%s" % rest[0]
                if rest[0] == "numpy" and len(rest) > 1 and rest[1] not in allowed["numpy"]:
                    return "ulab.numpy.%s" % rest[1]
                if rest[0] == "utils" and len(rest) > 1 and rest[1] not in allowed["utils"]:
                    return "ulab.utils.%s" % rest[1]
                return None
        return None

    def visit(node, cpython_only):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_np_"):
            cpython_only = True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("_np_") \
                and not cpython_only:
            problems.append("%s:%d: call to numpy-only %s() outside a CPython guard"
                            % (filename, node.lineno, node.func.id))
        if isinstance(node, (ast.If, ast.IfExp)):
            kind = _guard(node.test, flags)
            visit(node.test, cpython_only)
            body = node.body if isinstance(node.body, list) else [node.body]
            orelse = node.orelse if isinstance(node.orelse, list) else [node.orelse]
            for child in body:
                visit(child, cpython_only or kind == "cpython")
            for child in orelse:
                visit(child, cpython_only or kind == "ulab")
            return
        if isinstance(node, ast.Try):
            probe = any(h.type is not None and "AttributeError" in ast.unparse(h.type) for h in node.handlers)
            for child in node.body:
                visit(child, cpython_only or probe)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, cpython_only)
            return
        if isinstance(node, ast.Attribute) and not cpython_only:
            bad = check_reference(node)
            if bad:
                problems.append("%s:%d: %s is not in ulab 6.x" % (filename, node.lineno, bad))
                return
            if isinstance(node.value, ast.Attribute):
                return  # the chain was checked as a whole
        for child in ast.iter_child_nodes(node):
            visit(child, cpython_only)

    visit(tree, False)
    return problems


def device_sources():
    return sorted((DEVICE / "kwsrt").glob("*.py")) + [DEVICE / "main.py"]


def test_device_code_uses_only_ulab_api():
    problems = []
    for path in device_sources():
        problems += check_source(path.read_text(), str(path.relative_to(DEVICE.parent)))
    assert not problems, "\n".join(problems)


def test_checker_flags_what_ulab_lacks_and_respects_guards():
    bad = (
        "try:\n    from ulab import numpy as np\n    ULAB = True\nexcept ImportError:\n    import numpy as np\n"
        "    ULAB = False\n"
        "HAS_INT64 = hasattr(np, 'int64')\nHAS_TAKE = hasattr(np, 'take')\n"
        "x = np.fft.rfft(a)\n"                       # 9: no rfft
        "y = np.float32(1)\n"                        # 10
        "if HAS_TAKE:\n    z = np.take_along_axis(a, i)\n"   # 12: a ulab-version guard is still checked
        "def f(a):\n    return _np_helper(a)\n"      # 14: numpy-only helper outside a guard
        "w = ulab.numpy.int32\n"                     # 15
        "v = self._np.float64\n"                     # 16
    )
    problems = check_source(bad)
    lines = sorted(int(p.split(":")[1]) for p in problems)
    assert lines == [9, 10, 12, 14, 15, 16], problems
    good = (
        "from ulab import numpy as np\n"
        "HAS_INT64 = hasattr(np, 'int64')\nULAB = True\n"
        "try:\n    F = np.float32\nexcept AttributeError:\n    F = np.float\n"
        "if HAS_INT64:\n    a = np.int64(1)\nelse:\n    a = np.array([1], dtype=np.int16)\n"
        "if not ULAB:\n    b = np.rfft(a)\n"
        "c = np.where(a > 0, a, 0) if HAS_INT64 else np.clip(a, 0, 1)\n"
        "def _np_helper(x):\n    return x.astype(np.int64)\n"
        "if HAS_INT64:\n    _np_helper(a)\n"
        "s = np.fft.fft(a); t = np.take(a, [0])\n"
    )
    assert check_source(good) == []
    assert check_source("from ulab import numpy as np\nt = np.take(a, [0])\n", version=(6, 5)) != []


# --------------------------------------------------------------------------- #
# Front end under the shim
# --------------------------------------------------------------------------- #

def _bundle(name: str) -> dict:
    return json.loads((GOLDEN / f"frontend_{name}.json").read_text())


def _run_frontend(frontend_module, name, pcm, q):
    fe = frontend_module.StreamingFrontend(_bundle(name), q["scale"], q["zero_point"])
    raw = pcm.astype("<i2").tobytes()
    new = [fe.push(raw[i:i + 640]) for i in range(0, len(raw), 640)]  # 320-sample blocks as bytes
    assert sum(new) == 49 and fe.ready()
    features = fe.features()
    assert isinstance(features, ulab_shim.ndarray)  # really the ulab path
    int8 = np.frombuffer(bytes(fe.features_int8()), dtype=np.int8)
    return np.array(features.tolist(), dtype=np.float32), int8, fe


@pytest.mark.parametrize("version", [ulab_shim.VERSION, (6, 0)], ids=["ulab6.12", "ulab6.0-no-take"])
def test_frontend_under_ulab_matches_golden(version):
    from kws_kit import golden
    from kws_kit.frontend import PRESETS, quantize_features

    arrays, manifest = golden.load(GOLDEN)
    q = manifest["quantization"]
    ties = 0
    with ulab_shim.installed(version=version) as load:
        frontend = load("frontend")
        assert frontend.HAS_TAKE == (version >= (6, 6))
        for name in sorted(PRESETS):
            for case in manifest["cases"]:
                features, int8, fe = _run_frontend(frontend, name, arrays[f"{case}.pcm"], q)
                assert fe._use_take == (version >= (6, 6))
                golden_features = arrays[f"{case}.{name}"]
                assert relative_error(features, golden_features) <= 1e-3, (name, case)
                if name != "mfcc10":
                    continue
                host_q = quantize_features(golden_features, q["scale"], q["zero_point"]).reshape(-1)
                differ = np.flatnonzero(int8.astype(np.int16) != host_q.astype(np.int16))
                # every difference is one step at a rounding tie the two float paths resolve apart
                t_host = golden_features.reshape(-1)[differ].astype(np.float64) / q["scale"] + q["zero_point"] + 0.5
                t_dev = features.reshape(-1)[differ].astype(np.float64) / q["scale"] + q["zero_point"] + 0.5
                assert np.all(np.abs(int8[differ].astype(int) - host_q[differ].astype(int)) == 1)
                assert np.all(np.abs(t_host - np.round(t_host)) <= np.abs(t_host - t_dev) + 1e-5)
                ties += differ.size
    print("ulab shim front end (%s): %d int8 rounding ties moved" % (version, ties))
    assert ties <= 3
    assert "ulab" not in sys.modules  # restored


# --------------------------------------------------------------------------- #
# int8 runner under the shim
# --------------------------------------------------------------------------- #

def test_ulab_float_sum_is_inexact_so_weight_sums_use_exact_helpers():
    """ulab's np.sum of a float array is a float32 running mean times n: the kernels must not rely on it."""
    rng = np.random.default_rng(0)
    rows = rng.integers(-127, 128, size=(64, 400))
    exact = rows.sum(axis=1)
    with ulab_shim.installed() as load:
        int8ops = load("int8ops")
        unp = int8ops.np
        as_float = unp.array(rows.tolist(), dtype=unp.float)
        welford = np.array(unp.sum(as_float, axis=1).tolist())
        assert np.any(welford != exact)  # what int8ops used before: wrong channel corrections on boards
        assert int8ops.row_sums(unp.array(rows.tolist(), dtype=unp.int16)) == exact.tolist()
        assert int8ops.row_sums(as_float) == exact.tolist()
        cube = unp.array(rows.reshape(8, 8, 400).tolist(), dtype=unp.float)
        for axis in range(3):
            got = np.array(int8ops.axis_sum(cube, axis).tolist())
            np.testing.assert_array_equal(got, rows.reshape(8, 8, 400).sum(axis=axis))


@pytest.mark.slow  # converts the five zoo models (shared with test_tflm_parity) and runs ~60 Python invokes
def test_ulab_runner_under_shim_matches_tflm():
    pytest.importorskip("keras")
    pytest.importorskip("tflite_micro")
    from zoo_trained import realistic_inputs, trained_like_int8

    from kws_kit.models import zoo
    from kws_kit.quantize import run_int8
    from kws_kit.tflite_info import inspect_tflite

    checked = {}
    for name in zoo.model_names():
        tfl = trained_like_int8(name)
        info = inspect_tflite(tfl)
        x = realistic_inputs(info.input_scale, info.input_zero_point, n_words_seeds=1, n_random=2)
        expected = run_int8(tfl, x, kernels="tflm").reshape(len(x), -1)
        with ulab_shim.installed() as load:
            runners = load("runners")
            int8ops = load("int8ops")
            assert not int8ops.HAS_INT64 and int8ops.EXACT_LIMIT == 2 ** 24  # the boards' float32 branch
            runner = runners.UlabRunner(tfl)
            got = np.array([list(runner.invoke(row.tobytes())) for row in x], dtype=np.int8)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        checked[name] = len(x)
    print("ulab shim runner == TFLite Micro:", checked)
    assert len(checked) == len(zoo.model_names()) >= 5
