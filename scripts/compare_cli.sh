#!/usr/bin/env bash
# Runs the README's CLI commands (at small sizes) with two traverse binaries and compares every file they
# write and what they print, byte for byte; JSON files are compared after dropping the keys that hold
# wall-clock times or, for training, the settings a newer binary records. The check behind "a refactor
# changes no output":
#
#   bash scripts/compare_cli.sh OLD_BIN NEW_BIN [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="${1:?usage: compare_cli.sh OLD_BIN NEW_BIN [WORK_DIR]}"
NEW="${2:?usage: compare_cli.sh OLD_BIN NEW_BIN [WORK_DIR]}"
WORK="${3:-$(mktemp -d)}"
mkdir -p "$WORK"
CHEST=(--neutral "Chest x-ray with no significant findings" --style "Chest X-ray of a subject with pleural effusion"
  --style "Chest x-ray showing Support Devices")

# Runs one command (after the binary) with both binaries: stdout to WORK/{old,new}/NAME.stdout, and every
# `@` in the arguments replaced by WORK/{old,new}.
run() {
  local name="$1"; shift
  for side in old new; do
    local bin="$OLD"; [ "$side" = new ] && bin="$NEW"
    mkdir -p "$WORK/$side"
    local args=()
    for a in "$@"; do args+=("${a//@/$WORK/$side}"); done
    "$bin" "${args[@]}" > "$WORK/$side/$name.stdout" 2> "$WORK/$side/$name.stderr"
  done
}

run generate generate --model public/model --seed 42 --steps 3 --swap-points 1,3 --out @/generate "${CHEST[@]}"
run generate-init generate --model public/model --init-latents @/generate/latents.safetensors --steps 3 \
  --swap-points 2 --out @/generate-init "${CHEST[@]}"
run interpolate interpolate --model public/model --latents @/generate/latents.safetensors --controls 3 \
  --samples 5 --out @/interpolate
run dataset-derm dataset --kind derm --n 12 --seed 5 --size 64 --out @/dataset-derm
run dataset-chest dataset --kind chest --n 12 --seed 5 --size 128 --out @/dataset-chest
run invert invert --model public/model --image @/dataset-chest/images/000003.png --steps 3 --swap-points 2 \
  --out @/invert "${CHEST[@]}"
run classify classify --classifier public/classifiers/derm @/dataset-derm/images/000000.png \
  @/dataset-derm/images/000001.png
run evaluate evaluate --model public/model --kind chest --subjects 2 --steps 3 --swap-points 1,3 --controls 3 \
  --interpolations 3 --ceiling-subjects 2 --ceiling-sheet @/ceiling.png --tsne-svg @/tsne.svg --out @/evaluation.json
run quantize quantize --model tests/fixtures/tiny-sd --out @/tiny-int8 --check-seeds 1 --check-steps 2 \
  --classifiers public/classifiers
run blend blend --base tests/fixtures/tiny-sd --tuned @/tiny-int8 --weight 0.25 --out @/blend
run train-classifier train-classifier --kind chest --n 40 --size 32 --steps 3 --batch 4 --out @/classifier
# The BPE trainer (tokenizers) breaks ties in hash-map order, so two runs learn two vocabularies: both runs
# start from the same one instead.
mkdir -p "$WORK/new/mini" "$WORK/old/mini"
"$OLD" train-mini --out "$WORK/tokenizer" --size 32 --images 4 --text-steps 0 --vae-steps 0 --vae-crop 16 \
  --unet-steps 0 > /dev/null 2>&1
cp -r "$WORK/tokenizer/tokenizer" "$WORK/old/mini/"
cp -r "$WORK/tokenizer/tokenizer" "$WORK/new/mini/"
run train-mini train-mini --out @/mini --size 32 --images 4 --text-steps 2 --vae-steps 2 --vae-crop 16 \
  --unet-steps 2 --checkpoint-every 1

python3 - "$WORK" <<'PY'
import json, os, re, struct, sys
work = sys.argv[1]
# Wall-clock times; and what training records now that it did not before (its settings and runs).
VOLATILE = {"timings_s", "seconds", "training", "runs"}
def scrub(v):
    if isinstance(v, dict):
        return {k: scrub(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [scrub(x) for x in v]
    if isinstance(v, str):
        return re.sub(r"/(old|new)/", "/RUN/", v)
    return v
def tensors(data):
    # safetensors: the header's tensor table (its JSON order and metadata map order are not part of the data).
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop("__metadata__", None)
    return meta, {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
def norm(path):
    data = open(path, "rb").read()
    if path.endswith(".safetensors"):
        return tensors(data)
    if path.endswith(".json"):
        try:
            return json.dumps(scrub(json.loads(data)), sort_keys=True)
        except ValueError:
            pass
    if path.endswith(".stdout"):
        text = re.sub(r"/(old|new)/", "/RUN/", data.decode())
        return re.sub(r"[0-9.]+ s sampling", "T s sampling", text)
    return data
old, new = os.path.join(work, "old"), os.path.join(work, "new")
files = lambda root: {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}
bad, same = [], 0
only_new = {"mini/training.json"}
for rel in sorted(files(old) | files(new)):
    if rel.endswith(".stderr"):
        continue
    a, b = os.path.join(old, rel), os.path.join(new, rel)
    if not os.path.exists(a) and rel in only_new:
        continue
    if not (os.path.exists(a) and os.path.exists(b)):
        bad.append(f"only in {'new' if os.path.exists(b) else 'old'}: {rel}")
    elif norm(a) != norm(b):
        bad.append(f"differs: {rel}")
    else:
        same += 1
print(f"{same} files identical" + ("" if not bad else f", {len(bad)} not:"))
for line in bad:
    print("  " + line)
sys.exit(1 if bad else 0)
PY
