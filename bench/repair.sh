#!/usr/bin/env bash
# Repair after the loss of one node (issue 6), all in one run on this machine:
#   1. a 7-node local cluster, scheme 4+2, repair passes every 2 s (`ds dev-cluster up`);
#   2. OBJECTS objects of SIZE written with `ds put` (one random file, spread over the nodes);
#   3. wait until every node's `ds admin health` shows a pass after the writes with degraded 0,
#      lost 0, repair_backlog 0; record every node's used bytes (stats socket) and health;
#   4. SIGKILL one node; every POLL seconds read the health of every survivor and their node.log
#      ("overlay peer removed" with the dead node's address: the overlay drops a node after
#      up to about 25 s without answers, and only then does placement leave it); done when
#      every survivor has seen the removal and shows, from a pass started after the kill,
#      degraded 0, lost 0, repair_backlog 0;
#   5. read every object back and compare it with the file written (after the clock stopped);
#   6. `ds dev-cluster down`, then fio on one node's device file: 1 MiB sequential write (which
#      also fills the sparse file, so the read touches the disk) and 1 MiB sequential read,
#      queue depth 8: the machine's own limit, measured in the same run.
# Reports bytes rebuilt (sum of the survivors' bytes_rebuilt deltas), the bytes that had to move
# (the dead node's used bytes before the kill, and 1/NODES of all nodes' used bytes), time to full
# redundancy from the kill and from the overlay's removal, MB/s rebuilt, and the ratios to fio.
# Prints a table and writes every figure to DIR/results.json.
#   bench/repair.sh [DIR]      (default target/bench/repair; about 1 minute with the defaults,
#   2 to 3 with OBJECTS=500)
# Environment: OBJECTS (100), SIZE (4M), NODES (7), SCHEME (4+2), VICTIM (index of the node
# killed; default the last), DEVICE_SIZE (4G), INTERVAL (repair interval, 2 s), CORES (1),
# POLL (0.5 s), TIMEOUT (300 s, for each wait), FIO_SECONDS (5), KEEP=1 keeps the device files.
# Needs fio and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/bench/repair}
objects=${OBJECTS:-100}
size=${SIZE:-4M}
nodes=${NODES:-7}
scheme=${SCHEME:-4+2}
victim=${VICTIM:-$((nodes - 1))}
device_size=${DEVICE_SIZE:-4G}
interval=${INTERVAL:-2}
cores=${CORES:-1}
poll=${POLL:-0.5}
timeout=${TIMEOUT:-300}
fio_seconds=${FIO_SECONDS:-5}
for tool in fio python3; do
  command -v $tool >/dev/null || { echo "bench: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release --bin ds-appliance --bin ds >&2
ds=target/release/ds
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
cdir="$dir/cluster"
if [ -e "$cdir/cluster.json" ]; then $ds dev-cluster down --dir "$cdir" >&2 || true; fi
rm -rf "$cdir" "$dir"/*.json "$dir"/*.txt "$dir/object.bin"
trap '$ds dev-cluster down --dir "$cdir" >/dev/null 2>&1 || true' EXIT

echo "bench: starting $nodes nodes, scheme $scheme, repair every $interval s, under $cdir" >&2
$ds dev-cluster up --nodes "$nodes" --dir "$cdir" --scheme "$scheme" --repair-interval "$interval" \
  --device-size "$device_size" --cores "$cores" >&2
mapfile -t addrs < <(python3 -c 'import json,sys; print("\n".join(n["client_addr"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$cdir/cluster.json")

size_bytes=$(python3 -c 'import sys; s=sys.argv[1].upper(); u={"K":1<<10,"M":1<<20,"G":1<<30}; print(int(s[:-1])*u[s[-1]] if s[-1] in u else int(s))' "$size")
head -c "$size_bytes" /dev/urandom > "$dir/object.bin"
echo "bench: writing $objects objects of $size (ds put, spread over the nodes)" >&2
: > "$dir/ids.txt"
write_started=$(date +%s.%N)
for i in $(seq 0 $((objects - 1))); do
  node=${addrs[$((i % nodes))]}
  $ds --node "$node" put "$dir/object.bin" --scheme "$scheme" >> "$dir/ids.txt"
done
write_ended=$(date +%s.%N)

echo "bench: waiting for full redundancy, killing node $victim, waiting for repair" >&2
python3 - "$cdir/cluster.json" "$ds" "$victim" "$poll" "$timeout" "$dir/measure.json" <<'PY'
import json, os, re, signal, subprocess, sys, time
from datetime import datetime
cluster_path, ds, victim, poll, timeout, out_path = sys.argv[1:]
victim, poll, timeout = int(victim), float(poll), float(timeout)
nodes = json.load(open(cluster_path))["nodes"]
survivors = [i for i in range(len(nodes)) if i != victim]

def health_all(indices):
    """`ds admin health --json` of every node in `indices`, concurrently; None where it failed."""
    procs = {i: subprocess.Popen([ds, "--node", nodes[i]["client_addr"], "admin", "health", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in indices}
    out = {}
    for i, p in procs.items():
        text, _ = p.communicate()
        try:
            out[i] = json.loads(text) if p.returncode == 0 else None
        except ValueError:
            out[i] = None
    return out

def stats(i):
    text = subprocess.run([ds, "stats", "--socket", nodes[i]["stats_socket"], "--json"],
                          check=True, capture_output=True, text=True).stdout
    return json.loads(text)

def clean(h):
    return h is not None and h["degraded"] == 0 and h["lost"] == 0 and h["repair_backlog"] == 0

# 1. Full redundancy before the kill: two passes after the writes, all clean.
start = health_all(range(len(nodes)))
base_passes = {i: (h or {}).get("passes", 0) for i, h in start.items()}
t0 = time.time()
while True:
    hs = health_all(range(len(nodes)))
    if all(clean(h) and h["passes"] >= base_passes[i] + 2 for i, h in hs.items()):
        break
    if time.time() - t0 > timeout:
        sys.exit(f"bench: no full redundancy before the kill after {timeout} s: {hs}")
    time.sleep(poll)
steady_seconds = time.time() - t0
before = {i: stats(i) for i in range(len(nodes))}
used = {i: before[i]["totals"]["used_bytes"] for i in before}
health_before = hs

# 2. Kill.
victim_addr = nodes[victim]["overlay_addr"]
log_offsets = {i: os.path.getsize(nodes[i]["log"]) for i in survivors}
passes_at_kill = {i: hs[i]["passes"] for i in survivors}
load_at_kill = os.getloadavg()
t_kill = time.time()
os.kill(nodes[victim]["pid"], signal.SIGKILL)

ansi = re.compile(r"\x1b\[[0-9;]*m")
removed = {}   # survivor -> (log timestamp, poll time it was seen, passes at that poll)
def scan_logs(passes_now):
    for i in survivors:
        if i in removed:
            continue
        with open(nodes[i]["log"], errors="replace") as f:
            f.seek(log_offsets[i])
            text = f.read()
        for line in text.splitlines():
            line = ansi.sub("", line)
            if "overlay peer removed" in line and f"addr={victim_addr}" in line:
                stamp = line.split()[0]
                try:
                    when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    when = time.time()
                removed[i] = (when, time.time(), passes_now.get(i))
                break

polls = []
first_change = last_change = None
base_rebuilt = {i: health_before[i]["bytes_rebuilt"] for i in survivors}
base_shards = {i: health_before[i]["shards_rebuilt"] for i in survivors}
prev_sum = 0
t_full = None
while True:
    t = time.time()
    hs = health_all(survivors)
    passes_now = {i: (h or {}).get("passes") for i, h in hs.items()}
    scan_logs(passes_now)
    rebuilt = sum((h or {}).get("bytes_rebuilt", base_rebuilt[i]) - base_rebuilt[i] for i, h in hs.items())
    if rebuilt != prev_sum:
        first_change = first_change or t
        last_change = t
        prev_sum = rebuilt
    polls.append({"t": round(t - t_kill, 3), "bytes_rebuilt": rebuilt,
                  "per_survivor": {i: (h or {}).get("bytes_rebuilt", base_rebuilt[i]) - base_rebuilt[i]
                                   for i, h in hs.items()},
                  "removed_on": len(removed),
                  "degraded": sum((h or {}).get("degraded", 0) for h in hs.values()),
                  "repair_backlog": sum((h or {}).get("repair_backlog", 0) for h in hs.values()),
                  "failed_polls": sum(h is None for h in hs.values())})
    # A pass that started after the kill (passes at the kill + 2: the one running then may have
    # surveyed the dead node while it lived) finds the dead node's shards missing, so a clean
    # one means they were rebuilt elsewhere.
    done = len(removed) == len(survivors) and all(
        clean(h) and h["passes"] >= passes_at_kill[i] + 2 for i, h in hs.items())
    if done:
        t_full = t
        break
    if t - t_kill > timeout:
        break
    time.sleep(max(0.0, poll - (time.time() - t)))

after = hs
removal_first = min((r[0] for r in removed.values()), default=None)
removal_last = max((r[0] for r in removed.values()), default=None)
out = {
    "load_average_at_kill": [round(x, 2) for x in load_at_kill],
    "machine_cpus": os.cpu_count(),
    "victim": victim, "victim_addr": victim_addr, "victim_used_bytes": used[victim],
    "used_bytes_all_nodes": sum(used.values()), "used_bytes": used,
    "seconds_to_steady_before_kill": round(steady_seconds, 2),
    "repaired": t_full is not None,
    "seconds_kill_to_full": round(t_full - t_kill, 2) if t_full else None,
    "seconds_kill_to_removal_first": round(removal_first - t_kill, 2) if removal_first else None,
    "seconds_kill_to_removal_all": round(removal_last - t_kill, 2) if removal_last else None,
    "seconds_removal_to_full": round(t_full - removal_first, 2) if t_full and removal_first else None,
    "seconds_removal_all_to_full": round(t_full - removal_last, 2) if t_full and removal_last else None,
    "seconds_removal_to_last_rebuild_seen": round(last_change - removal_first, 2) if last_change and removal_first else None,
    "seconds_first_to_last_rebuild_seen": round(last_change - first_change, 2) if last_change else None,
    # The poll intervals in which bytes_rebuilt grew: how long rebuilding actually ran (to
    # within a poll), without the waits for the overlay and for passes.
    "seconds_rebuilding": round(sum(b["t"] - a["t"] for a, b in zip(polls, polls[1:])
                                    if b["bytes_rebuilt"] > a["bytes_rebuilt"]), 2),
    "seconds_kill_to_first_rebuild_seen": round(first_change - t_kill, 2) if first_change else None,
    "bytes_rebuilt": sum(after[i]["bytes_rebuilt"] - base_rebuilt[i] for i in survivors if after.get(i)),
    "shards_rebuilt": sum(after[i]["shards_rebuilt"] - base_shards[i] for i in survivors if after.get(i)),
    "bytes_rebuilt_per_survivor": {i: after[i]["bytes_rebuilt"] - base_rebuilt[i] for i in survivors if after.get(i)},
    # Each survivor's rebuilding time (poll intervals in which its bytes_rebuilt grew).
    "seconds_rebuilding_per_survivor": {i: round(sum(b["t"] - a["t"] for a, b in zip(polls, polls[1:])
                                                     if b["per_survivor"][i] > a["per_survivor"][i]), 2)
                                        for i in survivors},
    "health_before": health_before, "health_after": after, "polls": polls,
}
json.dump(out, open(out_path, "w"), indent=2)
if t_full is None:
    sys.exit(f"bench: no full redundancy {timeout} s after the kill; see {out_path}")
PY

echo "bench: reading every object back" >&2
expected=$(sha256sum < "$dir/object.bin" | cut -d' ' -f1)
mismatches=0
i=0
while read -r id; do
  node=${addrs[$((i % nodes))]}
  [ "$((i % nodes))" = "$victim" ] && node=${addrs[$(((i + 1) % nodes))]}
  got=$($ds --node "$node" get "$id" | sha256sum | cut -d' ' -f1) || got=failed
  [ "$got" = "$expected" ] || mismatches=$((mismatches + 1))
  i=$((i + 1))
done < "$dir/ids.txt"

repair_rate=$(sed -n 's/^rate *= *//p' "$cdir"/node0/node.toml | head -1)
$ds dev-cluster down --dir "$cdir" >&2
trap - EXIT

fio_file="$cdir/node0/data/dev0.img"
fio_run() {
  fio --output-format=json --name=bench --filename="$fio_file" --direct=1 --ioengine=io_uring \
    --size="$device_size" --time_based --runtime="$fio_seconds" --bs=1M --iodepth=8 "$@" \
    | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(json.dumps({"read_mb_per_s": j["read"]["bw_bytes"]/1e6, "write_mb_per_s": j["write"]["bw_bytes"]/1e6}))'
}
echo "bench: fio on $fio_file" >&2
fio_write=$(fio_run --rw=write)
fio_read=$(fio_run --rw=read)
[ "${KEEP:-0}" = 1 ] || rm -f "$cdir"/node*/data/dev0.img

python3 - "$dir" "$objects" "$size_bytes" "$nodes" "$scheme" "$interval" "$cores" "$write_started" \
  "$write_ended" "$mismatches" "${repair_rate:-default}" "$fio_write" "$fio_read" "$poll" "$device_size" <<'PY'
import json, os, sys
(dir, objects, size, nodes, scheme, interval, cores, w0, w1, mismatches, rate,
 fio_write, fio_read, poll, device_size) = sys.argv[1:]
objects, size, nodes, cores = int(objects), int(size), int(nodes), int(cores)
k, m = (int(x) for x in scheme.split("+"))
mm = json.load(open(os.path.join(dir, "measure.json")))
fw, fr = json.loads(fio_write), json.loads(fio_read)
logical = objects * size
shard_bytes = logical * (k + m) // k
rebuilt = mm["bytes_rebuilt"]
mb = lambda b: round(b / 1e6, 1)
rate_of = lambda secs: round(rebuilt / 1e6 / secs, 1) if secs else None
def ratio(v, limit):
    return round(v / limit, 4) if v is not None and limit else None
out = {
    "command": "bench/repair.sh " + dir,
    "nodes": nodes, "scheme": scheme, "objects": objects, "object_bytes": size,
    "cores_per_node": cores, "repair_interval_s": int(interval), "poll_s": float(poll),
    "device_size": device_size,
    "repair_rate_setting": rate if rate != "default" else "128M per core (default)",
    "write_mb_per_s": round(logical / 1e6 / (float(w1) - float(w0)), 1),
    "logical_bytes": logical, "shard_bytes_written": shard_bytes,
    "used_bytes_all_nodes": mm["used_bytes_all_nodes"],
    "victim_used_bytes": mm["victim_used_bytes"],
    "share_of_used_bytes": mm["used_bytes_all_nodes"] // nodes,
    "share_of_shard_bytes": shard_bytes // nodes,
    "bytes_rebuilt": rebuilt, "shards_rebuilt": mm["shards_rebuilt"],
    "rebuilt_over_victim_used": round(rebuilt / mm["victim_used_bytes"], 3) if mm["victim_used_bytes"] else None,
    "rebuilt_over_shard_share": round(rebuilt / (shard_bytes / nodes), 3),
    "seconds_kill_to_removal": mm["seconds_kill_to_removal_first"],
    "seconds_kill_to_removal_all": mm["seconds_kill_to_removal_all"],
    "seconds_kill_to_full": mm["seconds_kill_to_full"],
    "seconds_removal_to_full": mm["seconds_removal_to_full"],
    "seconds_removal_all_to_full": mm["seconds_removal_all_to_full"],
    "seconds_removal_to_last_rebuild_seen": mm["seconds_removal_to_last_rebuild_seen"],
    "seconds_rebuilding": mm["seconds_rebuilding"],
    "seconds_kill_to_first_rebuild_seen": mm["seconds_kill_to_first_rebuild_seen"],
    "mb_per_s_rebuilt_removal_to_full": rate_of(mm["seconds_removal_to_full"]),
    "mb_per_s_rebuilt_removal_to_last_rebuild": rate_of(mm["seconds_removal_to_last_rebuild_seen"]),
    "mb_per_s_rebuilt_kill_to_full": rate_of(mm["seconds_kill_to_full"]),
    "mb_per_s_rebuilt_while_rebuilding": rate_of(mm["seconds_rebuilding"]),
    "fio_seq_write_1m_mb_per_s": round(fw["write_mb_per_s"], 1),
    "fio_seq_read_1m_mb_per_s": round(fr["read_mb_per_s"], 1),
    "read_back_mismatches": int(mismatches),
    "load_average_at_kill": mm["load_average_at_kill"], "machine_cpus": mm["machine_cpus"],
    "bytes_rebuilt_per_survivor": mm["bytes_rebuilt_per_survivor"],
    "seconds_rebuilding_per_survivor": mm["seconds_rebuilding_per_survivor"],
    "polls": mm["polls"],
}
# The busiest survivor (the leader of most of the lost shards' objects: repair runs on the node
# closest to an object's id) and its rate while it rebuilt, beside the [repair] rate: stripe bytes
# per second per core, so rate / K of rebuilt shard bytes per core when one shard of a stripe is lost.
per = {int(i): b for i, b in mm["bytes_rebuilt_per_survivor"].items()}
busiest = max(per, key=per.get) if per else None
if busiest is not None:
    secs = mm["seconds_rebuilding_per_survivor"].get(str(busiest))
    rate_bytes = 128 << 20 if rate == "default" else None
    out["busiest_survivor"] = busiest
    out["busiest_survivor_share"] = round(per[busiest] / rebuilt, 3) if rebuilt else None
    out["busiest_survivor_mb_per_s_while_rebuilding"] = round(per[busiest] / 1e6 / secs, 1) if secs else None
    out["repair_rate_shard_mb_per_s_per_core"] = round(rate_bytes * cores / k / 1e6, 1) if rate_bytes else None
    out["busiest_survivor_ratio_to_repair_rate"] = ratio(out["busiest_survivor_mb_per_s_while_rebuilding"], out["repair_rate_shard_mb_per_s_per_core"]) if rate_bytes else None
fio_read_mb = out["fio_seq_read_1m_mb_per_s"]
out["ratio_rebuilt_removal_to_full_over_fio_read"] = ratio(out["mb_per_s_rebuilt_removal_to_full"], fio_read_mb)
out["ratio_rebuilt_while_rebuilding_over_fio_read"] = ratio(out["mb_per_s_rebuilt_while_rebuilding"], fio_read_mb)
# repair_stripe reads every surviving shard of a stripe (K + M - 1 when one is lost) for every
# shard it writes: device bytes per rebuilt byte are K + M (those reads and one write).
out["device_mb_per_s_while_rebuilding"] = round(out["mb_per_s_rebuilt_while_rebuilding"] * (k + m), 1) if out["mb_per_s_rebuilt_while_rebuilding"] else None
out["ratio_device_traffic_while_rebuilding_over_fio_read"] = ratio(out["device_mb_per_s_while_rebuilding"], fio_read_mb)
json.dump(out, open(os.path.join(dir, "results.json"), "w"), indent=2)

rows = [
    ("objects written", f"{objects} x {mb(size)} MB, {scheme}, {nodes} nodes ({out['write_mb_per_s']} MB/s with ds put, one at a time)"),
    ("shard bytes stored (all nodes)", f"{mb(shard_bytes)} MB; device used {mb(out['used_bytes_all_nodes'])} MB"),
    ("had to move (dead node's share)", f"{mb(out['victim_used_bytes'])} MB used on it; 1/{nodes} of shards {mb(out['share_of_shard_bytes'])} MB"),
    ("bytes rebuilt (survivors)", f"{mb(rebuilt)} MB in {out['shards_rebuilt']} shards ({out['rebuilt_over_shard_share']} of the 1/{nodes} share)"),
    ("kill -> overlay removal", f"{out['seconds_kill_to_removal']} s on the first survivor, {out['seconds_kill_to_removal_all']} s on the last"),
    ("kill -> full redundancy", f"{out['seconds_kill_to_full']} s"),
    ("removal -> full redundancy", f"{out['seconds_removal_to_full']} s from the first removal, {out['seconds_removal_all_to_full']} s from the last (last rebuild seen {out['seconds_removal_to_last_rebuild_seen']} s after the first)"),
    ("rebuilding (polls with progress)", f"{out['seconds_rebuilding']} s"),
    ("MB/s rebuilt", f"{out['mb_per_s_rebuilt_while_rebuilding']} while rebuilding; {out['mb_per_s_rebuilt_removal_to_full']} removal -> full; {out['mb_per_s_rebuilt_kill_to_full']} kill -> full"),
    ("[repair] rate", f"{out['repair_rate_setting']}: {out.get('repair_rate_shard_mb_per_s_per_core')} MB/s of rebuilt shards per core at K = {k}"),
    ("rebuilt by each survivor (MB)", ", ".join(f"node{i} {mb(b)}" for i, b in sorted(per.items()))),
    ("busiest survivor while rebuilding", f"node{out.get('busiest_survivor')}: {out.get('busiest_survivor_share')} of the bytes at {out.get('busiest_survivor_mb_per_s_while_rebuilding')} MB/s, {out.get('busiest_survivor_ratio_to_repair_rate')} of the [repair] rate"),
    ("fio 1 MiB QD8 seq read / write", f"{fio_read_mb} / {out['fio_seq_write_1m_mb_per_s']} MB/s (node0's device file)"),
    ("rebuilt MB/s / fio read", f"{out['ratio_rebuilt_while_rebuilding_over_fio_read']} while rebuilding (device bytes x(K+M): {out['ratio_device_traffic_while_rebuilding_over_fio_read']}); removal -> full {out['ratio_rebuilt_removal_to_full_over_fio_read']}"),
    ("objects read back wrong", str(mismatches)),
    ("load average at the kill", f"{mm['load_average_at_kill']} on {mm['machine_cpus']} CPUs"),
]
print()
for key, value in rows:
    print(f"{key:<34} {value}")
print(f"\npoll s after kill: bytes rebuilt so far / survivors that saw the removal / degraded / backlog")
print("  " + "  ".join(f"{p['t']}:{mb(p['bytes_rebuilt'])}/{p['removed_on']}/{p['degraded']}/{p['repair_backlog']}"
                        for p in out["polls"][:: max(1, len(out['polls']) // 40)]))
print()
print(json.dumps({k: v for k, v in out.items() if k not in ("polls", "bytes_rebuilt_per_survivor")}, indent=2))
print(f"\nall figures: {os.path.join(dir, 'results.json')}")
PY
