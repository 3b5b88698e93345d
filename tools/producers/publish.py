#!/usr/bin/env python3
"""A producer: publishes CloudEvents to hookbusd and checks every reply.

    python3 publish.py --socket ./hookbus.sock client.added '{"ip":"10.0.0.2","hostname":"a","fleet":"f1"}'
    some-command | python3 publish.py --socket ./hookbus.sock --stdin

Each event is one JSON line; the broker answers each line, in order, with
{"ok":true,"seq":N,"id":"..."} once the event is durably stored (or
"duplicate":true if this source and id were stored before, so resending after
a lost reply is safe), or {"ok":false,"error":{"code":...,"message":...}}.
This script gives each event an id, so a resend is never stored twice, keeps up
to --window lines unanswered, and exits 1 if any event was refused. Stdlib only.
"""
import argparse
import json
import socket
import sys
import uuid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="./hookbus.sock")
    parser.add_argument("--source", default="publish.py")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--stdin", action="store_true", help="read NDJSON events from stdin")
    parser.add_argument("type", nargs="?")
    parser.add_argument("data", nargs="?", default="null")
    args = parser.parse_args()

    def from_stdin():
        # A line that is not a JSON object is sent as it is: the broker answers
        # it with invalid_json / invalid_event, in its place among the replies.
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                yield line.rstrip("\n")
                continue
            yield event if isinstance(event, dict) else line.rstrip("\n")

    if args.stdin:
        events = from_stdin()
    elif args.type:
        events = iter([{"type": args.type, "data": json.loads(args.data)}])
    else:
        parser.error("give a type (and data), or --stdin")

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(args.socket)
    except OSError as error:
        print(f"cannot connect to hookbusd at {args.socket}: {error}", file=sys.stderr)
        return 69
    stream = conn.makefile("rwb")
    refused = 0
    outstanding = 0

    def read_reply() -> None:
        nonlocal refused, outstanding
        reply = json.loads(stream.readline())
        outstanding -= 1
        print(json.dumps(reply), flush=True)
        if not reply.get("ok"):
            refused += 1

    for event in events:
        if isinstance(event, dict):
            event.setdefault("source", args.source)
            event.setdefault("id", str(uuid.uuid4()))
            line = json.dumps(event, separators=(",", ":"))
        else:
            line = event
        stream.write(line.encode() + b"\n")
        stream.flush()
        outstanding += 1
        if outstanding >= args.window:
            read_reply()
    while outstanding:
        read_reply()
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
