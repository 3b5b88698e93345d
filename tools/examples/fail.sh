#!/bin/sh
# fail.sh: an exec subscriber that never delivers; shows dead letters.
#
# It writes $FAIL_NOISE lines of progress (default 0), then
#   "fail.sh: cannot deliver seq <seq> (attempt <attempt>)"
# to stderr and exits with $FAIL_STATUS (default 1). hookbus keeps the tail of
# stderr with each failed attempt. With the default status every attempt is
# retried until max_attempts, then the delivery is dead-lettered (reason
# max_attempts); with FAIL_STATUS = "65" (EX_DATAERR) the first attempt
# dead-letters it at once (reason rejected).
# With $FAIL_LOG set, every run appends "<seq> <attempt>" to that file.
#
# Configure it:
#
#   [[subscribers]]
#   name = "broken"
#   types = ["client.added"]
#   exec = ["/path/to/tools/examples/fail.sh"]
#   max_attempts = 3
#   env = { FAIL_STATUS = "3" }
#
# and look at the result with
#   sqlite3 hookbus.db "SELECT seq, attempts, reason, last_error FROM dead_letters"
status="${FAIL_STATUS:-1}"
noise="${FAIL_NOISE:-0}"
cat > /dev/null
if [ -n "${FAIL_LOG:-}" ]; then
    echo "$HOOKBUS_SEQ $HOOKBUS_ATTEMPT" >> "$FAIL_LOG"
fi
i=1
while [ "$i" -le "$noise" ]; do
    echo "fail.sh: progress line $i of $noise" >&2
    i=$((i + 1))
done
echo "fail.sh: cannot deliver seq $HOOKBUS_SEQ (attempt $HOOKBUS_ATTEMPT)" >&2
exit "$status"
