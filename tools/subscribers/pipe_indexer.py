#!/usr/bin/env python3
"""A pipe subscriber: hookbusd starts it once and keeps it running.

    [[subscribers]]
    name = "indexer"
    types = ["*"]
    pipe = ["python3", "/usr/local/lib/hookbus/pipe_indexer.py", "/var/lib/indexer/events.ndjson"]
    concurrency = 8

One delivery per line on stdin:
    {"delivery":7,"subscriber":"indexer","seq":42,"attempt":1,"event":{...}}
One answer per delivery on stdout, in any order, flushed:
    {"delivery":7,"ok":true}
    {"delivery":7,"ok":false,"error":"why","retry":true}   (retry:false = dead letter now)
Anything else on stdout makes hookbusd restart the process; stderr goes to the
broker's log under the subscriber's name. Deliveries can repeat (at-least-once):
drop duplicates by (subscriber, seq).

This one appends each new event to the file given as argv[1] (default
./indexer.ndjson) and skips seqs it has already written. Stdlib only.
"""
import json
import os
import sys


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "./indexer.ndjson"
    seen = set()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as existing:
            for line in existing:
                try:
                    seen.add(json.loads(line)["seq"])
                except (ValueError, KeyError):
                    pass
    with open(path, "a", encoding="utf-8") as out:
        for line in sys.stdin:
            delivery = json.loads(line)
            answer = {"delivery": delivery["delivery"], "ok": True}
            try:
                if delivery["seq"] not in seen:
                    out.write(json.dumps({"seq": delivery["seq"], "event": delivery["event"]}) + "\n")
                    out.flush()
                    seen.add(delivery["seq"])
            except OSError as error:
                answer = {"delivery": delivery["delivery"], "ok": False, "error": str(error), "retry": True}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
