#!/usr/bin/env bash
# The cluster data path (issue 5), all in one run on this machine:
#   1. a 6-node local cluster, scheme 4+2 (`ds dev-cluster up`): `ds bench` PUT and GET of 1 MiB
#      and 4 KiB objects, the client's connections spread over all six nodes;
#   2. a 1-node cluster, scheme 1+0, the same benchmarks (the baseline: no coding, no peers);
#   3. the raw codec: `cargo bench -p ds-objects --bench codec` (reed-solomon-simd, 4+2, 1 MiB
#      stripes), with the nodes stopped.
# Around every phase it reads every node's stats socket (`ds stats --json`) and /proc/PID/stat,
# so the coding share of a PUT is measured three ways:
#   coding_ns summed over all cores of all nodes / busy loop time of all those cores;
#   coding_ns / CPU time (utime + stime) of all node processes (stricter: every thread counts);
#   with perf installed (PERF=0: not), one extra 1 MiB PUT phase under `perf record` on every
#   node: the share of CPU samples inside EcCodec::encode/decode (coding_ns is wall-clock time,
#   which counts a core preempted inside the codec; samples count CPU only).
# It also counts the CPU time of the bench client and of the whole machine (steal included),
# to show who has the 2 vCPUs. Prints a table and writes every figure to DIR/results.json.
# The two clusters run ROUNDS times, alternating (this VM's disk and CPU drift from minute to
# minute); the table gives medians over rounds and every round's figures.
#   bench/cluster.sh [SECONDS] [ROUNDS] [DIR]      (defaults: 5, 3, target/bench/cluster)
# About 70 s per round plus 45 s. Environment: CONNECTIONS (6), INFLIGHT_1M (12), INFLIGHT_4K
# (48), CORES (data cores per node, 1), DEVICE_SIZE (per node, 8G), KEEP=1 keeps the device
# files afterwards, POLL_MODE (the nodes' poll mode, `dev-cluster up --poll-mode`: sleep, as
# dev-cluster sets it), BASELINE_ADAPTIVE (1: each round also runs the 1+0 node with adaptive
# polling, and the better 1+0 figure of the two is the ratio's baseline; 0: not),
# NODE_CONFIG: top-level lines added to every node's config (the nodes are restarted with them
# after `dev-cluster up`), e.g. NODE_CONFIG='adaptive_spin_us = 50'.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
dir=${3:-target/bench/cluster}
connections=${CONNECTIONS:-6}
inflight_1m=${INFLIGHT_1M:-12}
inflight_4k=${INFLIGHT_4K:-48}
cores=${CORES:-1}
node_config=${NODE_CONFIG:-}
poll_mode=${POLL_MODE:-sleep}
baseline_adaptive=${BASELINE_ADAPTIVE:-1}
device_size=${DEVICE_SIZE:-8G}
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 1; }
# PERF=0 skips the perf-sampled PUT phase (it needs perf and about 15 s).
use_perf=${PERF:-1}
perf_hz=299
command -v perf >/dev/null || use_perf=0

cargo build --release --bin ds-appliance --bin ds >&2
# The codec bench is built now too, so building does not run beside the clusters later.
cargo bench -p ds-objects --bench codec --no-run >&2
ds=target/release/ds
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
rm -rf "$dir"/ec* "$dir"/plain* "$dir"/*.json "$dir"/*.jsonl

# Stops the nodes of a cluster: `dev-cluster down`, or, for nodes this script restarted with
# NODE_CONFIG, SIGTERM to the pids it started (then SIGKILL after 20 s).
stop_cluster() {
  local cdir=$1
  if [ ! -e "$cdir/restarted" ]; then
    $ds dev-cluster down --dir "$cdir" >&2
    return
  fi
  local pid
  for pid in $(cat "$cdir/pids"); do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $(cat "$cdir/pids"); do
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$cdir/restarted"
}
clusters=()
stop_all() {
  for c in "${clusters[@]}"; do stop_cluster "$c" >/dev/null 2>&1 || true; done
}
trap stop_all EXIT

# restart_with_config CLUSTER_DIR NODES SCHEME: stops the nodes `dev-cluster up` started, adds
# NODE_CONFIG's lines at the top of every node.toml, starts them again (`ds-appliance --config`),
# and waits until every node serves and can place an object of SCHEME (it knows enough nodes).
restart_with_config() {
  local cdir=$1 nodes=$2 scheme=$3 cfg node
  $ds dev-cluster down --dir "$cdir" >&2
  : > "$cdir/pids"
  for cfg in $(python3 -c 'import json,sys; print(" ".join(n["config"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$cdir/cluster.json"); do
    printf '%s\n' "$node_config" | cat - "$cfg" > "$cfg.new" && mv "$cfg.new" "$cfg"
    target/release/ds-appliance --config "$cfg" >> "$(dirname "$cfg")/node.log" 2>&1 < /dev/null &
    echo $! >> "$cdir/pids"
  done
  touch "$cdir/restarted"
  local deadline=$((SECONDS + 60))
  for node in ${nodes//,/ }; do
    until $ds --node "$node" create --scheme "$scheme" >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || { echo "bench: $node did not come back with NODE_CONFIG" >&2; exit 1; }
      sleep 0.5
    done
  done
}

# One JSON object: the sums over all nodes of a cluster at this moment.
snapshot() {
  python3 - "$1" "$ds" <<'PY'
import json, os, subprocess, sys, time
cluster = json.load(open(os.path.join(sys.argv[1], "cluster.json")))
pids = open(os.path.join(sys.argv[1], "pids")).read().split()
ticks = os.sysconf("SC_CLK_TCK")
out = {"time": time.time(), "coding_ns": 0, "busy_seconds": 0.0, "cpu_seconds": 0.0,
       "stripes_encoded": 0, "bytes_encoded": 0, "stripes_decoded": 0, "bytes_decoded": 0,
       "degraded_reads": 0, "hedged_requests": 0, "failed_reads": 0, "failed_writes": 0,
       "peer_calls_total": 0, "peer_call_errors": 0}
for node, pid in zip(cluster["nodes"], pids):
    report = json.loads(subprocess.run([sys.argv[2], "stats", "--socket", node["stats_socket"], "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    totals = report["totals"]
    out["busy_seconds"] += totals["busy_seconds"]
    for key, value in totals.get("cluster", {}).items():
        if key in out:
            out[key] += value
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_seconds"] += (int(fields[11]) + int(fields[12])) / ticks
# The whole machine: busy and total jiffies of all CPUs.
cpu = [int(v) for v in open("/proc/stat").readline().split()[1:]]
out["machine_total_ticks"] = sum(cpu[:8])
out["machine_idle_ticks"] = cpu[3] + cpu[4]
out["machine_steal_ticks"] = cpu[7]
out["clock_ticks_per_second"] = ticks
print(json.dumps(out))
PY
}

# bench_phase NAME ROUND CLUSTER_DIR NODES SCHEME ARGS...: one `ds bench`, between two
# snapshots; the client's CPU time from its rusage.
bench_phase() {
  local name=$1 round=$2 cdir=$3 nodes=$4 scheme=$5; shift 5
  echo "bench: round $round, $name: ds bench $*" >&2
  sleep 0.3   # a core publishes its counters every 250 ms
  local before after result
  before=$(snapshot "$cdir")
  result=$(python3 -c '
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, stdout=subprocess.PIPE).stdout
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
report = json.loads(out)
report["client_cpu_seconds"] = usage.ru_utime + usage.ru_stime
print(json.dumps(report))' $ds --node "$nodes" bench --duration "$seconds" \
    --connections "$connections" --scheme "$scheme" --json "$@")
  sleep 0.3
  after=$(snapshot "$cdir")
  printf '{"name": "%s", "round": %s, "bench": %s, "before": %s, "after": %s}\n' \
    "$name" "$round" "$result" "$before" "$after" >> "$dir/phases.jsonl"
}

# perf_phase CLUSTER_DIR NODES SCHEME: one more 1 MiB PUT phase with perf sampling every node
# process (call graphs), not counted in the medians: the share of CPU samples with
# EcCodec::encode or EcCodec::decode on the stack is the codec's share of the nodes' CPU time,
# free of the wall-clock timing of coding_ns (which counts a core preempted inside the codec).
perf_phase() {
  local cdir=$1 nodes=$2 scheme=$3 pids
  pids=$(paste -sd, "$cdir/pids")
  # A large buffer: on a busy 2-vCPU machine perf's reader falls behind, and stacks of 16 KiB
  # a sample fill a small one at once (samples are then lost, not slowed down).
  rm -f "$dir/perf.data" "$dir/perf.data.old"
  perf record -F "$perf_hz" -m 64M --call-graph dwarf,16384 -p "$pids" -o "$dir/perf.data" \
    -- sleep "$((seconds + 1))" > "$dir/perf.log" 2>&1 &
  local perf_pid=$!
  bench_phase ec_put_1M_perf 1 "$cdir" "$nodes" "$scheme" --op put --size 1M --concurrency "$inflight_1m"
  wait $perf_pid || true
  echo "bench: reading perf samples" >&2
  perf script -i "$dir/perf.data" 2>/dev/null | python3 -c '
import json, sys
total = coding = 0
hit = started = False
for line in sys.stdin:
    if not line.strip():
        if started:
            total += 1
            coding += hit
        hit = started = False
        continue
    started = True
    hit = hit or "EcCodec::encode" in line or "EcCodec::decode" in line
if started:
    total += 1
    coding += hit
print(json.dumps({"samples": total, "coding_samples": coding, "hz": int(sys.argv[1]),
                  "coding_share_of_samples": round(coding / total, 4) if total else None}))' \
    "$perf_hz" > "$dir/perf.json"
}

# run_cluster NAME ROUND NODES SCHEME POLL_MODE: start, run the four benchmarks, stop.
run_cluster() {
  local name=$1 round=$2 count=$3 scheme=$4 mode=$5 cdir="$dir/$1$2"
  echo "bench: starting $count node(s), scheme $scheme, poll mode $mode, under $cdir" >&2
  clusters+=("$cdir")
  $ds dev-cluster up --nodes "$count" --dir "$cdir" --scheme "$scheme" \
    --device-size "$device_size" --cores "$cores" --poll-mode "$mode" >&2
  local nodes
  nodes=$(python3 -c 'import json,sys; print(",".join(n["client_addr"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$cdir/cluster.json")
  python3 -c 'import json,sys; print("\n".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"]))' "$cdir/cluster.json" > "$cdir/pids"
  if [ -n "$node_config" ]; then restart_with_config "$cdir" "$nodes" "$scheme"; fi
  bench_phase "${name}_put_1M" "$round" "$cdir" "$nodes" "$scheme" --op put --size 1M --concurrency "$inflight_1m"
  bench_phase "${name}_get_1M" "$round" "$cdir" "$nodes" "$scheme" --op get --size 1M --concurrency "$inflight_1m"
  bench_phase "${name}_put_4K" "$round" "$cdir" "$nodes" "$scheme" --op put --size 4K --concurrency "$inflight_4k"
  bench_phase "${name}_get_4K" "$round" "$cdir" "$nodes" "$scheme" --op get --size 4K --concurrency "$inflight_4k"
  if [ "$name" = ec ] && [ "$round" = 1 ] && [ "$use_perf" = 1 ]; then perf_phase "$cdir" "$nodes" "$scheme"; fi
  stop_cluster "$cdir"
  [ "${KEEP:-0}" = 1 ] || rm -f "$cdir"/node*/data/dev0.img
}

: > "$dir/phases.jsonl"
for round in $(seq "$rounds"); do
  run_cluster ec "$round" 6 4+2 "$poll_mode"
  run_cluster plain "$round" 1 1+0 "$poll_mode"
  if [ "$baseline_adaptive" = 1 ] && [ "$poll_mode" != adaptive ]; then
    run_cluster plainadaptive "$round" 1 1+0 adaptive
  fi
done

echo "bench: raw codec (cargo bench -p ds-objects --bench codec, quick mode)" >&2
DS_CODEC_QUICK=1 cargo bench -p ds-objects --bench codec 2>/dev/null | grep '^{' > "$dir/codec.jsonl"

python3 - "$dir" "$seconds" "$rounds" "$connections" "$inflight_1m" "$inflight_4k" "$cores" <<'PY'
import json, os, statistics, sys
dir, seconds, rounds, connections, inflight_1m, inflight_4k, cores = sys.argv[1:]

def phase_figures(p):
    b, a, r = p["before"], p["after"], p["bench"]
    wall = a["time"] - b["time"]
    tick = a["clock_ticks_per_second"]
    machine_total = a["machine_total_ticks"] - b["machine_total_ticks"]
    machine_busy = machine_total - (a["machine_idle_ticks"] - b["machine_idle_ticks"])
    coding = (a["coding_ns"] - b["coding_ns"]) / 1e9
    busy = a["busy_seconds"] - b["busy_seconds"]
    cpu = a["cpu_seconds"] - b["cpu_seconds"]
    client = r.get("client_cpu_seconds", 0.0)
    delta = lambda key: a[key] - b[key]
    return {
        "mb_per_s": round(r["mb_per_second"], 1),
        "ops_per_s": round(r["ops_per_second"]),
        "in_flight": r["concurrency"], "connections": r["connections"],
        "nodes": len(r.get("nodes", [])) or None,
        "latency_us": r["latency_us"],
        "window_seconds": round(wall, 2),
        "coding_seconds": round(coding, 4),
        "core_busy_seconds": round(busy, 3),
        "node_cpu_seconds": round(cpu, 3),
        "client_cpu_seconds": round(client, 3),
        "machine_busy_cpu_seconds": round(machine_busy / tick, 2),
        "other_cpu_seconds": round(machine_busy / tick - cpu - client, 2),
        "steal_cpu_seconds": round(delta("machine_steal_ticks") / tick, 2),
        "machine_busy_fraction": round(machine_busy / machine_total, 3) if machine_total else None,
        "coding_share_of_busy": round(coding / busy, 4) if busy > 0 else None,
        "coding_share_of_node_cpu": round(coding / cpu, 4) if cpu > 0 else None,
        "node_cpu_per_op_us": round(cpu / r["ops"] * 1e6) if r["ops"] else None,
        "stripes_encoded": delta("stripes_encoded"),
        "stripes_decoded": delta("stripes_decoded"),
        "bytes_encoded": delta("bytes_encoded"),
        "degraded_reads": delta("degraded_reads"),
        "hedged_requests": delta("hedged_requests"),
        "failed_reads": delta("failed_reads"),
        "failed_writes": delta("failed_writes"),
        "peer_calls": delta("peer_calls_total"),
        "peer_call_errors": delta("peer_call_errors"),
        "encode_mb_per_s_inside_codec": round(delta("bytes_encoded") / 1e6 / coding) if coding > 0 and delta("bytes_encoded") else None,
    }

runs, perf_phase = {}, None
for line in open(os.path.join(dir, "phases.jsonl")):
    p = json.loads(line)
    if p["name"].endswith("_perf"):
        perf_phase = phase_figures(p)
    else:
        runs.setdefault(p["name"], []).append(phase_figures(p))
perf_path = os.path.join(dir, "perf.json")
if perf_phase is not None and os.path.exists(perf_path):
    perf_phase["perf"] = json.load(open(perf_path))
    # Samples expected from the nodes' CPU time in the phase (perf ran about as long): far
    # fewer means perf lost samples and the share is not to be trusted.
    perf_phase["perf"]["samples_expected"] = round(perf_phase["node_cpu_seconds"] * perf_phase["perf"].get("hz", 0))

def median(name, key):
    values = [r[key] for r in runs[name] if r[key] is not None]
    return statistics.median(values) if values else None

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
    "all": codec,
}
ratio = lambda a, b: round(a / b, 3) if a is not None and b else None
def baseline(op):
    # The 1+0 node's better figure of each round: its own poll mode, or adaptive polling.
    plain = [p["mb_per_s"] for p in runs[f"plain_{op}"]]
    other = [p["mb_per_s"] for p in runs.get(f"plainadaptive_{op}", [])]
    return [max(p, o) for p, o in zip(plain, other)] if other else plain
def ratios(op):
    ec, base = f"ec_{op}", baseline(op)
    per_round = [ratio(e["mb_per_s"], b) for e, b in zip(runs[ec], base)]
    return ratio(median(ec, "mb_per_s"), statistics.median(base)), per_round
out = {
    "seconds_per_run": float(seconds), "rounds": int(rounds), "connections": int(connections),
    "in_flight_1m": int(inflight_1m), "in_flight_4k": int(inflight_4k),
    "cores_per_node": int(cores), "machine_cpus": os.cpu_count(),
    "node_config": os.environ.get("NODE_CONFIG", ""),
    "poll_mode": os.environ.get("POLL_MODE", "sleep"),
    "baseline_1p0_mb_per_s": {op: baseline(op) for op in ("put_1M", "put_4K", "get_1M", "get_4K")},
    "medians": {name: {key: median(name, key) for key in ("mb_per_s", "ops_per_s",
                "coding_share_of_busy", "coding_share_of_node_cpu", "node_cpu_seconds",
                "client_cpu_seconds", "other_cpu_seconds", "steal_cpu_seconds",
                "node_cpu_per_op_us", "machine_busy_fraction")} for name in runs},
    "runs": runs, "raw_codec": raw, "perf_put_1m": perf_phase,
}
for op in ("put_1M", "put_4K", "get_1M", "get_4K"):
    out[f"{op.lower()}_ratio_4p2_to_1p0"], out[f"{op.lower()}_ratio_4p2_to_1p0_per_round"] = ratios(op)
for op in ("put_1M", "put_4K"):
    for of in ("busy", "node_cpu"):
        out[f"coding_share_{op.lower()}_of_{of}"] = median(f"ec_{op}", f"coding_share_of_{of}")
out["coding_share_put_1m_of_perf_samples"] = (perf_phase or {}).get("perf", {}).get("coding_share_of_samples")
json.dump(out, open(os.path.join(dir, "results.json"), "w"), indent=2)

share = lambda v: f"{v:.3f}" if v is not None else "-"
print(f"\nmedians of {rounds} rounds of {seconds} s; every round after the table; "
      f"poll mode {out['poll_mode']}; node config: {out['node_config'] or 'as dev-cluster writes it'}; "
      f"ratios against the better 1+0 run of each round (plain: same poll mode, plainadaptive: adaptive)")
print(f"{'phase':<14} {'MB/s':>8} {'ops/s':>7} {'node cpu s':>10} {'client':>7} {'other':>6} {'steal':>6} "
      f"{'cpu us/op':>9} {'coding/busy':>11} {'coding/cpu':>10}")
busy_others = []
for name, rs in runs.items():
    for i, r in enumerate(rs):
        # CPU used neither by the nodes nor by the client (kernel threads, and any other
        # process on the machine): more than a quarter of a CPU means the run was not alone.
        if r["window_seconds"] > 0 and r["other_cpu_seconds"] / r["window_seconds"] > 0.25:
            busy_others.append(f"{name} round {i + 1}")
out["phases_with_other_load"] = busy_others
json.dump(out, open(os.path.join(dir, "results.json"), "w"), indent=2)
for name in runs:
    md = out["medians"][name]
    print(f"{name:<14} {md['mb_per_s']:>8.1f} {md['ops_per_s']:>7.0f} {md['node_cpu_seconds']:>10.2f} "
          f"{md['client_cpu_seconds']:>7.2f} {md['other_cpu_seconds']:>6.2f} {md['steal_cpu_seconds']:>6.2f} "
          f"{md['node_cpu_per_op_us']!s:>9} {share(md['coding_share_of_busy']):>11} {share(md['coding_share_of_node_cpu']):>10}")
print(f"\n{'phase':<14} " + " ".join(f"{'r' + str(i + 1) + ' MB/s':>10} {'p50/p99 ms':>13}" for i in range(int(rounds))))
for name, rs in runs.items():
    cells = " ".join(f"{r['mb_per_s']:>10.1f} {r['latency_us']['p50'] / 1000:>6.1f}/{r['latency_us']['p99'] / 1000:<6.0f}" for r in rs)
    print(f"{name:<14} {cells}")
print(f"\nraw codec {raw['scheme']} {raw['stripe_bytes']} B stripes ({raw['simd']}), 64 MiB working set: "
      f"encode {raw['encode_mb_per_s']} MB/s, decode with {m} data shards lost {raw['decode_lost_m_mb_per_s']} MB/s, "
      f"decode with none lost (copy) {raw['decode_copy_mb_per_s']} MB/s")
print(f"cluster 4+2 1 MiB (medians): PUT {median('ec_put_1M', 'mb_per_s'):.1f} MB/s vs raw encode {raw['encode_mb_per_s']} MB/s; "
      f"GET {median('ec_get_1M', 'mb_per_s'):.1f} MB/s vs raw decode {raw['decode_lost_m_mb_per_s']} MB/s (copy {raw['decode_copy_mb_per_s']})")
print()
def met(value, target, above):
    if value is None:
        return "n/a"
    return "met" if (value >= target if above else value <= target) else "NOT met"
rows = [
    ("4+2 PUT 1 MiB / 1+0 PUT 1 MiB", "put_1m_ratio_4p2_to_1p0", 0.50, True),
    ("4+2 PUT 4 KiB / 1+0 PUT 4 KiB", "put_4k_ratio_4p2_to_1p0", 0.50, True),
    ("coding share of PUT 1 MiB, of node CPU samples (perf)", "coding_share_put_1m_of_perf_samples", 0.15, False),
    ("coding share of PUT 1 MiB, of node CPU time", "coding_share_put_1m_of_node_cpu", 0.15, False),
    ("coding share of PUT 1 MiB, of core busy time", "coding_share_put_1m_of_busy", 0.15, False),
    ("coding share of PUT 4 KiB, of node CPU time", "coding_share_put_4k_of_node_cpu", 0.15, False),
    ("coding share of PUT 4 KiB, of core busy time", "coding_share_put_4k_of_busy", 0.15, False),
]
for label, key, target, above in rows:
    sign = ">=" if above else "<="
    rounds_note = out.get(key + "_per_round")
    extra = f"  (rounds {rounds_note})" if rounds_note else ""
    print(f"{label:<53} {round(out[key], 3) if out[key] is not None else None!s:>7}   target {sign} {target:.2f}: {met(out[key], target, above)}{extra}")
print(f"GET 4+2 / 1+0: 1 MiB {out['get_1m_ratio_4p2_to_1p0']} (rounds {out['get_1m_ratio_4p2_to_1p0_per_round']}), "
      f"4 KiB {out['get_4k_ratio_4p2_to_1p0']} (rounds {out['get_4k_ratio_4p2_to_1p0_per_round']})")
if perf_phase is not None:
    pf = perf_phase.get("perf", {})
    print(f"perf-sampled 1 MiB PUT phase: {perf_phase['mb_per_s']} MB/s, {pf.get('samples')} samples of the nodes "
          f"(about {pf['samples_expected']} expected from their CPU time), "
          f"{pf.get('coding_samples')} in EcCodec: {pf.get('coding_share_of_samples')}; same phase by the counters: "
          f"coding_ns / node CPU {perf_phase['coding_share_of_node_cpu']}, / busy {perf_phase['coding_share_of_busy']}")
    if not pf.get("coding_samples") and perf_phase["stripes_encoded"]:
        print("  (no sample in EcCodec although stripes were encoded: perf's unwinding failed? see DIR/perf.data)")
if busy_others:
    print(f"\nWARNING: other work used more than 1/4 CPU during {len(busy_others)} phases "
          f"({', '.join(busy_others)}): these figures are not from a quiet machine")
print(f"\nall figures: {os.path.join(dir, 'results.json')}")
PY
