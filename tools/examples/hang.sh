#!/bin/sh
# hang.sh: an exec subscriber that never finishes; shows the timeout.
#
# It starts a child of its own in the background (sleep 300), writes
# "<its pid> <the child's pid>" to $HANG_PIDFILE (if set), then sleeps. When
# the subscriber's `timeout` passes, hookbus sends SIGTERM to the whole process
# group (this script, the background child and the foreground sleep), then
# SIGKILL 2 s later, and records the attempt as failed ("timed out after ...").
# Check that nothing is left: the two pids in $HANG_PIDFILE are gone.
# With HANG_IGNORE_TERM=1 the script and its children ignore SIGTERM, so only
# the SIGKILL that follows ends them.
#
# Configure it:
#
#   [[subscribers]]
#   name = "hang"
#   types = ["client.added"]
#   exec = ["/path/to/tools/examples/hang.sh"]
#   timeout = "1s"
#   env = { HANG_PIDFILE = "/var/tmp/hang.pids" }
if [ "${HANG_IGNORE_TERM:-0}" = "1" ]; then
    trap '' TERM  # ignored signals stay ignored in the children too
fi
sleep 300 &
child=$!
if [ -n "${HANG_PIDFILE:-}" ]; then
    echo "$$ $child" > "$HANG_PIDFILE.tmp"
    mv "$HANG_PIDFILE.tmp" "$HANG_PIDFILE"
fi
sleep 300
