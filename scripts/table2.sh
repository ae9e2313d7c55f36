#!/usr/bin/env bash
# The paper's Table 2 at its scale on the embedded model, on this one machine, resumably: 278 subjects per
# family, so 278 × 9 = 2502 swap samples per row (the paper's "2500 samples per sub-class"), 50 DDIM steps,
# guidance 7.5, 50 Bézier samples per trajectory, LPIPS. The subjects go in SHARDS shards run one after
# another at the lowest CPU priority (nice 19), each shard file written when it is done; a shard already
# done is skipped, so the run resumes wherever it was stopped (kill it at any time). When every shard of a
# family is there, the merge writes public/model/table2-KIND.json and .md (tables, cost, t-SNE plot).
#
#   bash scripts/table2.sh [KIND ...]        # default: chest derm
#
# Finished shards are kept in the repository, xz-compressed, in evaluation/table2/KIND/ (commit them), so
# that a run spread over several machines or sessions resumes from the last one; evaluation/table2/KIND/
# provenance lists the source tree (git hash of src/) and the CPU that measured each shard. The shards holding
# the first MAP_SUBJECTS subjects also keep their latents for the t-SNE map (about 1.2 MB compressed each,
# against 50 KB), so they run last, just before the merge. The merge reads them from
# $TRAVERSE_CACHE/table2/INPUTS/KIND (default ~/.cache/traverse; INPUTS: the start of the SHA-256 of the model,
# classifier and LPIPS files that `evaluate --print-inputs-sha256` prints and each shard records).
# Measured for the v7 model on this project's 2-core Intel Xeon (f32, nice 19 beside other work): chest
# 5159 s (18.6 s per subject and setting), dermoscopy 19896 s (35.8 s per subject and setting, two settings);
# so 1.5 h and 5.5 h of CPU. Once merged, the shards can go (`git rm -r evaluation/table2`): history keeps them.
# On a cluster, scripts/slurm/submit.sh runs the same shards in parallel.
set -euo pipefail
# One block, run only once bash has read all of it: these scripts run for hours, and bash reads a script as it
# goes, so an edit to the file meanwhile (a commit, a checkout) would otherwise be read from a shifted offset.
{
cd "$(dirname "$0")/.."
source scripts/setup.sh
command -v xz >/dev/null || apt_install xz-utils
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"
SUBJECTS=278 SHARDS=139 MAP_SUBJECTS=30
export CARGO_TARGET_DIR="$CACHE/target"
cargo build --locked --release --bin traverse
# Which code measured which shard: the source tree's git hash (a change that touches only docs keeps it). The
# run uses its own copy of the binary, so that a build of other code into the shared target dir meanwhile
# (a test run, CI) does not change the code under the remaining shards.
code="$(git rev-parse HEAD:src 2>/dev/null || echo unknown)"
cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
BIN="$CACHE/table2/traverse-$code"
mkdir -p "$CACHE/table2"
cp "$CARGO_TARGET_DIR/release/traverse" "$BIN"
kinds=("$@")
(( ${#kinds[@]} )) || kinds=(chest derm)
for kind in "${kinds[@]}"; do
  # Shards are kept per inputs (model, classifier, LPIPS), so another model's shards are never in the way; a
  # shard of another model in evaluation/table2 stops the run with a message.
  inputs="$("$BIN" evaluate --model public/model --kind "$kind" --print-inputs-sha256 | cut -c1-12)"
  dir="$CACHE/table2/$inputs/$kind" store="evaluation/table2/$kind"
  mkdir -p "$dir" "$store"
  # Shards without map subjects first (k·S/N is a shard's first subject), then the others.
  order=()
  for ((k = 0; k < SHARDS; k++)); do ((k * SUBJECTS / SHARDS >= MAP_SUBJECTS)) && order+=("$k"); done
  for ((k = 0; k < SHARDS; k++)); do ((k * SUBJECTS / SHARDS < MAP_SUBJECTS)) && order+=("$k"); done
  for k in "${order[@]}"; do
    name="$(printf '%s-%04d-of-%04d.json' "$kind" "$k" "$SHARDS")"
    if [[ -e $store/$name.xz ]]; then
      [[ -e $dir/$name ]] || xz -dc "$store/$name.xz" > "$dir/$name"
      continue
    fi
    nice -n 19 "$BIN" evaluate --model public/model --kind "$kind" --subjects "$SUBJECTS" \
      --map-subjects "$MAP_SUBJECTS" --shard "$k/$SHARDS" --shard-dir "$dir"
    xz -9 -c "$dir/$name" > "$store/$name.xz.part" && mv "$store/$name.xz.part" "$store/$name.xz"
    echo "$name src $code cpu $cpu" >> "$store/provenance"
  done
  "$BIN" evaluate merge --kind "$kind" --shard-dir "$dir" --out "public/model/table2-$kind.json" \
    --tsne-svg "public/model/table2-tsne-$kind.svg"
done
exit
}
