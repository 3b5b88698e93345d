#!/bin/sh
# record.sh: an exec subscriber that records every delivery it gets.
#
# hookbus runs it once per delivery with the event JSON on stdin and
# HOOKBUS_SEQ, HOOKBUS_EVENT_ID, HOOKBUS_EVENT_TYPE, HOOKBUS_SUBSCRIBER and
# HOOKBUS_ATTEMPT in its environment (HOOKBUS_REPLAY=1 on a replay). It
#   - saves the event as $RECORD_DIR/<subscriber>-<seq>.json (the last attempt wins),
#   - with RECORD_FDS=1, lists the descriptors it inherited (ls -l /proc/$$/fd)
#     in $RECORD_DIR/<subscriber>-<seq>.fds,
#   - then appends one line to $RECORD_DIR/<subscriber>.log:
#       <seq> <attempt> <subscriber> <event type> <event id> <replay 0|1>
# and exits 0, so the delivery counts as done. A start for a script of your own:
# replace these steps with your work, exit 65 to refuse an event for good,
# anything else non-zero to have it retried.
#
# Configure it (the directory is created if missing):
#
#   [[subscribers]]
#   name = "recorder"
#   types = ["client.*"]
#   exec = ["/path/to/tools/examples/record.sh"]
#   env = { RECORD_DIR = "/var/tmp/hookbus-record" }
set -eu
dir="${RECORD_DIR:?set RECORD_DIR in the subscriber's env table}"
mkdir -p "$dir"
event="$dir/$HOOKBUS_SUBSCRIBER-$HOOKBUS_SEQ.json"
# Write beside, then rename: a reader never sees half an event.
cat > "$event.tmp.$$"
mv "$event.tmp.$$" "$event"
if [ "${RECORD_FDS:-0}" = "1" ]; then
    ls -l "/proc/$$/fd" > "$dir/$HOOKBUS_SUBSCRIBER-$HOOKBUS_SEQ.fds"
fi
printf '%s %s %s %s %s %s\n' "$HOOKBUS_SEQ" "$HOOKBUS_ATTEMPT" "$HOOKBUS_SUBSCRIBER" \
    "$HOOKBUS_EVENT_TYPE" "$HOOKBUS_EVENT_ID" "${HOOKBUS_REPLAY:-0}" >> "$dir/$HOOKBUS_SUBSCRIBER.log"
exit 0
