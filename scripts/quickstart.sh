#!/usr/bin/env bash
# The main job: set up, build release, and run segzoo on this machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --release --workspace
SEGZOO=target/release/segzoo
"$SEGZOO" env
"$SEGZOO" config show configs/quickstart.toml
