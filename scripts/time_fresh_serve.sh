#!/usr/bin/env bash
# Times the README's main command on a fresh machine, simulated: a clean clone in an empty home (no cargo
# registry, installed tools, npm cache or build cache; rustup's proxies, and the toolchains rustup already
# holds, as a freshly set-up machine has them). Prints the seconds from start to "Traverse is served", then
# opens the page in headless Chromium (software WebGPU) until its default example has run two steps.
#
#   bash scripts/time_fresh_serve.sh [WORK_DIR] [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
FRESH="${1:-$(mktemp -d)}"
PORT="${2:-8090}"
RUSTUP="$(command -v rustup)"
mkdir -p "$FRESH/.cargo/bin"
cp "$RUSTUP" "$FRESH/.cargo/bin/"
for p in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do ln -sf rustup "$FRESH/.cargo/bin/$p"; done
git clone -q . "$FRESH/traverse"
LOG="$FRESH/serve.log"
start=$(date +%s)
(cd "$FRESH/traverse" && env -i HOME="$FRESH" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" TERM=dumb \
  PATH="$FRESH/.cargo/bin:/usr/local/bin:/usr/bin:/bin" bash scripts/serve.sh "$PORT" > "$LOG" 2>&1) &
server=$!
trap 'kill $server 2>/dev/null; pkill -f "serve_dist.py dist $PORT" || true' EXIT
until grep -q "Traverse is served at" "$LOG"; do
  kill -0 $server 2>/dev/null || { tail -20 "$LOG"; echo "serve.sh ended after $(( $(date +%s) - start )) s"; exit 1; }
  sleep 5
done
echo "served after $(( $(date +%s) - start )) s (log: $LOG)"
(cd tests/web && npm ci --no-audit --no-fund --silent && node served.mjs "http://127.0.0.1:$PORT/")
