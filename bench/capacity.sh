#!/usr/bin/env bash
# RAM per stored shard and start-up time, on this machine, in one run:
#   bench-index:    store COUNT shards (default 10M), print the index's heap bytes per shard
#   bench-recovery: store 1M shards of 1 KiB, time start-up by full log replay, by checkpoint,
#                   and by checkpoint + replay of a 10% tail; fio sequential read of the same
#                   file gives the device's limit for the replay.
# Usage: bench/capacity.sh [COUNT]     (files under target/bench, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10M}
command -v fio >/dev/null || { echo "bench: fio is needed (apt-get install fio)" >&2; exit 1; }
cargo build --release --bin ds-store >&2
bin=target/release/ds-store
mkdir -p target/bench
rm -f target/bench/index.img target/bench/recovery.img
echo "bench: storing $count shards" >&2
index=$($bin bench-index -d target/bench/index.img --count "$count" --size 0 --create 24G)
rm -f target/bench/index.img
echo "bench: recovery of 1M shards" >&2
recovery=$($bin bench-recovery -d target/bench/recovery.img --count 1M --size 1K --create 8G)
used=$(python3 -c 'import sys,json; print(json.loads(sys.argv[1])["full_replay_segments"])' "$recovery")
fio_read=$(fio --output-format=json --name=replay --filename=target/bench/recovery.img --direct=1 \
  --ioengine=io_uring --rw=read --bs=64M --iodepth=2 --size=$((used * 64))M \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"])')
rm -f target/bench/recovery.img
python3 - "$index" "$recovery" "$fio_read" "$used" <<'PY'
import json, sys
index, recovery = json.loads(sys.argv[1]), json.loads(sys.argv[2])
fio_bw, segments = float(sys.argv[3]), int(sys.argv[4])
replay_bytes = segments * 64 << 20
fio_seconds = replay_bytes / fio_bw
print(json.dumps({
    "index": index,
    "bytes_per_shard_target": 16,
    "recovery": recovery,
    "replay_bytes": replay_bytes,
    "fio_seq_read_mb_per_s": round(fio_bw / 1e6),
    "fio_seconds_to_read_replayed_segments": round(fio_seconds, 3),
    "full_replay_vs_fio_read_time": round(fio_seconds / recovery["full_replay_seconds"], 3),
}, indent=2))
PY
