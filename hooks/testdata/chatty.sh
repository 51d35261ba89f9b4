#!/bin/sh
# Leaves a child that keeps writing to the hook's stdout without pause.
echo $$ > "$VMSTATED_CONFIG_DIR/pgid"
(while :; do echo tick; done) &
echo "left a chatty child behind"
sleep "${VMSTATED_CFG_DELAY:-0}"
exit 0
