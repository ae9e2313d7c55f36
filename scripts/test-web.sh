#!/usr/bin/env bash
# The page's end-to-end tests: builds it, renders the same link with the CLI on the CPU, and checks in
# headless Chromium (software WebGPU) that the page reproduces those images and reports errors clearly.
# Run by scripts/test.sh after the native tests (which build target/debug/traverse).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-web.sh chromium
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"

CARGO_TARGET_DIR="$CACHE/target-wasm" trunk build --release
ls -l dist/*.wasm

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# The settings of tests/web/e2e.mjs's LINK, on burn's CPU backend.
CARGO_TARGET_DIR="$CACHE/target" cargo run --locked --quiet --bin traverse -- generate --model public/model \
  --seed 42 --steps 3 --swap-points 1,3 --out "$OUT" \
  --neutral "Chest x-ray with no significant findings" \
  --style "Chest X-ray of a subject with pleural effusion" --style "Chest x-ray showing Support Devices"

(cd tests/web && npm ci --no-audit --no-fund --silent)
node tests/web/e2e.mjs dist "$OUT"
