#!/bin/sh
# flaky.sh: an exec subscriber that fails the first attempts at each event,
# then succeeds; shows hookbus's retries at work.
#
# It keeps a counter per event in $FLAKY_DIR/<subscriber>-<seq>.count (a file
# of its own, not HOOKBUS_ATTEMPT, so it counts what really ran). While the
# counter is at most $FLAKY_FAILURES (default 2) it writes a line to stderr and
# exits 75 (EX_TEMPFAIL): hookbus retries after its backoff. Then it exits 0.
# Every run appends "<seq> <HOOKBUS_ATTEMPT> <counter> <fail|ok>" to
# $FLAKY_DIR/<subscriber>.log.
#
# Configure it (with max_attempts above FLAKY_FAILURES, or it is dead-lettered):
#
#   [[subscribers]]
#   name = "flaky"
#   types = ["client.added"]
#   exec = ["/path/to/tools/examples/flaky.sh"]
#   max_attempts = 5
#   backoff_initial = "1s"
#   env = { FLAKY_DIR = "/var/tmp/hookbus-flaky", FLAKY_FAILURES = "2" }
set -eu
dir="${FLAKY_DIR:?set FLAKY_DIR in the subscriber's env table}"
failures="${FLAKY_FAILURES:-2}"
mkdir -p "$dir"
cat > /dev/null  # the event; this example does not need it
counter="$dir/$HOOKBUS_SUBSCRIBER-$HOOKBUS_SEQ.count"
count=$(cat "$counter" 2>/dev/null || echo 0)
count=$((count + 1))
echo "$count" > "$counter"
if [ "$count" -le "$failures" ]; then
    echo "$HOOKBUS_SEQ $HOOKBUS_ATTEMPT $count fail" >> "$dir/$HOOKBUS_SUBSCRIBER.log"
    echo "flaky.sh: failing seq $HOOKBUS_SEQ on purpose (run $count of $failures failing)" >&2
    exit 75
fi
echo "$HOOKBUS_SEQ $HOOKBUS_ATTEMPT $count ok" >> "$dir/$HOOKBUS_SUBSCRIBER.log"
exit 0
