#!/bin/sh
# One hook for every state of every test VM: it records the call and obeys
# control files. vmstated runs it as <hook> <vm-name> <state> in the VM's
# config directory; the test's work directory sits next to the config root.
#
# Control files in the work directory:
#   <vm>.<state>.fail     exit 7 (a failing hook)
#   <vm>.<state>.hang     block until <vm>.<state>.release exists
#                         (writing <vm>.<state>.hanging first); gives up
#                         after about two minutes so nothing outlives a test
#   <vm>.<state>.bg       leave a background process behind that keeps the
#                         hook's stdout and stderr open for a minute
w="$(dirname "$VMSTATED_CONFIG_DIR")/../work"
vm="$1"
st="$2"
# The environment first: a test reads it once the record line is there.
{
	env | sort
	echo "cwd=$(pwd)"
	echo "stdin=$(readlink /proc/$$/fd/0)"
	echo "argc=$#"
} >"$w/$vm.$st.env.tmp"
mv "$w/$vm.$st.env.tmp" "$w/$vm.$st.env"
printf '%s %s prev=%s pid=%s restarts=%s reason=%s\n' "$vm" "$st" \
	"$VMSTATED_PREVIOUS_STATE" "${VMSTATED_PID:-none}" "$VMSTATED_RESTARTS" \
	"$VMSTATED_REASON" >>"$w/$vm.rec"
echo "$vm $st" >>"$w/all.rec"
echo "hook $st of $vm says hello"
if [ -e "$w/$vm.$st.hang" ]; then
	: >"$w/$vm.$st.hanging"
	i=0
	while [ ! -e "$w/$vm.$st.release" ] && [ "$i" -lt 1200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
fi
if [ -e "$w/$vm.$st.bg" ]; then
	sleep 60 &
fi
if [ -e "$w/$vm.$st.fail" ]; then
	echo "hook $st of $vm fails on purpose" >&2
	exit 7
fi
exit 0
