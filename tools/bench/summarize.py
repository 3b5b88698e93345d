#!/usr/bin/env python3
"""Summarises the JSON results of tools/bench/run.sh into one table.

    python3 tools/bench/summarize.py [--markdown] RESULTS_DIR

RESULTS_DIR holds SCENARIO.TARGET.RUN.json files, each the `--json` output of
one `hookbus bench load`. Every cell is the median over the runs. Ratios are
hookbus/peer: above 1 is better for rates, below 1 is better for latencies.
Then the targets of issue 5, each marked met or unmet. Stdlib only.
"""
import json
import os
import statistics
import sys

PEERS = ["redis", "beanstalkd", "sqlite", "null"]
TARGETS = ["hookbus"] + PEERS


def load(directory):
    results = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        if name == "memory.json":
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                results["memory"] = json.load(handle)
            continue
        scenario, target, _run, _ = name.rsplit(".", 3)
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue  # a run that crashed wrote nothing useful
        results.setdefault((scenario, target), []).append(data)
    return results


def median(runs, pick):
    values = []
    for run in runs:
        try:
            value = pick(run)
        except (KeyError, TypeError):
            value = None
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k/s"
    return f"{value:.0f}/s"


def micros(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} s"
    if value >= 1e3:
        return f"{value / 1e3:.2f} ms"
    return f"{value:.0f} µs"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def main():
    args = sys.argv[1:]
    markdown = "--markdown" in args
    args = [a for a in args if a != "--markdown"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    results = load(args[0])

    def cell(scenario, target, pick):
        return median(results.get((scenario, target), []), pick)

    def incomplete(scenario, target):
        return any(r.get("failures") for r in results.get((scenario, target), []))

    eps = lambda r: r["events_per_s"]
    ack50 = lambda r: r["ack_us"]["p50"]
    ack99 = lambda r: r["ack_us"]["p99"]
    e2e50 = lambda r: r["e2e_us"]["p50"] if r["e2e_us"]["count"] else None
    e2e99 = lambda r: r["e2e_us"]["p99"] if r["e2e_us"]["count"] else None
    drain = lambda r: r["drain"]["per_s"]

    header = ["scenario", "metric"] + TARGETS + ["hookbus/redis", "hookbus/beanstalkd", "hookbus/sqlite"]
    rows = []
    marked = []
    values = {}

    def row(scenario, label, metric, pick, fmt, targets=TARGETS):
        cells = {t: cell(scenario, t, pick) for t in targets}
        values[(scenario, metric)] = cells
        mark = {t: " †" if cells.get(t) is not None and incomplete(scenario, t) else "" for t in targets}
        if any(mark.values()):
            marked.append(label)
        line = [label, metric] + [fmt(cells.get(t)) + mark.get(t, "") if t in targets else "" for t in TARGETS]
        line += [ratio(cells.get("hookbus"), cells.get(p)) if p in targets else "" for p in ["redis", "beanstalkd", "sqlite"]]
        rows.append(line)

    row("ingest-1x1", "ingest 1 conn × 1", "events/s", eps, rate)
    row("ingest-1x1", "", "ack p50", ack50, micros)
    row("ingest-1x1", "", "ack p99", ack99, micros)
    row("ingest-4x64", "ingest 4 conns × 64", "events/s", eps, rate)
    row("ingest-4x64", "", "ack p50", ack50, micros)
    row("ingest-4x64", "", "ack p99", ack99, micros)
    row("ingest-4x64-random", "ingest 4 conns × 64, ids in random order", "events/s", eps, rate, ["hookbus", "sqlite"])
    row("ingest-4x64-random", "", "ack p99", ack99, micros, ["hookbus", "sqlite"])
    random_ids = values[("ingest-4x64-random", "events/s")].get("hookbus")
    counting = values[("ingest-4x64", "events/s")].get("hookbus")
    rows.append(["", "random ids / counting up", ratio(random_ids, counting)] + [""] * (len(header) - 3))
    row("e2e-20k", "e2e at 20k/s offered", "publish→delivery p50", e2e50, micros, ["hookbus", "redis"])
    row("e2e-20k", "", "publish→delivery p99", e2e99, micros, ["hookbus", "redis"])
    row("e2e-20k", "", "ack p99", ack99, micros, ["hookbus", "redis"])
    row("e2e-20k-hook", "e2e at 20k/s, in-process hook (latency-probe)", "publish→delivery p50", e2e50, micros, ["hookbus"])
    row("e2e-20k-hook", "", "publish→delivery p99", e2e99, micros, ["hookbus"])
    row("e2e-20k-hook", "", "ack p99", ack99, micros, ["hookbus"])
    hook99 = values[("e2e-20k-hook", "publish→delivery p99")].get("hookbus")
    redis99 = values[("e2e-20k", "publish→delivery p99")].get("redis")
    rows.append(["", "hook p99 / redis p99", ratio(hook99, redis99)] + [""] * (len(header) - 3))
    row("pipe-5k", "pipe subscriber at 5k/s", "publish→delivery p50", e2e50, micros, ["hookbus"])
    row("pipe-5k", "", "publish→delivery p99", e2e99, micros, ["hookbus"])
    row("exec", "exec subscriber (cat)", "deliveries/s", drain, rate, ["hookbus"])
    row("fanout-10", "ingest 4×64, 10 in-process hooks delivering", "events/s", eps, rate, ["hookbus"])

    fan = values[("fanout-10", "events/s")].get("hookbus")
    none = values[("ingest-4x64", "events/s")].get("hookbus")
    rows.append(["", "with 10 / with none", ratio(fan, none)] + [""] * (len(header) - 3))
    row("fanout-10-stalled", "ingest 4×64, 10 stalled pipe subscribers", "events/s", eps, rate, ["hookbus"])
    stalled = values[("fanout-10-stalled", "events/s")].get("hookbus")
    rows.append(["", "with 10 / with none", ratio(stalled, none)] + [""] * (len(header) - 3))

    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in rows:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        for line in [header] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
    print()
    if marked:
        print("† a run of this cell reported failures (events not all delivered or acknowledged in time;")
        print("  the latencies then leave out the events that never arrived).")
        print()

    def get(scenario, metric, target):
        return values.get((scenario, metric), {}).get(target)

    def check(label, value, goal, ok, scenario=None):
        state = "-" if value is None else ("met" if ok(value) else "UNMET")
        # Latencies of a subscriber that missed events leave the slowest ones out.
        if scenario and any(r.get("e2e_missing") for r in results.get((scenario, "hookbus"), [])):
            state = "UNMET (events not delivered in time)"
        shown = "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
        return [label, goal, shown, state]

    def div(a, b):
        return None if a is None or b is None or b == 0 else a / b

    targets = [
        check("ingest 4×64 vs redis appendfsync always", div(get("ingest-4x64", "events/s", "hookbus"),
              get("ingest-4x64", "events/s", "redis")), "≥ 0.80×", lambda v: v >= 0.8),
        check("ingest 4×64 vs raw SQLite batched insert", div(get("ingest-4x64", "events/s", "hookbus"),
              get("ingest-4x64", "events/s", "sqlite")), "≥ 0.90×", lambda v: v >= 0.9),
        check("1×1 ack p50 vs one SQLite commit", div(get("ingest-1x1", "ack p50", "hookbus"),
              get("ingest-1x1", "ack p50", "sqlite")), "≤ 1.5×", lambda v: v <= 1.5),
        check("e2e p99 at 20k/s, in-process hook vs redis XREADGROUP+XACK",
              div(hook99, redis99), "≤ 1.0×", lambda v: v <= 1.0, "e2e-20k-hook"),
        check("pipe subscriber at 5k/s, p99 (ms)", div(get("pipe-5k", "publish→delivery p99", "hookbus"), 1000.0),
              "< 10 ms", lambda v: v < 10, "pipe-5k"),
        check("exec subscriber deliveries/s", get("exec", "deliveries/s", "hookbus"), "≥ 500/s", lambda v: v >= 500),
        check("fan-out: ingest with 10 subscribers / with none", div(fan, none), "≥ 0.85×", lambda v: v >= 0.85),
    ]
    fanout_index = len(targets) - 1
    # The fan-out ratio means something only if the subscribers kept up with ingest.
    kept = []
    for stats in results.get(("fanout-stats", "hookbus"), []):
        stored = stats.get("outbox", {}).get("last_seq") or 0
        subscribers = [s for s in stats.get("subscribers", []) if s.get("name", "").startswith("bench-fanout")]
        if stored and subscribers:
            kept.append(min(s.get("delivered", 0) for s in subscribers) / stored)
    if kept:
        share = statistics.median(kept)
        targets[fanout_index][3] += (f" (the hooks delivered {share:.1%} of the events meanwhile;"
                                     f" with 10 stalled subscribers: {ratio(stalled, none)})")
    memory = results.get("memory")
    if memory:
        rss = max(memory["rss_kib_loaded"], memory["rss_kib_restarted"]) / 1024.0
        targets.append(check(f"resident MiB, {memory['events']} events stored, a subscriber lagging (max of loaded, restarted)",
                             rss, "< 64 MiB", lambda v: v < 64))
        targets.append(check("startup with that backlog, to the first ping answer (s)", memory["startup_ms"] / 1000.0,
                             "< 1 s", lambda v: v < 1))
    goal_header = ["target (issue 5)", "goal", "measured", "state"]
    if markdown:
        print("| " + " | ".join(goal_header) + " |")
        print("|---|---|---|---|")
        for line in targets:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(r[i]) for r in [goal_header] + targets) for i in range(4)]
        for line in [goal_header] + targets:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


if __name__ == "__main__":
    main()
