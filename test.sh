#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, simulation (1000 seeded power-loss runs)
# and real-process tests on files and loop devices (needs root for losetup).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --release --workspace "$@"
