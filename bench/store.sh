#!/usr/bin/env bash
# Shard store throughput beside fio on the same file, in one run, on this machine:
#   1 MiB sequential appends    vs  fio O_DIRECT sequential write, bs=1M, same queue depth
#   4 KiB shard random reads    vs  fio O_DIRECT random read,      bs=4k, same queue depth
#   4 KiB records (a 4000-byte shard + its 96-byte header = 4096 bytes on disk) likewise
# Reads run on shards written beforehand (--keep), adaptive, busy and sleep polling; fio reads
# the same 2 GiB the shards fill. The whole file is written once first: ext4 answers a read of
# a never-written (unwritten-extent) block with zeros and no device I/O, which would inflate
# fio's figure. fio and ds alternate ROUNDS times (a virtual disk drifts a lot); medians are
# compared.
# Prints one JSON object with every figure and the ratios. Usage:
#   bench/store.sh [SECONDS] [ROUNDS] [FILE]    (defaults: 5, 3, target/bench/store.img)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
file=${3:-target/bench/store.img}
size=16G
write_depth=8
fill=2G
read_depth=32
command -v fio >/dev/null || { echo "bench: fio is needed (apt-get install fio)" >&2; exit 1; }
mkdir -p "$(dirname "$file")"
cargo build --release --bin ds-store >&2
bin=target/release/ds-store
rm -f "$file"
fallocate -l $size "$file"
echo "bench: writing the whole $size file once" >&2
fio --name=prefill --filename="$file" --direct=1 --ioengine=io_uring --rw=write --bs=1M \
  --iodepth=$write_depth --size=$size --output-format=terse >/dev/null

fio_run() {
  fio --output-format=json --name=bench --filename="$file" --direct=1 --ioengine=io_uring \
    --time_based --runtime="$seconds" "$@" \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(json.dumps({"read_iops":j["read"]["iops"],"write_mb_per_second":j["write"]["bw_bytes"]/1e6}))'
}
ds_read() {
  $bin bench -d "$file" --json --op read --size "$1" --depth $read_depth --seconds "$seconds" --keep --poll "$2"
}
results=()
for round in $(seq "$rounds"); do
  echo "bench: writes, round $round/$rounds" >&2
  results+=("fio_write $(fio_run --rw=write --bs=1M --iodepth=$write_depth --size=$size)")
  results+=("ds_append $($bin bench -d "$file" --json --op append --size 1M --depth $write_depth --seconds "$seconds" --create $size)")
done
for shard in 4K 4000; do
  echo "bench: writing $fill of $shard shards" >&2
  $bin bench -d "$file" --json --op read --size $shard --depth $read_depth --seconds 0 --fill $fill >/dev/null
  for round in $(seq "$rounds"); do
    echo "bench: $shard reads, round $round/$rounds" >&2
    results+=("fio_read_$shard $(fio_run --rw=randread --bs=4k --iodepth=$read_depth --size=$fill)")
    # The same transfer as one ds read of a 4 KiB shard: 96 + 4096 bytes rounded to 4608.
    [ $shard = 4K ] && results+=("fio_read_4608 $(fio_run --rw=randread --bs=4608 --blockalign=512 --iodepth=$read_depth --size=$fill)")
    results+=("ds_read_${shard}_adaptive $(ds_read $shard adaptive)")
    results+=("ds_read_${shard}_busy $(ds_read $shard busy)")
    results+=("ds_read_${shard}_sleep $(ds_read $shard sleep)")
  done
done

printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
runs = {}
for line in sys.stdin:
    name, blob = line.split(" ", 1)
    runs.setdefault(name, []).append(json.loads(blob))
def figure(name, r):
    if "write" in name or "append" in name:
        return r.get("mb_per_second", r.get("write_mb_per_second"))
    return r.get("ops_per_second", r.get("read_iops"))
def med(name):
    return statistics.median(figure(name, r) for r in runs[name])
out = {"rounds": len(runs["fio_write"]), "seconds_per_run": runs["ds_append"][0]["seconds"]}
out["fio_seq_write_1m_mb_per_s"] = round(med("fio_write"))
out["ds_append_1m_mb_per_s"] = round(med("ds_append"))
out["append_ratio"] = round(med("ds_append") / med("fio_write"), 3)
out["ds_append_latency_us_last"] = runs["ds_append"][-1]["latency_us"]
for shard in ("4K", "4000"):
    fio = med("fio_read_" + shard)
    out["fio_randread_4k_iops_beside_" + shard] = round(fio)
    for mode in ("adaptive", "busy", "sleep"):
        name = "ds_read_%s_%s" % (shard, mode)
        out[name + "_iops"] = round(med(name))
        out[name + "_ratio"] = round(med(name) / fio, 3)
        out[name + "_latency_us_last"] = runs[name][-1]["latency_us"]
        if shard == "4K":
            out[name + "_ratio_to_fio_4608"] = round(med(name) / med("fio_read_4608"), 3)
out["fio_randread_4608_iops"] = round(med("fio_read_4608"))
out["all_runs"] = {k: [round(figure(k, r)) for r in v] for k, v in runs.items()}
print(json.dumps(out, indent=2))
'
