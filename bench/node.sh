#!/usr/bin/env bash
# One node through the protocol, beside the machine's own limits measured in the same run:
#   iperf3 over loopback TCP (one stream)            -> the network ceiling
#   fio on the node's device file (1 MiB seq write, 4 KiB rand read QD32) -> the device ceiling
#   ds bench PUT and GET of 4 KiB and 1 MiB objects, CONCURRENCY connections
# Prints one JSON object with every figure and the ratios.
#   bench/node.sh [SECONDS] [CONCURRENCY] [DIR]    (defaults: 5, 8, target/bench/node)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
concurrency=${2:-8}
dir=${3:-target/bench/node}
for tool in fio iperf3; do
  command -v $tool >/dev/null || { echo "bench: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
cargo build --release --bin ds-appliance --bin ds >&2
bin=target/release
rm -rf "$dir"; mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
port=7390
cat > "$dir/node.toml" <<TOML
data_dir = "$dir/data"
listen = "127.0.0.1:$port"
cores = 2
pin_cores = false
log_level = "warn"
[[devices]]
path = "dev0.img"
size = "8G"
TOML

echo "bench: iperf3 loopback" >&2
iperf3 -s -1 -p 5390 >/dev/null 2>&1 &
sleep 0.5
iperf_gbit=$(iperf3 -c 127.0.0.1 -p 5390 -t "$seconds" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')

$bin/ds-appliance --config "$dir/node.toml" > "$dir/node.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
export DS_NODE=127.0.0.1:$port
for _ in $(seq 100); do $bin/ds ping >/dev/null 2>&1 && break; sleep 0.1; done

results=()
for size in 4K 1M; do
  for op in put get; do
    echo "bench: ds $op $size" >&2
    results+=("ds_${op}_$size $($bin/ds bench --op $op --size $size --concurrency "$concurrency" --duration "$seconds" --json)")
  done
done
kill -TERM $pid; wait $pid || true

# The device ceiling, on the same file the node used (it is stopped now).
fio_run() {
  fio --output-format=json --name=bench --filename="$dir/data/dev0.img" --direct=1 --ioengine=io_uring \
    --size=4G --time_based --runtime="$seconds" "$@" \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(json.dumps({"read_iops":j["read"]["iops"],"write_mb_per_second":j["write"]["bw_bytes"]/1e6}))'
}
echo "bench: fio" >&2
results+=("fio_write_1M $(fio_run --rw=write --bs=1M --iodepth=8)")
results+=("fio_read_4K $(fio_run --rw=randread --bs=4k --iodepth=32)")

printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
iperf_gbit = float(sys.argv[1])
runs = {}
for line in sys.stdin:
    name, blob = line.split(" ", 1)
    runs[name] = json.loads(blob)
out = {"seconds_per_run": float(sys.argv[2]), "concurrency": int(sys.argv[3]),
       "iperf3_loopback_gbit_per_s": round(iperf_gbit, 2),
       "fio_seq_write_1m_mb_per_s": round(runs["fio_write_1M"]["write_mb_per_second"]),
       "fio_randread_4k_iops": round(runs["fio_read_4K"]["read_iops"])}
for name in ("ds_put_4K", "ds_get_4K", "ds_put_1M", "ds_get_1M"):
    r = runs[name]
    out[name] = {"ops_per_s": round(r["ops_per_second"]), "mb_per_s": round(r["mb_per_second"], 1),
                 "latency_us": r["latency_us"]}
out["put_1m_ratio_to_fio_write"] = round(runs["ds_put_1M"]["mb_per_second"] / out["fio_seq_write_1m_mb_per_s"], 3)
out["get_1m_ratio_to_iperf3"] = round(runs["ds_get_1M"]["mb_per_second"] * 8 / 1000 / iperf_gbit, 3)
out["get_4k_ratio_to_fio_randread"] = round(runs["ds_get_4K"]["ops_per_second"] / out["fio_randread_4k_iops"], 3)
print(json.dumps(out, indent=2))
' "$iperf_gbit" "$seconds" "$concurrency"
