#!/usr/bin/env python3
"""pipe_recorder.py: a pipe subscriber that records every delivery it gets.

hookbus starts it once and keeps it running (restarting it if it dies). It
writes one line per delivery to the process's stdin:

    {"delivery":7,"subscriber":"indexer","seq":42,"attempt":1,"event":{...}}

and reads one answer per delivery from its stdout:

    {"delivery":7,"ok":true}
    {"delivery":7,"ok":false,"error":"why","retry":true}

This script, at start, writes its pid to $PIPE_PIDFILE (if set) and says so on
stderr (hookbus logs a pipe's stderr under the subscriber's name); then for
each delivery it appends

    <pid> <seq> <attempt> <event type>

to $PIPE_LOG, flushed before it answers (so what is answered is on disk even
if the process is killed), and answers {"delivery":n,"ok":true}. It exits when
hookbus closes its stdin. Only the standard library.

Two settings show the other answers (comma-separated event types):
  PIPE_REJECT_TYPES   answer {"ok":false,"retry":false}: hookbus dead-letters
                      the delivery at once (reason "rejected").
  PIPE_GARBAGE_TYPES  answer with a line that is not JSON: hookbus kills the
                      process, restarts it with backoff, and retries what was
                      in flight.

One more for tests that must kill it mid-stream:
  PIPE_STALL_AFTER    with PIPE_STALL_MARK (a path that does not exist yet):
                      after this many deliveries, create the mark and stop
                      answering, as a hung subscriber would (it still exits
                      when its stdin closes).
                      A restarted process sees the mark and does not stall.

Configure it:

    [[subscribers]]
    name = "indexer"
    types = ["*"]
    pipe = ["python3", "/path/to/tools/examples/pipe_recorder.py"]
    concurrency = 8
    env = { PIPE_LOG = "/var/tmp/indexer.log", PIPE_PIDFILE = "/var/tmp/indexer.pid" }
"""

import json
import os
import sys


def main() -> int:
    log_path = os.environ.get("PIPE_LOG")
    if not log_path:
        print("pipe_recorder.py: set PIPE_LOG in the subscriber's env table", file=sys.stderr)
        return 78
    pid = os.getpid()
    pidfile = os.environ.get("PIPE_PIDFILE")
    if pidfile:
        with open(pidfile + ".tmp", "w") as out:
            out.write(f"{pid}\n")
        os.replace(pidfile + ".tmp", pidfile)
    print(f"pipe_recorder.py: started (pid {pid})", file=sys.stderr, flush=True)
    reject = set(filter(None, os.environ.get("PIPE_REJECT_TYPES", "").split(",")))
    garbage = set(filter(None, os.environ.get("PIPE_GARBAGE_TYPES", "").split(",")))
    stall_after = int(os.environ.get("PIPE_STALL_AFTER", "0"))
    stall_mark = os.environ.get("PIPE_STALL_MARK")
    stall = stall_after > 0 and stall_mark is not None and not os.path.exists(stall_mark)
    seen = 0
    source = sys.stdin.buffer
    answers = sys.stdout
    with open(log_path, "a", buffering=1) as log:
        while True:
            line = source.readline()
            if not line:
                return 0  # hookbus closed our stdin: it is stopping or restarting us
            if not line.strip():
                continue
            delivery = json.loads(line)
            event_type = delivery.get("event", {}).get("type", "?")
            log.write(f"{pid} {delivery['seq']} {delivery['attempt']} {event_type}\n")
            log.flush()
            seen += 1
            if stall and seen >= stall_after:
                with open(stall_mark, "w") as mark:
                    mark.write(f"{pid}\n")
                # Hung: answer nothing more, but leave when hookbus closes our stdin.
                while source.readline():
                    pass
                return 0
            if event_type in garbage:
                answer = "this is not an answer"
            elif event_type in reject:
                answer = json.dumps({"delivery": delivery["delivery"], "ok": False, "retry": False,
                                     "error": f"pipe_recorder.py refuses {event_type}"})
            else:
                answer = json.dumps({"delivery": delivery["delivery"], "ok": True})
            answers.write(answer + "\n")
            answers.flush()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(0)  # hookbus went away while we answered
