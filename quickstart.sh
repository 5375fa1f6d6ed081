#!/usr/bin/env bash
# The main job, end to end on a file-backed device: build, format a 1 GiB device file with two
# data cores, store a file as a shard, read it back, compare, restart-read, and scrub.
# Usage: ./quickstart.sh [DIR]   (default ./demo; nothing outside DIR is touched)
set -euo pipefail
cd "$(dirname "$0")"
dir=${1:-demo}
mkdir -p "$dir"
cargo build --release --bin ds-store
bin=target/release/ds-store
device="$dir/device0.img"
rm -f "$device"
$bin format -d "$device" --size 1G --cores 2 --segment 16M
head -c 3000000 /dev/urandom > "$dir/object.bin"
$bin put -d "$device" 0123456789abcdef0123456789abcdef/0/0 "$dir/object.bin"
$bin get -d "$device" 0123456789abcdef0123456789abcdef/0/0 -o "$dir/object.out"
cmp "$dir/object.bin" "$dir/object.out"
echo "stored and read back $(stat -c %s "$dir/object.bin") bytes bit-exact"
$bin stat -d "$device"
$bin scrub -d "$device"
