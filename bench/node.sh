#!/usr/bin/env bash
# One node through the protocol, beside the machine's own limits measured in the same run:
#   iperf3 over loopback TCP (one stream)            -> the network ceiling
#   fio on the node's device file (1 MiB seq write, 4 KiB rand read QD32) -> the device ceiling
#   ds bench PUT and GET of 1 MiB objects (8 in flight, as fio's write depth), of 4 KiB objects
#   (32 in flight, as fio's read depth), and 4 KiB GETs one at a time (latency at low load)
# The device file is written whole (zeros) before the node formats it, as a block device would
# be: the first write to a block of a sparse file pays ext4's allocation (PUT 1 MiB ran at
# 641-680 MB/s on a sparse file, 850-907 on a written one), and fio's figures come from the same
# file after the node wrote it. SPARSE=1 keeps the file sparse.
# Prints one JSON object with every figure and the ratios.
#   bench/node.sh [SECONDS] [CONNECTIONS] [DIR]    (defaults: 5, 2, target/bench/node)
#   environment: CORES (2), POLL_MODE (adaptive), SPARSE (unset), DEVICE (file; or loop: the node
#   and fio both drive a loop device over the file, attached with direct I/O; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-2}
dir=${3:-target/bench/node}
for tool in fio iperf3; do
  command -v $tool >/dev/null || { echo "bench: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
cargo build --release --bin ds-appliance --bin ds >&2
bin=target/release
rm -rf "$dir"; mkdir -p "$dir/data"; dir=$(cd "$dir" && pwd)
if [ -z "${SPARSE:-}" ]; then
  echo "bench: writing the 8 GiB device file once" >&2
  fio --name=prefill --filename="$dir/data/dev0.img" --direct=1 --ioengine=io_uring --rw=write \
    --bs=1M --iodepth=8 --size=8G --zero_buffers --output-format=terse >/dev/null
fi
device_kind=${DEVICE:-file}
device_path="$dir/data/dev0.img"
device_toml='path = "dev0.img"
size = "8G"'
cleanup() { :; }
case $device_kind in
  file) ;;
  loop)
    [ -n "${SPARSE:-}" ] && { echo "bench: DEVICE=loop needs the file written (unset SPARSE)" >&2; exit 1; }
    device_path=$(losetup --direct-io=on -f --show "$dir/data/dev0.img")
    cleanup() { losetup -d "$device_path" 2>/dev/null || true; }
    device_toml="path = \"$device_path\""
    ;;
  *) echo "bench: DEVICE must be file or loop, not $device_kind" >&2; exit 1 ;;
esac
trap cleanup EXIT
port=7390
cat > "$dir/node.toml" <<TOML
data_dir = "$dir/data"
listen = "127.0.0.1:$port"
cores = ${CORES:-2}
poll_mode = "${POLL_MODE:-adaptive}"
pin_cores = false
log_level = "warn"
[[devices]]
$device_toml
TOML

echo "bench: iperf3 loopback" >&2
iperf3 -s -1 -p 5390 >/dev/null 2>&1 &
sleep 0.5
iperf_gbit=$(iperf3 -c 127.0.0.1 -p 5390 -t "$seconds" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')

$bin/ds-appliance --config "$dir/node.toml" > "$dir/node.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; cleanup' EXIT
export DS_NODE=127.0.0.1:$port
for _ in $(seq 100); do $bin/ds ping >/dev/null 2>&1 && break; sleep 0.1; done

results=()
ds_bench() {
  echo "bench: ds $*" >&2
  $bin/ds bench --duration "$seconds" --connections "$connections" --json "$@"
}
results+=("ds_put_1M $(ds_bench --op put --size 1M --concurrency 8)")
results+=("ds_get_1M $(ds_bench --op get --size 1M --concurrency 8)")
results+=("ds_put_4K $(ds_bench --op put --size 4K --concurrency 32)")
results+=("ds_get_4K $(ds_bench --op get --size 4K --concurrency 32)")
results+=("ds_get_4K_qd1 $($bin/ds bench --duration "$seconds" --connections 1 --json --op get --size 4K --concurrency 1)")
kill -TERM $pid; wait $pid || true

# The device ceiling, on the same file the node used (it is stopped now).
fio_run() {
  fio --output-format=json --name=bench --filename="$device_path" --direct=1 --ioengine=io_uring \
    --size=4G --time_based --runtime="$seconds" "$@" \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(json.dumps({"read_iops":j["read"]["iops"],"read_mb_per_second":j["read"]["bw_bytes"]/1e6,"write_mb_per_second":j["write"]["bw_bytes"]/1e6,"read_p99_us":j["read"]["clat_ns"].get("percentile",{}).get("99.000000",0)/1000}))'
}
echo "bench: fio" >&2
# The write first: it also leaves every block of the 4 GiB written, so the reads touch the disk.
results+=("fio_write_1M $(fio_run --rw=write --bs=1M --iodepth=8)")
results+=("fio_read_1M $(fio_run --rw=read --bs=1M --iodepth=8)")
results+=("fio_read_4K $(fio_run --rw=randread --bs=4k --iodepth=32)")
results+=("fio_read_4K_qd1 $(fio_run --rw=randread --bs=4k --iodepth=1)")

printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
iperf_gbit = float(sys.argv[1])
runs = {}
for line in sys.stdin:
    name, blob = line.split(" ", 1)
    runs[name] = json.loads(blob)
out = {"seconds_per_run": float(sys.argv[2]), "connections": int(sys.argv[3]), "device": sys.argv[4],
       "iperf3_loopback_gbit_per_s": round(iperf_gbit, 2),
       "fio_seq_write_1m_mb_per_s": round(runs["fio_write_1M"]["write_mb_per_second"]),
       "fio_seq_read_1m_mb_per_s": round(runs["fio_read_1M"]["read_mb_per_second"]),
       "fio_randread_4k_iops": round(runs["fio_read_4K"]["read_iops"]),
       "fio_randread_4k_qd1_p99_us": round(runs["fio_read_4K_qd1"]["read_p99_us"])}
for name in ("ds_put_1M", "ds_get_1M", "ds_put_4K", "ds_get_4K", "ds_get_4K_qd1"):
    r = runs[name]
    out[name] = {"in_flight": r["concurrency"], "ops_per_s": round(r["ops_per_second"]),
                 "mb_per_s": round(r["mb_per_second"], 1), "latency_us": r["latency_us"]}
net = iperf_gbit * 1000 / 8
out["put_1m_ratio_to_min_fio_write_iperf3"] = round(runs["ds_put_1M"]["mb_per_second"] / min(out["fio_seq_write_1m_mb_per_s"], net), 3)
out["get_1m_ratio_to_min_fio_read_iperf3"] = round(runs["ds_get_1M"]["mb_per_second"] / min(out["fio_seq_read_1m_mb_per_s"], net), 3)
out["get_4k_qd1_p99_us"] = runs["ds_get_4K_qd1"]["latency_us"]["p99"]
out["get_4k_ratio_to_fio_randread"] = round(runs["ds_get_4K"]["ops_per_second"] / out["fio_randread_4k_iops"], 3)
print(json.dumps(out, indent=2))
' "$iperf_gbit" "$seconds" "$connections" "$device_kind"
