#!/usr/bin/env bash
# Reproduce the shipped bundle models/bundles/yes_no_go_stop from the shared Speech Commands
# recordings plus synthetic speech. Usage (from the repository root):
#
#   bash bench/train_shipped.sh [WORK_DIR]          # default WORK_DIR: /tmp/kws-shipped
#
# Environment: SHARED (default ../shared/data/speech_commands beside the repository),
# MODEL (default tds_resnet), EPOCHS (default 40), SEED (default 0), BUNDLE (default
# models/bundles/yes_no_go_stop). Everything except the final bundle stays in WORK_DIR.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/kws-shipped}"
shared="${SHARED:-$repo/../shared/data/speech_commands}"
model="${MODEL:-tds_resnet}"
epochs="${EPOCHS:-40}"
seed="${SEED:-0}"
bundle="${BUNDLE:-$repo/models/bundles/yes_no_go_stop}"
keywords="yes,no,go,stop"
# Words that sound like the keywords (or share their sounds): synthetic _unknown_ examples
# that teach the model what NOT to fire on.
confusers="yet,yeah,yellow,less,guess,note,nose,snow,goal,ghost,code,though,top,step,shop,spot"

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
mkdir -p "$work"

# 1. Synthetic speech (espeak-ng, 208 voice/variant speakers). Re-running adds only missing clips.
kws-kit data synth --words "$keywords" --count 200 --dest "$work/synth" --seed "$seed"
kws-kit data synth --words "$confusers" --count 40 --dest "$work/synth" --seed "$seed"

# 2. Curate: real + synthetic, split by speaker (a hash of the speaker id). A real-only copy gives
#    the same real test speakers for an honest real-speech evaluation.
kws-kit data curate --keywords "$keywords" --source "$shared" --source "$work/synth" \
    --out "$work/dataset" --seed "$seed" --split-by auto --overwrite
kws-kit data curate --keywords "$keywords" --source "$shared" \
    --out "$work/dataset_real" --seed "$seed" --split-by auto --overwrite

# 3. Train (best epoch on the validation split is kept) and export to an int8 bundle.
kws-kit train --data "$work/dataset" --out "$work/run" --model "$model" --epochs "$epochs" \
    --patience "$epochs" --seed "$seed" --overwrite
kws-kit export "$work/run" --out "$bundle" --overwrite

# 4. Evaluate: clips + a 60-minute stream, on the real-only test split (eval/) and on the
#    mixed real + synthetic test split (eval_mixed/).
kws-kit eval "$bundle" --data "$work/dataset_real" --out "$bundle/eval" --stream-minutes 60 --seed "$seed"
kws-kit eval "$bundle" --data "$work/dataset" --out "$bundle/eval_mixed" --stream-minutes 60 --seed "$seed"
