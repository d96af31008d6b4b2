#!/usr/bin/env bash
# The main job on embedded defaults: synthetic PTB-XL, a short Optuna study with MLflow tracking,
# compression of the best model, a distilled DeiT study, registry + promotion, prediction, comparison.
# Runs in ./demo (sqlite:///mlflow.db + ./mlruns and sqlite:///optuna.db there). ~4 min on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
demo="${ECG_SWEEP_DEMO_DIR:-$here/demo}"
n_records="${DEMO_RECORDS:-3000}"
n_trials="${DEMO_TRIALS:-6}"
deit_trials="${DEMO_DEIT_TRIALS:-4}"
epochs="${DEMO_EPOCHS:-6}"
mkdir -p "$demo"
cd "$demo"
export ECG_SWEEP_CACHE="$demo/cache"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -f ptbxl-synth/ptbxl_database.csv ]; then
  step "1. synthesize a PTB-XL-shaped dataset ($n_records records, real layout, 100 + 500 Hz)"
  ecg-sweep data synth --out ptbxl-synth --n-records "$n_records" --seed 0
fi
export ECG_SWEEP_DATA="$demo/ptbxl-synth"

step "2. inspect it (every record validated)"
ecg-sweep data inspect ptbxl-synth | tail -n 12

step "3. an Optuna study of the ECG-native ViT, every trial a nested MLflow run; then compression and registration"
ecg-sweep optimize --model vit --n-trials "$n_trials" --max-epochs "$epochs" \
  --search-space "$here/examples/demo-space.yaml" --study-name demo-vit \
  --set n_bootstrap=300 --set patience=3

step "4. a 1-D ConvNeXt teacher for DeiT (one training run, logged to MLflow)"
if [ ! -f teacher-convnext.pt ]; then
  ecg-sweep train --model convnext --set depths=2-2-2-2 --set width=32 --set lr=0.003 \
    --set batch_size=64 --max-epochs "$epochs" --checkpoint teacher-convnext.pt
fi

step "5. an Optuna study of DeiT distilled from that teacher (distillation α and temperature searched)"
ecg-sweep optimize --model deit --n-trials "$deit_trials" --max-epochs "$epochs" \
  --search-space "$here/examples/demo-space-deit.yaml" --study-name demo-deit \
  --teacher teacher-convnext.pt --set n_bootstrap=300 --set patience=3

step "6. promote each challenger to champion (gate: it must beat the current champion)"
ecg-sweep promote --model vit || echo "(kept the current ViT champion)"
ecg-sweep promote --model deit || echo "(kept the current DeiT champion)"

step "7. predict five test-fold records with models:/ecg-deit@champion"
records=$(python -c "
import pandas as pd
db = pd.read_csv('ptbxl-synth/ptbxl_database.csv')
print(' '.join('ptbxl-synth/' + db[db.strat_fold == 10].filename_lr.head(5)))")
# shellcheck disable=SC2086
ecg-sweep predict --model-uri models:/ecg-deit@champion $records --output predictions.csv

step "8. the leaderboard across studies"
ecg-sweep compare --output report.md

step "done"
echo "MLflow store: $demo/mlflow.db (artifacts in $demo/mlruns); Optuna storage: $demo/optuna.db"
echo "open the UI:  cd $demo && ecg-sweep ui     (then http://127.0.0.1:5000)"
echo "report:       $demo/report.md"
