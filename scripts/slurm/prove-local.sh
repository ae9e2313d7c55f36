#!/usr/bin/env bash
# Proof that the Slurm scripts run a sharded evaluation end to end: starts the single-node Slurm
# (local-cluster.sh), submits KIND's evaluation as SHARDS array tasks plus the dependent merge, waits, then
# runs the same evaluation in one process and checks the merged tables and figures equal it byte for byte.
#
#   bash scripts/slurm/prove-local.sh [KIND] [SUBJECTS] [SHARDS] [evaluate args...]
# Default: chest, 6 subjects, 3 shards, the embedded model with the paper's sampler settings.
set -euo pipefail
cd "$(dirname "$0")/../.."
KIND=${1:-chest} SUBJECTS=${2:-6} SHARDS=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
export TRAVERSE="${TRAVERSE:-target/release/traverse}"
WORK="$(mktemp -d /tmp/traverse-slurm.XXXXXX)"
bash scripts/slurm/local-cluster.sh start
eval "$(bash scripts/slurm/local-cluster.sh env)"
args=(--model public/model --subjects "$SUBJECTS" --ceiling-subjects 8 "$@")
start=$(date +%s)
out=$(bash scripts/slurm/submit.sh "$KIND" "$SHARDS" "$WORK/shards" "$WORK/slurm.json" -- "${args[@]}")
echo "$out"
merge_job=$(sed -E 's/.*merge job ([0-9]+).*/\1/' <<< "$out")
while squeue -h -j "$merge_job" 2>/dev/null | grep -q .; do sleep 5; done
echo "Slurm finished in $(( $(date +%s) - start )) s"
[[ -f $WORK/slurm.json ]] || { echo "the merge job wrote no report; its log:" >&2; cat slurm-traverse-merge-"$merge_job".out >&2; exit 1; }
mv slurm-traverse-*.out "$WORK/"
"$TRAVERSE" evaluate --kind "$KIND" "${args[@]}" --out "$WORK/one.json" > "$WORK/one.log"
cmp "$WORK/slurm.md" "$WORK/one.md"
python3 - "$WORK/slurm.json" "$WORK/one.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
ca, cb = a.pop("cost"), b.pop("cost")
assert a == b, "the merged report differs from the one-process report"
print(f"merged report of {ca['shards']} shards equals the one-process report ({len(a['scores'])} rows); "
      f"{ca['seconds']:.0f} s in shards vs {cb['seconds']:.0f} s in one process")
PY
cat "$WORK/slurm.md"
echo "files in $WORK"
