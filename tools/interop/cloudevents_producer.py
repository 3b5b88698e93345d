#!/usr/bin/env python3
"""Interop producer: events built by the CloudEvents Python SDK, sent to hookbusd.

Usage: python3 tools/interop/cloudevents_producer.py SOCKET

Builds structured-mode JSON CloudEvents with the `cloudevents` package from PyPI
(2.x; install with `python3 -m pip install 'cloudevents>=2.2,<3'`), through both
of its APIs: the new core API (`cloudevents.core.v1.event.CloudEvent` written by
`cloudevents.core.formats.json.JSONFormat`) and the 1.x-compatible one
(`cloudevents.v1.http.CloudEvent` with `cloudevents.v1.conversion.to_structured`).
Among them are events with binary data, which the SDK writes as `data_base64`.

Writes them as NDJSON to the Unix socket SOCKET, all at once (pipelined), then
reads one reply per event. Prints one JSON line per event on stdout:
  {"sent": <the event as written>, "reply": <the broker's reply>}
Exits 0 if every reply is ok, 1 if one is not, 2 on a usage or connection
error, 3 if the cloudevents package is not installed.
"""

import json
import socket
import sys

try:
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent as CoreCloudEvent
    from cloudevents.v1.conversion import to_structured
    from cloudevents.v1.http import CloudEvent as LegacyCloudEvent
except ImportError as error:
    sys.stderr.write(
        "cloudevents_producer: the CloudEvents SDK is not importable (%s); "
        "install it with: python3 -m pip install 'cloudevents>=2.2,<3'\n" % error
    )
    sys.exit(3)

SOURCE = "/hookbus/interop/python"
BINARY = bytes([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF]) + "hookbus\n".encode()


def build_events():
    """The events, each as the SDK's structured-mode JSON bytes."""
    fmt = JSONFormat()
    events = [
        fmt.write(CoreCloudEvent(
            {"type": "com.example.client.added", "source": SOURCE, "id": "py-core-json",
             "subject": "10.0.0.2", "datacontenttype": "application/json", "fleet": "prod"},
            {"ip": "10.0.0.2", "hostname": "web1", "ports": [22, 9100]},
        )),
        fmt.write(CoreCloudEvent(
            {"type": "com.example.blob.uploaded", "source": SOURCE, "id": "py-core-binary",
             "datacontenttype": "application/octet-stream"},
            BINARY,
        )),
        fmt.write(CoreCloudEvent(
            {"type": "com.example.heartbeat", "source": SOURCE, "id": "py-core-nodata"},
        )),
    ]
    _, body = to_structured(LegacyCloudEvent(
        {"type": "com.example.client.removed", "source": SOURCE, "id": "py-v1-json",
         "priority": 5, "sampled": True},
        {"ip": "10.0.0.2"},
    ))
    events.append(body)
    _, body = to_structured(LegacyCloudEvent(
        {"type": "com.example.blob.uploaded", "source": SOURCE, "id": "py-v1-binary",
         "datacontenttype": "application/octet-stream"},
        BINARY,
    ))
    events.append(body)
    return events


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: cloudevents_producer.py SOCKET\n")
        return 2
    events = build_events()
    for event in events:
        if b"\n" in event:
            sys.stderr.write("cloudevents_producer: the SDK wrote a multi-line event\n")
            return 2
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(20)
        connection.connect(argv[1])
        connection.sendall(b"".join(event + b"\n" for event in events))
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while received.count(b"\n") < len(events):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        connection.close()
    except OSError as error:
        sys.stderr.write("cloudevents_producer: talking to %s failed: %s\n" % (argv[1], error))
        return 2
    replies = received.decode("utf-8").splitlines()
    if len(replies) != len(events):
        sys.stderr.write("cloudevents_producer: %d events sent, %d replies\n" % (len(events), len(replies)))
        return 1
    all_ok = True
    for event, reply in zip(events, replies):
        decoded = json.loads(reply)
        all_ok = all_ok and decoded.get("ok") is True
        print(json.dumps({"sent": json.loads(event), "reply": decoded}))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
