#!/usr/bin/env bash
# DL-Net Tables II-III at the CPU budget (issue 15): the reference, then every method fine-tuned from it at the
# same budget (configs/dlnet/<task>_<method>.yaml), then the tables. Resumable: a finished run is skipped, an
# interrupted one resumes from its last checkpoint. One task per process; the two tasks run side by side on
# two cores in about an hour:
#   scripts/dlnet_tables_cpu.sh inpaint & scripts/dlnet_tables_cpu.sh interp & wait
#   .venv/bin/python scripts/dlnet_tables.py --out runs/dlnet    # after both: OUT/dlnet_tables.md
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${1:?usage: $0 inpaint|interp}
[ -d runs/dlnet/test_sets ] || .venv/bin/python scripts/dlnet_test_sets.py
for METHOD in reference joint on_demand multitask naive_likelihood dlnet; do
    OUTDIR=runs/dlnet/${TASK}_$METHOD
    [ -f "$OUTDIR/final.safetensors" ] && { echo "have $OUTDIR"; continue; }
    .venv/bin/restorekit train "configs/dlnet/${TASK}_$METHOD.yaml" --out "$OUTDIR" --resume
done
