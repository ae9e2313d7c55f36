#!/usr/bin/env bash
# A RUSTC_WORKSPACE_WRAPPER that makes a real build also run clippy on this crate, warnings denied (cargo hands
# it the rustc path and rustc's arguments, as `cargo clippy` hands them to clippy-driver). test-web.sh lints the
# page this way during its release build instead of compiling burn a second time for `cargo clippy`.
exec clippy-driver "$@" -D warnings
