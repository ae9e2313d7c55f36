#!/usr/bin/env bash
# Sourced by the other scripts: installs the toolchain pinned in rust-toolchain.toml with clippy, rustfmt and
# the wasm32 target (a no-op once installed; needs rustup, https://rustup.rs), and defines `apt_install PKG…`,
# which installs the Debian packages that are missing.
command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)" >&2; exit 1; }
rustup toolchain install "$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)" --profile minimal \
  -c clippy -c rustfmt -t wasm32-unknown-unknown

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}
