#!/bin/sh
# An exec subscriber: hookbusd runs it once per delivery.
#
#   [[subscribers]]
#   name = "notify"
#   types = ["client.added", "client.removed"]
#   exec = ["/usr/local/bin/notify.sh"]
#
# The event JSON arrives on stdin; HOOKBUS_SEQ, HOOKBUS_EVENT_ID,
# HOOKBUS_EVENT_TYPE, HOOKBUS_SUBSCRIBER, HOOKBUS_ATTEMPT (and HOOKBUS_REPLAY=1
# for a replay) in the environment. Exit 0 = delivered; 65 = this event can
# never be handled (dead letter at once); 75 or anything else = try again later.
# What you print on stderr is kept with a failure (`hookbus dlq show`).
#
# This one appends a line per event to $NOTIFY_LOG (default ./notify.log);
# set NOTIFY_LOG in the subscriber's `env` table.
set -eu
log="${NOTIFY_LOG:-./notify.log}"
event=$(cat)
case "$event" in
    *'"type"'*) ;;
    *) echo "notify: stdin is not an event" >&2; exit 65 ;;
esac
printf '%s %s %s attempt=%s replay=%s %s\n' "$HOOKBUS_SEQ" "$HOOKBUS_EVENT_TYPE" "$HOOKBUS_EVENT_ID" \
    "$HOOKBUS_ATTEMPT" "${HOOKBUS_REPLAY:-0}" "$event" >> "$log" || { echo "notify: cannot write $log" >&2; exit 75; }
