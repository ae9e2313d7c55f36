#!/usr/bin/env bash
# The page's tests. First the main command's set-up and page build from an empty cargo registry, as on a
# fresh machine (scripts/build-web.sh, with the page's cargo home emptied; nothing is recompiled, since that
# home keeps its path), with clippy run on this crate in the same build. Then the end-to-end test: the CLI
# renders a link on the CPU (the default features, so the native tests' build is reused), and
# headless Chromium (software WebGPU) must reproduce those images on the page and report errors clearly.
# Run by scripts/test.sh after the native tests.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${TRAVERSE_CACHE:-$HOME/.cache/traverse}"

echo "== the main command's set-up and page build, from an empty cargo registry; the build lints clean"
echo "   (clippy on wasm32: WebGPU backend, the page)"
rm -rf "$CACHE/cargo-web/registry" "$CACHE/cargo-web/git"
LINT_PAGE=1 source scripts/build-web.sh chromium

echo "== the page, end to end in headless Chromium (software WebGPU)"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# The settings of tests/web/e2e.mjs's LINK, on burn's CPU backend.
CARGO_TARGET_DIR="$CACHE/target" cargo run --locked --quiet --bin traverse -- generate --model public/model \
  --seed 42 --steps 3 --swap-points 1,3 --out "$OUT" \
  --neutral "Chest x-ray with no significant findings" \
  --style "Chest X-ray of a subject with pleural effusion" --style "Chest x-ray showing Support Devices"

(cd tests/web && npm ci --no-audit --no-fund --silent)
node tests/web/e2e.mjs dist "$OUT"

echo "== the page's downloads are the CLI's runs: same manifest, same latents, and the CLI reads them"
python3 scripts/check_download.py "$OUT/page-run.zip" "$OUT" "$OUT/page-run"
# The image the e2e test uploaded, inverted by the CLI with the same settings.
CARGO_TARGET_DIR="$CACHE/target" cargo run --locked --quiet --bin traverse -- invert --model public/model \
  --image "$OUT/neutral.png" --steps 3 --swap-points 1,3 --out "$OUT/invert" \
  --neutral "Chest x-ray with no significant findings" \
  --style "Chest X-ray of a subject with pleural effusion" --style "Chest x-ray showing Support Devices"
python3 scripts/check_download.py "$OUT/page-invert.zip" "$OUT/invert" "$OUT/page-invert"
CARGO_TARGET_DIR="$CACHE/target" cargo run --locked --quiet --bin traverse -- interpolate --model public/model \
  --latents "$OUT/page-run/latents.safetensors" --style-index 1 --controls 3 --samples 3 --out "$OUT/page-bezier"
test -f "$OUT/page-bezier/bezier_002.png"
