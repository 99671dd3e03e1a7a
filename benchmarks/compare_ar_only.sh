#!/bin/bash
# Time exactly the `ar quantize` command that ../shared/bench/compare.py runs, then score the result
# with compare.py's own score() (ppl.py, 20 windows x 512). For runs of ours alone.
#   bash benchmarks/compare_ar_only.sh SCHEME OUTDIR [MODEL_DIR]
set -euo pipefail
S=$1; O=$2;  # ITERS=N overrides the 100 iterations (for schedule experiments)
M=${3:-$HOME/.cache/ar/models/gemma-3-270m}
BENCH=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
rm -rf "$O"
t0=$(date +%s.%N)
ar quantize --model "$M" --scheme "$S" --iters "${ITERS:-100}" --nsamples 16 --seqlen 512 --batch_size 8 \
  --dataset "$BENCH/../data/wikitext2_calib.txt" --format fake --output_dir "$O" --device cpu
t1=$(date +%s.%N)
echo "AR_SECONDS $(echo "$t1 - $t0" | bc)"
cd "$BENCH" && python -c "
from compare import score
class A: model='$M'; eval_seqlen=512; windows=20
print('AR_PPL', round(score('$O', A), 4))
"
