#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, simulation (1000 seeded power-loss runs)
# and real-process tests on files and loop devices (needs root for losetup). Then, without
# arguments, the node's object round trips once more in a debug build, where the debug
# assertions (a caller's checksum checked against its data, among others) see real traffic.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --release --workspace "$@"
if [ $# -eq 0 ]; then
  cargo test --test node_objects -- writes_at_offsets objects_of_every_size
fi
