#!/usr/bin/env bash
# Shard store throughput beside fio on the same file, in one run, on this machine:
#   1 MiB sequential appends    vs  fio O_DIRECT sequential write, bs=1M, same queue depth
#   4 KiB shard random reads    vs  fio O_DIRECT random read,      bs=4k, same queue depth
#   4 KiB records (4000-byte shard + header = 4096 bytes on disk) likewise
# fio and ds alternate ROUNDS times (a virtual disk drifts); medians are compared.
# Prints one JSON object with every figure and the ratios. Usage:
#   bench/store.sh [SECONDS] [ROUNDS] [FILE]    (defaults: 5, 3, target/bench/store.img)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
file=${3:-target/bench/store.img}
size=16G
write_depth=8
read_depth=32
command -v fio >/dev/null || { echo "bench: fio is needed (apt-get install fio)" >&2; exit 1; }
mkdir -p "$(dirname "$file")"
cargo build --release --bin ds-store >&2
bin=target/release/ds-store
rm -f "$file"
fallocate -l $size "$file"

fio_run() {
  fio --output-format=json --name=bench --filename="$file" --direct=1 --ioengine=io_uring \
    --size=$size --time_based --runtime="$seconds" "$@" \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(json.dumps({"read_iops":j["read"]["iops"],"write_mb_per_second":j["write"]["bw_bytes"]/1e6}))'
}
results=()
for round in $(seq "$rounds"); do
  echo "bench: round $round/$rounds" >&2
  results+=("fio_write $(fio_run --rw=write --bs=1M --iodepth=$write_depth)")
  results+=("ds_append $($bin bench -d "$file" --json --op append --size 1M --depth $write_depth --seconds "$seconds" --create $size)")
  results+=("fio_read $(fio_run --rw=randread --bs=4k --iodepth=$read_depth)")
  results+=("ds_read_4k $($bin bench -d "$file" --json --op read --size 4K --depth $read_depth --seconds "$seconds" --fill 2G)")
  results+=("ds_read_4000 $($bin bench -d "$file" --json --op read --size 4000 --depth $read_depth --seconds "$seconds" --fill 2G)")
done

printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
runs = {}
for line in sys.stdin:
    name, blob = line.split(" ", 1)
    runs.setdefault(name, []).append(json.loads(blob))
med = lambda name, field: statistics.median(r[field] for r in runs[name])
last = lambda name: runs[name][-1]["latency_us"]
fio_write = med("fio_write", "write_mb_per_second")
fio_read = med("fio_read", "read_iops")
append = med("ds_append", "mb_per_second")
read4k = med("ds_read_4k", "ops_per_second")
read4000 = med("ds_read_4000", "ops_per_second")
print(json.dumps({
    "rounds": len(runs["fio_write"]),
    "fio_seq_write_1m_mb_per_s": round(fio_write),
    "ds_append_1m_mb_per_s": round(append),
    "append_ratio": round(append / fio_write, 3),
    "ds_append_latency_us": last("ds_append"),
    "fio_randread_4k_iops": round(fio_read),
    "ds_read_4k_shard_iops": round(read4k),
    "read_4k_shard_ratio": round(read4k / fio_read, 3),
    "ds_read_4k_shard_latency_us": last("ds_read_4k"),
    "ds_read_4k_record_iops": round(read4000),
    "read_4k_record_ratio": round(read4000 / fio_read, 3),
    "all_runs": {k: [round(r.get("mb_per_second") or r.get("write_mb_per_second") or 0) if k in ("fio_write","ds_append") else round(r.get("ops_per_second") or r.get("read_iops")) for r in v] for k, v in runs.items()},
}, indent=2))
'
