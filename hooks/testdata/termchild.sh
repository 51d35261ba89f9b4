#!/bin/sh
# Leaves a child that ignores SIGTERM, then hangs (but dies of SIGTERM).
echo $$ > "$VMSTATED_CONFIG_DIR/pgid"
(trap '' TERM; exec sleep 600) >/dev/null 2>&1 &
echo started
exec sleep 600
