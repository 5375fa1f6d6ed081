#!/usr/bin/env bash
# The cluster data path (issue 5), all in one run on this machine:
#   1. a 6-node local cluster, scheme 4+2 (`ds dev-cluster up`): `ds bench` PUT and GET of 1 MiB
#      and 4 KiB objects, the client's connections spread over all six nodes;
#   2. a 1-node cluster, scheme 1+0, the same benchmarks (the baseline: no coding, no peers);
#   3. the raw codec: `cargo bench -p ds-objects --bench codec` (reed-solomon-simd, 4+2, 1 MiB
#      stripes), with the nodes stopped.
# Around every PUT phase it reads every node's stats socket (`ds stats --json`) and
# /proc/PID/stat, so the coding share of a PUT is measured two ways:
#   coding_ns summed over all cores of all nodes / busy loop time of all those cores, and
#   coding_ns / CPU time (utime + stime) of all node processes (stricter: it counts every thread).
# Prints a table and writes every figure to DIR/results.json.
#   bench/cluster.sh [SECONDS] [DIR]      (defaults: 5, target/bench/cluster)
# Environment: CONNECTIONS (6), INFLIGHT_1M (12), INFLIGHT_4K (48), CORES (data cores per
# node, 1), DEVICE_SIZE (per node, 8G), KEEP=1 keeps the device files afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
dir=${2:-target/bench/cluster}
connections=${CONNECTIONS:-6}
inflight_1m=${INFLIGHT_1M:-12}
inflight_4k=${INFLIGHT_4K:-48}
cores=${CORES:-1}
device_size=${DEVICE_SIZE:-8G}
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 1; }

cargo build --release --bin ds-appliance --bin ds >&2
# The codec bench is built now too, so building does not run beside the clusters later.
cargo bench -p ds-objects --bench codec --no-run >&2
ds=target/release/ds
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
rm -rf "$dir"/ec "$dir"/plain "$dir"/*.json

clusters=()
stop_all() {
  for c in "${clusters[@]}"; do $ds dev-cluster down --dir "$c" >/dev/null 2>&1 || true; done
}
trap stop_all EXIT

# One JSON object: the sums over all nodes of a cluster at this moment.
snapshot() {
  python3 - "$1" "$ds" <<'PY'
import json, os, subprocess, sys, time
cluster = json.load(open(os.path.join(sys.argv[1], "cluster.json")))
ticks = os.sysconf("SC_CLK_TCK")
out = {"time": time.time(), "coding_ns": 0, "busy_seconds": 0.0, "cpu_seconds": 0.0,
       "stripes_encoded": 0, "bytes_encoded": 0, "stripes_decoded": 0, "bytes_decoded": 0,
       "degraded_reads": 0, "hedged_requests": 0, "failed_reads": 0, "failed_writes": 0,
       "peer_calls_total": 0, "peer_call_errors": 0}
for node in cluster["nodes"]:
    report = json.loads(subprocess.run([sys.argv[2], "stats", "--socket", node["stats_socket"], "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    totals = report["totals"]
    out["busy_seconds"] += totals["busy_seconds"]
    for key, value in totals.get("cluster", {}).items():
        if key in out:
            out[key] += value
    with open(f"/proc/{node['pid']}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_seconds"] += (int(fields[11]) + int(fields[12])) / ticks
# The whole machine: busy and total jiffies of all CPUs.
cpu = [int(v) for v in open("/proc/stat").readline().split()[1:]]
out["machine_total_ticks"] = sum(cpu[:8])
out["machine_idle_ticks"] = cpu[3] + cpu[4]
print(json.dumps(out))
PY
}

# bench_phase NAME CLUSTER_DIR NODES SCHEME ARGS...: one `ds bench`, between two snapshots.
bench_phase() {
  local name=$1 cdir=$2 nodes=$3 scheme=$4; shift 4
  echo "bench: $name: ds bench $*" >&2
  sleep 0.3   # a core publishes its counters every 250 ms
  local before after result
  before=$(snapshot "$cdir")
  result=$($ds --node "$nodes" bench --duration "$seconds" --connections "$connections" \
    --scheme "$scheme" --json "$@")
  sleep 0.3
  after=$(snapshot "$cdir")
  printf '{"name": "%s", "bench": %s, "before": %s, "after": %s}\n' \
    "$name" "$result" "$before" "$after" >> "$dir/phases.jsonl"
}

# run_cluster NAME NODES SCHEME: start, run the four benchmarks, stop.
run_cluster() {
  local name=$1 count=$2 scheme=$3 cdir="$dir/$1"
  echo "bench: starting $count node(s), scheme $scheme, under $cdir" >&2
  clusters+=("$cdir")
  $ds dev-cluster up --nodes "$count" --dir "$cdir" --scheme "$scheme" \
    --device-size "$device_size" --cores "$cores" >&2
  local nodes
  nodes=$(python3 -c 'import json,sys; print(",".join(n["client_addr"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$cdir/cluster.json")
  bench_phase "${name}_put_1M" "$cdir" "$nodes" "$scheme" --op put --size 1M --concurrency "$inflight_1m"
  bench_phase "${name}_get_1M" "$cdir" "$nodes" "$scheme" --op get --size 1M --concurrency "$inflight_1m"
  bench_phase "${name}_put_4K" "$cdir" "$nodes" "$scheme" --op put --size 4K --concurrency "$inflight_4k"
  bench_phase "${name}_get_4K" "$cdir" "$nodes" "$scheme" --op get --size 4K --concurrency "$inflight_4k"
  $ds dev-cluster down --dir "$cdir" >&2
  [ "${KEEP:-0}" = 1 ] || rm -f "$cdir"/node*/data/dev0.img
}

: > "$dir/phases.jsonl"
run_cluster ec 6 4+2
run_cluster plain 1 1+0

echo "bench: raw codec (cargo bench -p ds-objects --bench codec, quick mode)" >&2
DS_CODEC_QUICK=1 cargo bench -p ds-objects --bench codec 2>/dev/null | grep '^{' > "$dir/codec.jsonl"

python3 - "$dir" "$seconds" "$connections" "$inflight_1m" "$inflight_4k" "$cores" <<'PY'
import json, os, sys
dir, seconds, connections, inflight_1m, inflight_4k, cores = sys.argv[1:]
phases = {}
for line in open(os.path.join(dir, "phases.jsonl")):
    p = json.loads(line)
    b, a = p["before"], p["after"]
    wall = a["time"] - b["time"]
    machine_total = a["machine_total_ticks"] - b["machine_total_ticks"]
    machine_busy = machine_total - (a["machine_idle_ticks"] - b["machine_idle_ticks"])
    coding = (a["coding_ns"] - b["coding_ns"]) / 1e9
    busy = a["busy_seconds"] - b["busy_seconds"]
    cpu = a["cpu_seconds"] - b["cpu_seconds"]
    r = p["bench"]
    phases[p["name"]] = {
        "mb_per_s": round(r["mb_per_second"], 1),
        "ops_per_s": round(r["ops_per_second"]),
        "in_flight": r["concurrency"], "connections": r["connections"],
        "nodes": len(r.get("nodes", [])) or None,
        "latency_us": r["latency_us"],
        "coding_seconds": round(coding, 4),
        "core_busy_seconds": round(busy, 3),
        "node_cpu_seconds": round(cpu, 3),
        "coding_share_of_busy": round(coding / busy, 4) if busy > 0 else None,
        "coding_share_of_node_cpu": round(coding / cpu, 4) if cpu > 0 else None,
        "node_cpu_per_wall_second": round(cpu / wall, 2) if wall > 0 else None,
        "machine_busy_fraction": round(machine_busy / machine_total, 3) if machine_total else None,
        "stripes_encoded": a["stripes_encoded"] - b["stripes_encoded"],
        "stripes_decoded": a["stripes_decoded"] - b["stripes_decoded"],
        "degraded_reads": a["degraded_reads"] - b["degraded_reads"],
        "hedged_requests": a["hedged_requests"] - b["hedged_requests"],
        "failed_reads": a["failed_reads"] - b["failed_reads"],
        "failed_writes": a["failed_writes"] - b["failed_writes"],
        "peer_calls": a["peer_calls_total"] - b["peer_calls_total"],
        "peer_call_errors": a["peer_call_errors"] - b["peer_call_errors"],
    }
codec = [json.loads(l) for l in open(os.path.join(dir, "codec.jsonl"))]
def codec_mb(series, big, lost=None):
    for c in codec:
        if c["series"] == series and (c["working_set_bytes"] > c["stripe_bytes"]) == big \
                and (lost is None or c["data_shards_lost"] == lost):
            return c["mb_per_s"]
    return None
m = max((c["data_shards_lost"] for c in codec), default=0)
raw = {
    "scheme": codec[0]["scheme"] if codec else None,
    "stripe_bytes": codec[0]["stripe_bytes"] if codec else None,
    "simd": codec[0]["simd"] if codec else None,
    "encode_mb_per_s": codec_mb("encode", True),
    "decode_lost_m_mb_per_s": codec_mb("decode", True, m),
    "decode_copy_mb_per_s": codec_mb("decode_copy", True),
    "encode_in_cache_mb_per_s": codec_mb("encode", False),
    "decode_lost_m_in_cache_mb_per_s": codec_mb("decode", False, m),
}
ratio = lambda a, b: round(a / b, 3) if b else None
ec, plain = "ec", "plain"
out = {
    "seconds_per_run": float(seconds), "connections": int(connections),
    "in_flight_1m": int(inflight_1m), "in_flight_4k": int(inflight_4k),
    "cores_per_node": int(cores), "machine_cpus": os.cpu_count(),
    "phases": phases, "raw_codec": raw,
    "put_1m_ratio_4p2_to_1p0": ratio(phases["ec_put_1M"]["mb_per_s"], phases["plain_put_1M"]["mb_per_s"]),
    "put_4k_ratio_4p2_to_1p0": ratio(phases["ec_put_4K"]["mb_per_s"], phases["plain_put_4K"]["mb_per_s"]),
    "get_1m_ratio_4p2_to_1p0": ratio(phases["ec_get_1M"]["mb_per_s"], phases["plain_get_1M"]["mb_per_s"]),
    "get_4k_ratio_4p2_to_1p0": ratio(phases["ec_get_4K"]["mb_per_s"], phases["plain_get_4K"]["mb_per_s"]),
    "coding_share_put_1m_of_busy": phases["ec_put_1M"]["coding_share_of_busy"],
    "coding_share_put_1m_of_node_cpu": phases["ec_put_1M"]["coding_share_of_node_cpu"],
    "coding_share_put_4k_of_busy": phases["ec_put_4K"]["coding_share_of_busy"],
    "coding_share_put_4k_of_node_cpu": phases["ec_put_4K"]["coding_share_of_node_cpu"],
}
json.dump(out, open(os.path.join(dir, "results.json"), "w"), indent=2)

def met(value, target, above):
    if value is None:
        return "n/a"
    return "met" if (value >= target if above else value <= target) else "NOT met"
print(f"\n{'phase':<14} {'MB/s':>9} {'ops/s':>9} {'p50 us':>8} {'p99 us':>8} {'coding s':>9} {'busy s':>8} {'cpu s':>7} {'coding/busy':>11} {'coding/cpu':>10} {'machine':>7}")
for name, p in phases.items():
    share = lambda v: f"{v:.3f}" if v is not None else "-"
    print(f"{name:<14} {p['mb_per_s']:>9.1f} {p['ops_per_s']:>9} {p['latency_us']['p50']:>8} {p['latency_us']['p99']:>8} "
          f"{p['coding_seconds']:>9.3f} {p['core_busy_seconds']:>8.2f} {p['node_cpu_seconds']:>7.2f} "
          f"{share(p['coding_share_of_busy']):>11} {share(p['coding_share_of_node_cpu']):>10} {share(p['machine_busy_fraction']):>7}")
print(f"\nraw codec {raw['scheme']} {raw['stripe_bytes']} B stripes ({raw['simd']}), 64 MiB working set: "
      f"encode {raw['encode_mb_per_s']} MB/s, decode with {m} data shards lost {raw['decode_lost_m_mb_per_s']} MB/s, "
      f"decode with none lost (copy) {raw['decode_copy_mb_per_s']} MB/s")
print(f"cluster 4+2 1 MiB: PUT {phases['ec_put_1M']['mb_per_s']} MB/s vs raw encode {raw['encode_mb_per_s']} MB/s; "
      f"GET {phases['ec_get_1M']['mb_per_s']} MB/s vs raw decode {raw['decode_lost_m_mb_per_s']} MB/s (copy {raw['decode_copy_mb_per_s']})")
print()
rows = [
    ("4+2 PUT 1 MiB / 1+0 PUT 1 MiB", out["put_1m_ratio_4p2_to_1p0"], 0.50, True),
    ("4+2 PUT 4 KiB / 1+0 PUT 4 KiB", out["put_4k_ratio_4p2_to_1p0"], 0.50, True),
    ("coding share of PUT 1 MiB, of core busy time", out["coding_share_put_1m_of_busy"], 0.15, False),
    ("coding share of PUT 1 MiB, of node CPU time", out["coding_share_put_1m_of_node_cpu"], 0.15, False),
    ("coding share of PUT 4 KiB, of core busy time", out["coding_share_put_4k_of_busy"], 0.15, False),
    ("coding share of PUT 4 KiB, of node CPU time", out["coding_share_put_4k_of_node_cpu"], 0.15, False),
]
for label, value, target, above in rows:
    sign = ">=" if above else "<="
    print(f"{label:<48} {value!s:>7}   target {sign} {target:.2f}: {met(value, target, above)}")
print(f"(GET ratios 4+2 / 1+0: 1 MiB {out['get_1m_ratio_4p2_to_1p0']}, 4 KiB {out['get_4k_ratio_4p2_to_1p0']})")
print(f"\nall figures: {os.path.join(dir, 'results.json')}")
PY
