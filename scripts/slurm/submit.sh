#!/usr/bin/env bash
# Submits a sharded `traverse evaluate` to Slurm: an array job of N shards (one `--shard K/N` per task), then
# a merge job that runs after all of them succeeded. Prints both job ids. Resubmitting the same run skips the
# shards already written (their files are in SHARD_DIR), so a partly failed array resumes.
#
#   bash scripts/slurm/submit.sh KIND N SHARD_DIR OUT [sbatch options --] EVALUATE ARGS...
#
# e.g. Table 2 at the paper's scale (278 subjects × 9 swap points = 2502 samples per row), 139 shards of 2
# subjects, each task on one GPU:
#   bash scripts/slurm/submit.sh derm 139 shards/derm evaluation-derm.json --gres=gpu:1 --time=1:00:00 -- \
#     --device wgpu --model public/model --subjects 278
# TRAVERSE names the binary (default: target/release/traverse).
set -euo pipefail
if (( $# < 4 )); then sed -n '2,12p' "$0" >&2; exit 2; fi
KIND=$1 SHARDS=$2 SHARD_DIR=$3 OUT=$4
shift 4
sbatch_opts=()
if [[ " $* " == *" -- "* ]]; then
  while [[ $1 != -- ]]; do sbatch_opts+=("$1"); shift; done
  shift
fi
TRAVERSE="$(realpath "${TRAVERSE:-target/release/traverse}")"
[[ -x $TRAVERSE ]] || { echo "no traverse binary at $TRAVERSE (set TRAVERSE)" >&2; exit 1; }
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number, got $SHARDS" >&2; exit 2; }
mkdir -p "$SHARD_DIR"
SHARD_DIR="$(realpath "$SHARD_DIR")"
OUT="$(realpath -m "$OUT")"
# Relative paths in the run's arguments resolve from here, where the tasks start too.
printf '%s\0' --kind "$KIND" "$@" > "$SHARD_DIR/args"
here="$(dirname "$(realpath "$0")")"
export TRAVERSE SHARDS SHARD_DIR KIND OUT
array=$(sbatch --parsable --chdir="$PWD" --array="0-$((SHARDS - 1))" "${sbatch_opts[@]}" "$here/evaluate.sbatch")
# sbatch options go to the shards only (the merge needs no GPU); SBATCH_PARTITION, SBATCH_ACCOUNT etc. in the
# environment reach both.
merge=$(sbatch --parsable --chdir="$PWD" --dependency="afterok:$array" "$here/merge.sbatch")
echo "array job $array ($SHARDS shards into $SHARD_DIR), merge job $merge (writes $OUT)"
