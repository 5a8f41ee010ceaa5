"""Coverage-guided fuzzing of the `kws` model reader with libFuzzer (clang), briefly.

bench/fuzz_model_reader.sh builds device/cmodule/kws/tools/kws_fuzz.c with
-fsanitize=fuzzer,address,undefined and runs it from a corpus of zoo models; here
for KWS_LIBFUZZER_SECONDS (default 20). Skips without clang / libFuzzer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cmodule_build as cb

SCRIPT = cb.REPO / "bench" / "fuzz_model_reader.sh"
SECONDS = int(os.environ.get("KWS_LIBFUZZER_SECONDS", "20"))
CLANG = shutil.which("clang")


def _libfuzzer_works(tmp: Path) -> bool:
    src = tmp / "probe.c"
    src.write_text("#include <stdint.h>\n#include <stddef.h>\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    proc = subprocess.run([CLANG, "-fsanitize=fuzzer,address,undefined", str(src), "-o", str(tmp / "probe")],
                          capture_output=True, text=True)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def zoo_tflite(request):
    pytest.importorskip("keras")
    pytest.importorskip("ai_edge_litert")
    return cb.zoo_models(cb.model_cache_dir(request))


@pytest.mark.skipif(CLANG is None, reason="clang not installed (apt-get install clang)")
def test_libfuzzer_finds_no_crash_and_grows_the_corpus(zoo_tflite, tmp_path):
    if not _libfuzzer_works(tmp_path):
        pytest.skip("clang cannot link libFuzzer with ASan/UBSan here")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("tiny_conv", "tds_resnet", "tc_resnet8"):
        (corpus / f"{name}.tflite").write_bytes(zoo_tflite[name])
    artifacts = tmp_path / "artifacts"
    env = dict(os.environ, KWS_FUZZ_ARTIFACTS=str(artifacts), TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(SCRIPT), str(SECONDS), str(corpus), "-seed=1"], capture_output=True,
                          text=True, env=env, timeout=SECONDS * 10 + 180)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert not list(artifacts.glob("crash-*")) and not list(artifacts.glob("leak-*")), log[-4000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", log).group(1))
    new_units = int(re.search(r"stat::new_units_added:\s+(\d+)", log).group(1))
    # it really ran, and coverage feedback found inputs that reach new code
    assert runs > 200, log[-2000:]
    assert new_units > 0, log[-2000:]
    assert len(list(corpus.iterdir())) > 3
