#!/usr/bin/env python3
"""crash_soak.py: the crash loop of issue 6, for as long as you like.

    python3 tools/soak/crash_soak.py 30            # 30 minutes
    python3 tools/soak/crash_soak.py 5 --seed 7 --bin-dir .build/release

Producers publish without pause (unique source and id per event) while
hookbusd, dispatching to a pipe subscriber (tools/examples/pipe_recorder.py),
an exec subscriber (tools/examples/record.sh) and the prometheus-sd hook, is
SIGKILLed at random moments (seeded), some while it is still starting, and
started again. Producers reconnect and resend whatever was not acknowledged
(safe: the broker deduplicates by source and id).

After every start it checks that every event acknowledged so far is stored
exactly once, with the seq it was acknowledged with. At the end it lets the
producers resend what is left, waits for every subscriber to catch up, and
checks that every subscriber got every matching acknowledged event at least
once, that PRAGMA integrity_check is ok, and that no retry, dead letter or
cursor row is orphaned. It prints a line per cycle and the figures; exit
status 0 if nothing was lost, 1 otherwise, 2 for a broken setup.

Stdlib only. Build first: swift build (the Swift test suite runs the same loop
for about twenty seconds: swift test --filter ReliabilityCrashLoop).
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "tools", "examples")
SOURCE = "soak"
SUBSCRIBERS = {"soak-pipe", "soak-exec", "soak-sd"}

CONFIG = """\
durability = "{durability}"

[defaults]
max_attempts = 10
backoff_initial = "50ms"
backoff_max = "500ms"
timeout = "20s"

[[subscribers]]
name = "soak-pipe"
types = ["crash.*"]
pipe = ["python3", "{examples}/pipe_recorder.py"]
concurrency = 8
env = {{ PIPE_LOG = "{dir}/pipe.log" }}

[[subscribers]]
name = "soak-exec"
types = ["crash.exec"]
exec = ["{examples}/record.sh"]
concurrency = 4
env = {{ RECORD_DIR = "{dir}/rec" }}

[[subscribers]]
name = "soak-sd"
hook = "prometheus-sd"
options = {{ path = "{dir}/sd.json", port = 9100 }}
"""


class Spec:
    """One event a producer made: its line and what to check for it."""

    __slots__ = ("id", "type", "line", "ip")

    def __init__(self, producer, n):
        self.id = f"p{producer}-{n}"
        self.ip = None
        if n % 10 == 0:
            self.type = "crash.exec"
        elif n % 25 == 7:
            self.type = "client.added"
        else:
            self.type = "crash.pipe"
        if self.type == "client.added":
            self.ip = f"10.{producer % 256}.{n // 256 % 256}.{n % 256}"
            data = {"ip": self.ip, "hostname": f"h-{self.id}", "fleet": "soak"}
        else:
            data = {"n": n}
        self.line = json.dumps({"type": self.type, "source": SOURCE, "id": self.id, "data": data}, separators=(",", ":"))


class Ledger:
    """What the producers saw, shared with the main thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # id -> (seq, spec)
        self.problems = []
        self.created = 0
        self.resent = 0
        self.duplicates = 0
        self.stopping = threading.Event()  # no new events; resend the rest, then stop
        self.abandon = threading.Event()   # leave now

    def ack(self, spec, seq, duplicate):
        with self.lock:
            earlier = self.acked.get(spec.id)
            if earlier is not None and earlier[0] != seq:
                self.problems.append(f"{spec.id} acknowledged with seq {earlier[0]}, then {seq}")
            self.acked[spec.id] = (seq, spec)
            if duplicate:
                self.duplicates += 1

    def problem(self, text):
        with self.lock:
            self.problems.append(text)

    def snapshot(self):
        with self.lock:
            return dict(self.acked)


def produce(producer, socket_path, ledger, window, interval):
    """Publishes at `interval`, `window` unanswered at most; reconnects and
    resends what was not acknowledged until told to stop with nothing pending."""
    pending = []  # made, not acknowledged, oldest first
    made = 0
    next_new = time.monotonic()
    while not ledger.abandon.is_set():
        if ledger.stopping.is_set() and not pending:
            return
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(10)
            conn.connect(socket_path)
        except OSError:
            time.sleep(0.005)  # the broker is down or starting
            continue
        reader = conn.makefile("rb")
        queue = list(pending)
        unanswered = []
        try:
            while not ledger.abandon.is_set():
                while len(unanswered) < window:
                    if queue:
                        spec = queue.pop(0)
                        with ledger.lock:
                            ledger.resent += 1
                    elif not ledger.stopping.is_set() and time.monotonic() >= next_new:
                        spec = Spec(producer, made)
                        made += 1
                        with ledger.lock:
                            ledger.created += 1
                        next_new = max(next_new + interval, time.monotonic() - 1)
                        pending.append(spec)
                    else:
                        break
                    conn.sendall(spec.line.encode() + b"\n")
                    unanswered.append(spec)
                if not unanswered:
                    if ledger.stopping.is_set():
                        return
                    time.sleep(0.001)
                    continue
                raw = reader.readline()
                try:
                    reply = json.loads(raw)
                except ValueError:
                    break  # end of stream or a reply cut by the kill: not an acknowledgement
                spec = unanswered.pop(0)
                error = reply.get("error") or {}
                if reply.get("ok") and reply.get("id") == spec.id and isinstance(reply.get("seq"), int):
                    ledger.ack(spec, reply["seq"], reply.get("duplicate", False))
                    pending = [p for p in pending if p.id != spec.id]
                elif error.get("code") in ("unavailable", "shutting_down"):
                    queue.append(spec)
                else:
                    ledger.problem(f"{spec.id}: {raw!r}")
                    pending = [p for p in pending if p.id != spec.id]
        except OSError:
            pass  # the broker went away: reconnect, resend
        finally:
            reader.close()
            conn.close()


class Broker:
    def __init__(self, binary, directory, config):
        self.binary = binary
        self.directory = directory
        self.socket = os.path.join(directory, "s.sock")
        self.database = os.path.join(directory, "hb.db")
        self.config = config
        self.log_path = os.path.join(directory, "hookbusd.log")
        self.process = None

    def launch(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary, "--config", self.config, "--socket", self.socket, "--db", self.database],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.directory)
        log.close()

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"hookbusd exited with status {self.process.returncode} before answering ping; see {self.log_path}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.settimeout(5)
                    conn.connect(self.socket)
                    conn.sendall(b'{"op":"ping"}\n')
                    if json.loads(conn.makefile("rb").readline()).get("ok"):
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        raise SystemExit(f"hookbusd did not answer ping within {timeout} s; see {self.log_path}")

    def kill(self):
        if self.process.poll() is not None:
            raise SystemExit(f"hookbusd had exited (status {self.process.returncode}) before the kill; see {self.log_path}")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def read_only(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    return db


def check_stored(database, acked, context):
    """Every acknowledged event stored exactly once with its seq; returns the problems."""
    with read_only(database) as db:
        rows = db.execute("SELECT id, seq FROM outbox WHERE source = ?", (SOURCE,)).fetchall()
    seqs = {}
    for event_id, seq in rows:
        seqs.setdefault(event_id, []).append(seq)
    problems = [f"{context}: {i} stored {len(s)} times" for i, s in seqs.items() if len(s) > 1][:10]
    lost = [i for i, (seq, _) in acked.items() if seq not in seqs.get(i, [])]
    if lost:
        problems.append(f"{context}: {len(lost)} acknowledged events missing or moved, e.g. {sorted(lost)[:10]}")
    return problems


def settled(database, last):
    with read_only(database) as db:
        cursors = dict(db.execute("SELECT subscriber, cursor FROM subscriber_cursors").fetchall())
        retries = db.execute("SELECT count(*) FROM retries").fetchone()[0]
    return retries == 0 and all(cursors.get(name, 0) >= last for name in SUBSCRIBERS)


def check_delivered(directory, acked):
    problems = []
    piped = set()
    try:
        with open(os.path.join(directory, "pipe.log")) as log:
            for line in log:  # "<pid> <seq> <attempt> <type>"
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    piped.add(int(fields[1]))
    except FileNotFoundError:
        pass
    executed = set()
    try:
        with open(os.path.join(directory, "rec", "soak-exec.log")) as log:
            for line in log:  # "<seq> <attempt> <subscriber> <type> <id> <replay>"
                fields = line.split()
                if len(fields) >= 5:
                    executed.add(fields[4])
    except FileNotFoundError:
        pass
    with open(os.path.join(directory, "sd.json")) as sd:
        targets = {t for group in json.load(sd) for t in group.get("targets", [])}
    not_piped = [i for i, (seq, spec) in acked.items() if spec.type.startswith("crash.") and seq not in piped]
    not_executed = [i for i, (_, spec) in acked.items() if spec.type == "crash.exec" and i not in executed]
    not_listed = [i for i, (_, spec) in acked.items() if spec.ip and f"{spec.ip}:9100" not in targets]
    for what, ids in (("pipe subscriber", not_piped), ("exec subscriber", not_executed), ("sd.json", not_listed)):
        if ids:
            problems.append(f"{len(ids)} events never reached the {what}, e.g. {sorted(ids)[:10]}")
    return problems


def check_database(database):
    problems = []
    with read_only(database) as db:
        integrity = "; ".join(r[0] for r in db.execute("PRAGMA integrity_check"))
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        orphans = db.execute(
            "SELECT subscriber, seq FROM retries r WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = r.seq)").fetchall()
        orphans += [r for r in db.execute("SELECT subscriber, seq FROM retries").fetchall() if r[0] not in SUBSCRIBERS]
        if orphans:
            problems.append(f"orphaned retries: {orphans[:10]}")
        # The highest seq handed out: the last row, or outbox_seq where retention pruned it.
        last = db.execute("SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), "
                          "coalesce((SELECT last FROM outbox_seq), 0))").fetchone()[0]
        past = db.execute("SELECT subscriber, cursor FROM subscriber_cursors WHERE cursor > ?", (last,)).fetchall()
        if past:
            problems.append(f"cursors past the last seq {last}: {past}")
        strays = [r[0] for r in db.execute("SELECT DISTINCT subscriber FROM dead_letters") if r[0] not in SUBSCRIBERS]
        if strays:
            problems.append(f"dead letters of unknown subscribers: {strays}")
        dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        if dead:
            problems.append(f"{dead} dead letters: nothing here should fail for good")
    return problems


def find_binary(bin_dir):
    candidates = [bin_dir] if bin_dir else [os.path.join(ROOT, ".build", "debug"), os.path.join(ROOT, ".build", "release")]
    for directory in candidates:
        path = os.path.join(directory, "hookbusd")
        if os.access(path, os.X_OK):
            return path
    raise SystemExit(f"no hookbusd in {', '.join(candidates)}: run swift build, or pass --bin-dir")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("minutes", type=float, nargs="?", default=10.0, help="how long to kill and restart (default 10)")
    parser.add_argument("--seed", type=int, default=6, help="seed of the kill schedule (default 6)")
    parser.add_argument("--bin-dir", help="directory holding hookbusd (default .build/debug, then .build/release)")
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--window", type=int, default=8, help="events a producer may have unanswered")
    parser.add_argument("--interval-ms", type=float, default=6.0, help="a producer's pace: one new event per interval")
    parser.add_argument("--min-up-ms", type=int, default=150)
    parser.add_argument("--max-up-ms", type=int, default=1200)
    parser.add_argument("--early-kill-odds", type=int, default=6, help="one cycle in N kills the broker while it starts")
    parser.add_argument("--durability", choices=["normal", "full"], default="normal")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()

    binary = find_binary(args.bin_dir)
    rng = random.Random(args.seed)
    # A short path: Unix socket paths must stay under 108 bytes.
    directory = tempfile.mkdtemp(prefix="hb-soak-", dir="/tmp")
    config = os.path.join(directory, "hookbus.toml")
    with open(config, "w") as out:
        out.write(CONFIG.format(durability=args.durability, examples=EXAMPLES, dir=directory))
    broker = Broker(binary, directory, config)
    ledger = Ledger()
    problems = []
    print(f"crash soak: {args.minutes:g} min, seed {args.seed}, {binary}, in {directory}", flush=True)

    broker.launch()
    broker.wait_ready()
    threads = [threading.Thread(target=produce, args=(p, broker.socket, ledger, args.window, args.interval_ms / 1000), daemon=True)
               for p in range(args.producers)]
    for thread in threads:
        thread.start()

    kills = early = 0
    acked = {}
    started = time.monotonic()
    end = started + args.minutes * 60
    try:
        first = True
        while time.monotonic() < end and not problems:
            if not first:
                if rng.randrange(args.early_kill_odds) == 0:
                    broker.launch()
                    time.sleep(rng.uniform(0, 0.04))
                    broker.kill()
                    kills += 1
                    early += 1
                    print(f"cycle {kills}: killed while starting", flush=True)
                    continue
                broker.launch()
                broker.wait_ready()
            first = False
            acked = ledger.snapshot()
            problems += check_stored(broker.database, acked, f"cycle {kills + 1}")
            up = rng.uniform(args.min_up_ms, args.max_up_ms) / 1000
            before = len(acked)
            time.sleep(up)
            deadline = time.monotonic() + 20
            while len(ledger.snapshot()) == before and time.monotonic() < deadline:
                time.sleep(0.005)
            if len(ledger.snapshot()) == before:
                problems.append(f"cycle {kills + 1}: no acknowledgement in 20 s")
            broker.kill()
            kills += 1
            print(f"cycle {kills}: killed after {up * 1000:.0f} ms; {before} acknowledged and verified stored before it", flush=True)

        # The last start: producers resend what is left and stop; subscribers catch up.
        broker.launch()
        broker.wait_ready()
        ledger.stopping.set()
        for thread in threads:
            thread.join(timeout=120)
        if any(thread.is_alive() for thread in threads):
            problems.append("producers did not finish resending within 120 s")
        acked = ledger.snapshot()
        problems += ledger.problems
        if len(acked) != ledger.created:
            problems.append(f"{ledger.created} events made, {len(acked)} acknowledged")
        problems += check_stored(broker.database, acked, "after the last start")
        last = max((seq for seq, _ in acked.values()), default=0)
        deadline = time.monotonic() + 300
        while not settled(broker.database, last):
            if time.monotonic() >= deadline:
                problems.append(f"subscribers not settled through seq {last} within 300 s")
                break
            time.sleep(0.05)
        status = broker.stop()
        if status != 0:
            problems.append(f"hookbusd exited with status {status} on SIGTERM")
        problems += check_delivered(directory, acked)
        problems += check_database(broker.database)
    finally:
        ledger.abandon.set()
        if broker.process and broker.process.poll() is None:
            broker.process.kill()
            broker.process.wait()

    minutes = (time.monotonic() - started) / 60
    print(f"kill cycles survived: {kills} ({early} while starting) in {minutes:.1f} min; "
          f"events published and verified: {len(acked)} (resent after a kill: {ledger.resent}, "
          f"of them already stored: {ledger.duplicates})", flush=True)
    if problems:
        print("FAILED:", file=sys.stderr)
        for problem in problems[:50]:
            print(f"  {problem}", file=sys.stderr)
        print(f"working directory kept: {directory} (hookbusd.log)", file=sys.stderr)
        return 1
    print("OK: nothing acknowledged was lost, stored twice or left undelivered; integrity ok; no orphaned rows", flush=True)
    if args.keep:
        print(f"working directory kept: {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as exit:
        if isinstance(exit.code, str):
            print(f"crash_soak.py: {exit.code}", file=sys.stderr)
            sys.exit(2)
        raise
