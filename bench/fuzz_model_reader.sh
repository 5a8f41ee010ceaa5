#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of the kws C module's model reader and kernels,
# under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   bench/fuzz_model_reader.sh [SECONDS=600] [CORPUS_DIR] [extra libFuzzer flags...]
#
# Needs clang with libFuzzer (Debian: apt-get install clang). The corpus starts from
# zoo models (tiny_conv, tds_resnet, tc_resnet8, converted with kws_kit; cached in
# $KWS_FUZZ_MODELS or the temp folder) and grows in CORPUS_DIR (default: a temp
# folder). Crashes land in $KWS_FUZZ_ARTIFACTS (default: the work folder) and make
# the script exit non-zero. The harness is device/cmodule/kws/tools/kws_fuzz.c.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kws-fuzz.XXXXXX")"
CORPUS="${2:-$WORK/corpus}"
shift $(( $# > 2 ? 2 : $# ))
CC="${CC_FUZZ:-clang}"
SRC=device/cmodule/kws
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz_model_reader: $CC not found (apt-get install clang)" >&2
    exit 3
fi
"$CC" -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    -ffp-contract=off -Wall -Wextra -Werror -I"$SRC" \
    "$SRC/tools/kws_fuzz.c" "$SRC/kws_model.c" "$SRC/kws_ops.c" "$SRC/kws_frontend.c" -lm -o "$WORK/kws_fuzz"
mkdir -p "$CORPUS"
if [ -z "$(ls -A "$CORPUS")" ]; then
    python3 - "$CORPUS" <<'PY'
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "tests")
import os
import cmodule_build as cb
cache = Path(os.environ.get("KWS_FUZZ_MODELS") or Path(tempfile.gettempdir()) / "kws-bench-models")
models = cb.zoo_models(cache)
for name in ("tiny_conv", "tds_resnet", "tc_resnet8"):
    (Path(sys.argv[1]) / f"{name}.tflite").write_bytes(models[name])
PY
fi
ARTIFACTS="${KWS_FUZZ_ARTIFACTS:-$WORK}"
mkdir -p "$ARTIFACTS"
echo "fuzz_model_reader: $SECONDS_TO_RUN s, corpus $CORPUS, artifacts $ARTIFACTS"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
# max_len 200000: the zoo seeds are up to ~100 KB; timeout: a slow input is a finding too
"$WORK/kws_fuzz" -max_total_time="$SECONDS_TO_RUN" -max_len=200000 -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$ARTIFACTS/" "$@" "$CORPUS"
