#!/bin/sh
# Leaves a child that holds stdout and stderr open, then exits at once.
echo $$ > "$VMSTATED_CONFIG_DIR/pgid"
sleep 600 &
echo $! > "$VMSTATED_CONFIG_DIR/bgpid"
echo "left a child behind"
sleep "${VMSTATED_CFG_DELAY:-0}"
exit 0
