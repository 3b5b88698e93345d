#!/usr/bin/env bash
# hookbus side by side with redis-server and beanstalkd, driven by the same
# generator (`hookbus bench`), with the same durability; prints one table with
# the ratios hookbus/peer. See tools/bench/README.md.
#
#   tools/bench/run.sh                 build release, install the peers if missing, run, print
#   RUNS=1 BENCH_SECONDS=2 tools/bench/run.sh     a quick look
#
# Environment:
#   RUNS            runs of every measurement; the table shows medians (default 3)
#   BENCH_SECONDS   measured seconds of each throughput run (default 4), after a 1 s warm-up
#   BENCH_KEEP      a directory to keep the raw JSON results in (default: discarded)
#   BENCH_SCRATCH   SwiftPM scratch path for the release build (default .build)
#   BENCH_SKIP_BUILD=1   use the release binaries already built
#   BENCH_MARKDOWN=1     print the table as Markdown (for README.md)
#
# It installs redis-server and beanstalkd with apt-get when they are missing,
# so it needs root (or sudo). CI never runs it: it refuses to start under CI=true.
# Everything it starts lives in a temporary directory and is stopped on exit.
# Bounded: about 5 minutes with the defaults on 2 cores (plus the build).
set -euo pipefail

if [[ "${CI:-}" == "true" && -z "${BENCH_FORCE:-}" ]]; then
    echo "tools/bench/run.sh: not under CI (benchmarks are run by hand; BENCH_FORCE=1 overrides)" >&2
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-3}
SECS=${BENCH_SECONDS:-4}
SCRATCH=${BENCH_SCRATCH:-$ROOT/.build}

log() { printf '%s\n' "bench: $*" >&2; }

# --- build and peers --------------------------------------------------------
if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    (cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" >&2)
fi
BIN=$(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
HOOKBUS=$BIN/hookbus
HOOKBUSD=$BIN/hookbusd
[[ -x $HOOKBUS && -x $HOOKBUSD ]] || { echo "no release binaries in $BIN" >&2; exit 1; }

install_missing() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v beanstalkd >/dev/null || missing+=(beanstalkd)
    ((${#missing[@]} == 0)) && return
    log "installing ${missing[*]} with apt-get"
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
}
install_missing

# Other brokers or peers already running share the two cores and skew every
# figure (a test run cut short, `swift test | head`, leaves its brokers
# behind): say so before measuring. BENCH_ALLOW_BUSY=1 measures anyway.
busy=$(ps -o pid=,stat= -C hookbusd,redis-server,beanstalkd | awk '$2 !~ /^Z/ { printf "%s%s", sep, $1; sep = " " }' || true)
if [[ -n "$busy" ]]; then
    log "other hookbusd, redis-server or beanstalkd processes are running (pids $busy):"
    ps -o pid=,etime=,args= -p "${busy// /,}" >&2 || true
    if [[ -z "${BENCH_ALLOW_BUSY:-}" ]]; then
        log "stop them first, or set BENCH_ALLOW_BUSY=1 to measure anyway"
        exit 1
    fi
fi

# --- processes --------------------------------------------------------------
WORK=$(mktemp -d /tmp/hookbus-bench.XXXXXX)
RESULTS=${BENCH_KEEP:-$WORK/results}
mkdir -p "$RESULTS"
SERVER_PID=
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # hookbusd finishes its commits first; give it a moment, then insist.
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

wait_for() {  # wait_for DESCRIPTION LOG COMMAND...: retry for 10 s; on failure show LOG and stop
    local what=$1 log=$2; shift 2
    for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "bench: $what did not come up; the end of $log:" >&2
    tail -n 5 "$log" >&2 2>/dev/null || true
    exit 1
}

# Each measurement gets a fresh server with an empty store in its own directory.
fresh() { rm -rf "$WORK/data"; mkdir -p "$WORK/data"; }

start_hookbusd() {  # start_hookbusd [CONFIG [keep]]: keep reuses the database
    stop_server
    [[ "${2:-}" == keep ]] || fresh
    local config=()
    [[ -n "${1:-}" ]] && config=(--config "$1")
    "$HOOKBUSD" "${config[@]}" --socket "$WORK/hookbus.sock" --db "$WORK/data/hookbus.db" --log-level warning \
        2>>"$WORK/hookbusd.log" &
    SERVER_PID=$!
    wait_for hookbusd "$WORK/hookbusd.log" "$HOOKBUS" ping --socket "$WORK/hookbus.sock"
}

start_redis() {
    stop_server
    fresh
    redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --dir "$WORK/data" \
        --appendonly yes --appendfsync always --save '' --daemonize no --logfile "$WORK/redis.log" &
    SERVER_PID=$!
    wait_for redis-server "$WORK/redis.log" redis-cli -s "$WORK/redis.sock" ping
}

start_beanstalkd() {
    stop_server
    fresh
    # beanstalkd leaves its socket behind: remove it, so readiness means this one listens.
    rm -f "$WORK/beanstalkd.sock"
    beanstalkd -l "unix:$WORK/beanstalkd.sock" -f 0 -b "$WORK/data" 2>>"$WORK/beanstalkd.log" &
    SERVER_PID=$!
    wait_for beanstalkd "$WORK/beanstalkd.log" python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' \
        "$WORK/beanstalkd.sock"
}

no_server() { stop_server; fresh; }

# bench SCENARIO TARGET RUN ARGS...: one measurement, its JSON kept as SCENARIO.TARGET.RUN.json
bench() {
    local scenario=$1 target=$2 run=$3; shift 3
    local out="$RESULTS/$scenario.$target.$run.json"
    local address=()
    case $target in
        hookbus*) address=(--target hookbus --socket "$WORK/hookbus.sock") ;;
        redis) address=(--target redis --address "$WORK/redis.sock") ;;
        beanstalkd) address=(--target beanstalkd --address "$WORK/beanstalkd.sock") ;;
        sqlite) address=(--target sqlite --db "$WORK/data/baseline.db") ;;
        null) address=(--target null) ;;
    esac
    log "run $run: $scenario, $target"
    "$HOOKBUS" bench load "${address[@]}" "$@" --json >"$out" || log "  ($scenario $target reported failures: see the table)"
}

# --- configs ----------------------------------------------------------------
PIPE_CONFIG=$WORK/pipe.toml
cat >"$PIPE_CONFIG" <<EOF
[[subscribers]]
name = "bench-pipe"
types = ["bench.*"]
pipe = ["$HOOKBUS", "bench", "sink", "--report", "$WORK/pipe-report.json"]
EOF
EXEC_CONFIG=$WORK/exec.toml
cat >"$EXEC_CONFIG" <<EOF
[[subscribers]]
name = "bench-exec"
types = ["bench.*"]
exec = ["cat"]
EOF
# Publish to an in-process hook: the built-in latency-probe keeps the report.
# While events keep coming it rewrites the report once a second (every ten
# of its 100 ms looks), without syncing it: until the eleventh session each
# rewrite fsynced the report and its directory, measurement overhead in the
# hook p99 (about 7 % in 3 interleaved runs at ten a second). The generator
# waits for the rewrite that follows the last event.
HOOK_CONFIG=$WORK/hook.toml
cat >"$HOOK_CONFIG" <<EOF
[[subscribers]]
name = "bench-hook"
types = ["bench.*"]
hook = "latency-probe"
options = { report = "$WORK/probe-report.json" }
EOF
# Fan-out: 10 in-process hooks, each delivered every event (as fast as they
# can: on 2 cores they share the CPU with ingest) ...
FANOUT_CONFIG=$WORK/fanout.toml
: >"$FANOUT_CONFIG"
for i in $(seq 10); do
    cat >>"$FANOUT_CONFIG" <<EOF
[[subscribers]]
name = "bench-fanout-$i"
types = ["bench.*"]
hook = "latency-probe"
options = { report = "$WORK/fanout-$i.json" }
EOF
done
# ... and 10 pipe subscribers that never answer: what 10 subscribers cost the
# write path alone (their cursors, no extra write per event).
STALLED_CONFIG=$WORK/stalled.toml
: >"$STALLED_CONFIG"
for i in $(seq 10); do
    cat >>"$STALLED_CONFIG" <<EOF
[[subscribers]]
name = "bench-stalled-$i"
types = ["bench.*"]
pipe = ["sleep", "100000"]
EOF
done

# --- measurements -----------------------------------------------------------
THROUGHPUT=(--warmup 1s --duration "${SECS}s")
started=$(date +%s)
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (on $(nproc) cores; other work on the machine skews the numbers)"
for run in $(seq "$RUNS"); do
    for shape in "1x1:--connections 1 --window 1" "4x64:--connections 4 --window 64"; do
        name=ingest-${shape%%:*}
        read -r -a args <<<"${shape#*:}"
        start_hookbusd; bench "$name" hookbus "$run" "${args[@]}" "${THROUGHPUT[@]}"
        if [[ $name == ingest-4x64 ]]; then
            # Right after the same load with no subscriber, so the two see the same machine.
            start_hookbusd "$FANOUT_CONFIG"; bench fanout-10 hookbus "$run" "${args[@]}" "${THROUGHPUT[@]}"
            # How much did the subscribers deliver meanwhile?
            "$HOOKBUS" stats --socket "$WORK/hookbus.sock" --json >"$RESULTS/fanout-stats.hookbus.$run.json" || true
            start_hookbusd "$STALLED_CONFIG"; bench fanout-10-stalled hookbus "$run" "${args[@]}" "${THROUGHPUT[@]}"
        fi
        start_redis; bench "$name" redis "$run" "${args[@]}" "${THROUGHPUT[@]}"
        start_beanstalkd; bench "$name" beanstalkd "$run" "${args[@]}" "${THROUGHPUT[@]}"
        no_server; bench "$name" sqlite "$run" "${args[@]}" "${THROUGHPUT[@]}"
        no_server; bench "$name" null "$run" "${args[@]}" "${THROUGHPUT[@]}"
        if [[ $name == ingest-4x64 ]]; then
            # Ids in random order, as UUIDv4 ids arrive: the SQLite floor's
            # (source, id) index then takes a page per event; hookbus checks the
            # pair in memory. redis and beanstalkd keep no such index.
            start_hookbusd; bench ingest-4x64-random hookbus "$run" "${args[@]}" --random-ids "${THROUGHPUT[@]}"
            no_server; bench ingest-4x64-random sqlite "$run" "${args[@]}" --random-ids "${THROUGHPUT[@]}"
        fi
    done

    # Publish to delivery at 20k events/s offered: hookbus socket subscriber vs redis consumer group.
    E2E=(--connections 4 --window 64 --rate 20000 "${THROUGHPUT[@]}" --e2e --drain-timeout 10s)
    start_hookbusd; bench e2e-20k hookbus "$run" "${E2E[@]}"
    start_redis; bench e2e-20k redis "$run" "${E2E[@]}"
    # The same rate to the in-process latency-probe hook, with the same warm-up
    # (events sent during it carry "w":1, and the hook leaves them out).
    rm -f "$WORK/probe-report.json"
    start_hookbusd "$HOOK_CONFIG"
    bench e2e-20k-hook hookbus "$run" --connections 4 --window 64 --rate 20000 "${THROUGHPUT[@]}" \
        --e2e-report "$WORK/probe-report.json" --drain-timeout 10s

    # A pipe subscriber at 5k events/s.
    rm -f "$WORK/pipe-report.json"
    start_hookbusd "$PIPE_CONFIG"
    # The sink writes an empty report once it runs: measure from then, not its start-up.
    wait_for "the pipe subscriber" "$WORK/hookbusd.log" test -e "$WORK/pipe-report.json"
    bench pipe-5k hookbus "$run" --connections 1 --window 64 --rate 5000 "${THROUGHPUT[@]}" \
        --e2e-report "$WORK/pipe-report.json" --drain-timeout 10s

    # An exec subscriber (`cat`, one process per event): deliveries/s.
    start_hookbusd "$EXEC_CONFIG"
    bench exec hookbus "$run" --connections 1 --window 64 --count 1000 --drain bench-exec --drain-timeout 30s
    stop_server
done

# Memory and startup with a backlog, once: BACKLOG events stored while a pipe
# subscriber that never answers lags behind all of them.
BACKLOG=${BENCH_BACKLOG:-1000000}
if ((BACKLOG > 0)); then
    LAG_CONFIG=$WORK/lag.toml
    cat >"$LAG_CONFIG" <<EOF
[[subscribers]]
name = "bench-lagging"
types = ["bench.*"]
pipe = ["sleep", "100000"]
EOF
    start_hookbusd "$LAG_CONFIG"
    bench backlog hookbus 1 --connections 4 --window 64 --count "$BACKLOG"
    loaded_rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    loaded_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    stop_server
    log "restarting on $BACKLOG stored events"
    t0=$(date +%s%N)
    start_hookbusd "$LAG_CONFIG" keep
    startup_ms=$((($(date +%s%N) - t0) / 1000000))
    sleep 2
    restart_rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    printf '{"events":%d,"rss_kib_loaded":%d,"hwm_kib_loaded":%d,"startup_ms":%d,"rss_kib_restarted":%d}\n' \
        "$BACKLOG" "$loaded_rss" "$loaded_hwm" "$startup_ms" "$restart_rss" >"$RESULTS/memory.json"
    stop_server
fi
log "measured in $(($(date +%s) - started)) s; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

MARKDOWN=()
[[ -n "${BENCH_MARKDOWN:-}" ]] && MARKDOWN=(--markdown)
python3 "$ROOT/tools/bench/summarize.py" "${MARKDOWN[@]}" "$RESULTS"
