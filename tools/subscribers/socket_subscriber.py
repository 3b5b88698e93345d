#!/usr/bin/env python3
"""A socket subscriber: connects to hookbusd and subscribes, no config needed.

    python3 socket_subscriber.py --socket /run/hookbus/hookbus.sock --name audit --type 'client.*'

With --name the subscription is durable: hookbus keeps its place, and what it
had not acknowledged when it went away is delivered again when it comes back.
Without --name it follows live events only. Each delivery line is
    {"delivery":7,"subscriber":"audit","seq":42,"attempt":1,"event":{...}}
and is answered with {"op":"ack","delivery":7} or
{"op":"nack","delivery":7,"retry":true,"error":"why"}. At most --window
deliveries are unacknowledged at once.

This one prints "<seq> <type> <id>" per event and acks it; with --count N it
exits after N events. Stdlib only.
"""
import argparse
import json
import socket
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="./hookbus.sock")
    parser.add_argument("--name")
    parser.add_argument("--type", action="append", dest="types")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--count", type=int)
    args = parser.parse_args()

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(args.socket)
    except OSError as error:
        print(f"cannot connect to hookbusd at {args.socket}: {error}", file=sys.stderr)
        return 69
    stream = conn.makefile("rwb")
    # With --count, no more in flight than --count: a delivery received and left
    # unacked when the script exits counts as a failed attempt for a durable
    # subscriber (it comes again on the next run, one attempt closer to a dead
    # letter), and a smaller window leaves fewer of them.
    window = min(args.window, args.count) if args.count else args.window
    request = {"op": "subscribe", "types": args.types or ["*"], "window": window}
    if args.name:
        request["name"] = args.name
    stream.write(json.dumps(request).encode() + b"\n")
    stream.flush()
    reply = json.loads(stream.readline())
    # A durable name is held until the broker has seen its previous connection
    # close; right after a reconnect, ask again for a few seconds.
    for _ in range(50):
        if reply.get("ok") or reply.get("error", {}).get("reason") != "subscriber_in_use":
            break
        time.sleep(0.1)
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        reply = json.loads(stream.readline())
    if not reply.get("ok"):
        print(f"subscribe refused: {reply['error']['message']}", file=sys.stderr)
        return 1
    seen = 0
    for line in stream:
        delivery = json.loads(line)
        event = delivery["event"]
        print(f"{delivery['seq']} {event['type']} {event['id']}", flush=True)
        stream.write(json.dumps({"op": "ack", "delivery": delivery["delivery"]}).encode() + b"\n")
        stream.flush()
        seen += 1
        if args.count is not None and seen >= args.count:
            return 0
    if args.count is not None:
        print(f"the broker closed the connection after {seen} of {args.count} events", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
