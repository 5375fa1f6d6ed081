#!/usr/bin/env bash
# The main job, end to end: build, start a ds node (2 data cores, one 2 GiB file-backed device
# under DIR), store a file as an object through the protocol, read it back and compare, show
# the object and the node's counters, stop the node, start it again and read the object back.
# Usage: ./quickstart.sh [DIR]   (default ./demo; nothing outside DIR is touched)
set -euo pipefail
cd "$(dirname "$0")"
dir=$(mkdir -p "${1:-demo}" && cd "${1:-demo}" && pwd)
cargo build --release --bin ds-appliance --bin ds
bin=target/release
port=${DS_QUICKSTART_PORT:-7000}
cat > "$dir/node.toml" <<TOML
data_dir = "$dir/node"
listen = "127.0.0.1:$port"
cores = 2
pin_cores = false
log_level = "warn"
[[devices]]
path = "dev0.img"
size = "2G"
TOML
export DS_NODE=127.0.0.1:$port

start() {
  $bin/ds-appliance --config "$dir/node.toml" > "$dir/node.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    $bin/ds ping >/dev/null 2>&1 && return 0
    kill -0 $pid 2>/dev/null || { cat "$dir/node.log"; exit 1; }
    sleep 0.1
  done
  echo "quickstart: the node did not answer" >&2; exit 1
}
stop() { kill -TERM $pid; wait $pid; }
trap 'kill $pid 2>/dev/null || true' EXIT

start
echo "node serving on $DS_NODE (config $dir/node.toml, log $dir/node.log)"
head -c 3000000 /dev/urandom > "$dir/object.bin"
id=$($bin/ds put "$dir/object.bin")
echo "stored $dir/object.bin as object $id"
$bin/ds get "$id" -o "$dir/object.out"
cmp "$dir/object.bin" "$dir/object.out"
echo "read back $(stat -c %s "$dir/object.out") bytes bit-exact"
$bin/ds stat "$id"
sleep 0.3   # cores publish their counters every 250 ms
$bin/ds stats --socket "$dir/node/stats.sock"
stop
echo "node stopped; starting it again"
start
$bin/ds get "$id" | cmp - "$dir/object.bin"
echo "read back bit-exact after a restart"
stop
