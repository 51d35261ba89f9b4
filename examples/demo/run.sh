#!/bin/sh
# Runs vmstated in the foreground on the demo VMs, without root and
# without touching the system: config, logs, state and the control
# socket all live under .demo/ at the top of the source tree (or a
# temporary directory when that path is too long for a unix socket).
#
#   make demo            builds the binaries, then runs this
#   examples/demo/run.sh [bindir]
#
# It starts the VMs with vmstatedctl once the daemon is ready, shows
# their logs (states, hook output, guest output) as they come, and on
# Ctrl-C stops the VMs, then the daemon.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${1:-$top/bin}
for b in vmstated vmstatedctl; do
    if [ ! -x "$bin/$b" ]; then
        echo "demo: $bin/$b is missing; run 'make build' first (or 'make demo')" >&2
        exit 1
    fi
done

demo=$top/.demo
# A unix socket path has a length limit (104 bytes on FreeBSD); QEMU's
# sockets sit deepest, under run/vmstated/demo-qemu/.
if [ ${#demo} -gt 60 ]; then
    demo=$(mktemp -d "${TMPDIR:-/tmp}/vmstated-demo.XXXXXX")
fi
sock=$demo/run/vmstated.sock
ctl() { "$bin/vmstatedctl" -s "$sock" "$@"; }

if [ -S "$sock" ] && ctl status >/dev/null 2>&1; then
    echo "demo: a demo daemon already answers on $sock; stop it first (Ctrl-C in its terminal)" >&2
    exit 1
fi
rm -rf "$demo/config" "$demo/log" "$demo/state" "$demo/run"
mkdir -p "$demo/config" "$demo/log" "$demo/state" "$demo/run"
chmod 700 "$demo/run"
cp -R "$here/demo" "$demo/config/demo"
vms=demo
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
    cp -R "$here/demo-qemu" "$demo/config/demo-qemu"
    vms="demo demo-qemu"
else
    echo "demo: qemu-system-x86_64 is not installed; running the exec VM only"
fi

# Per-VM runtime files (sockets, the guest's working directory) stay under
# the demo's directory too (-R), for root as for a user.
rundir=$demo/run/vmstated
XDG_RUNTIME_DIR=$demo/run
export XDG_RUNTIME_DIR
# The guest reboots once per demo: forget the earlier demo's reboot.
rm -f "$rundir/demo/rebooted-once"

# Ctrl-C (SIGINT to the whole process group, from the terminal or from
# timeout -s INT) must reach only this script, which then stops the VMs
# before the daemon: the daemon on its own would exit and leave them
# running. So the daemon and the log readers run in sessions of their
# own where setsid(1) exists (Linux), else in process groups of their own
# through job control, which needs a terminal.
if command -v setsid >/dev/null 2>&1; then
    detach=setsid
else
    detach=
    set -m 2>/dev/null || true
fi

$detach "$bin/vmstated" -f -c "$demo/config" -l "$demo/log" -S "$demo/state" \
    -s "$sock" -p "$demo/run/vmstated.pid" -R "$rundir" &
daemon=$!

i=0
until ctl status >/dev/null 2>&1; do
    if ! kill -0 "$daemon" 2>/dev/null; then
        wait "$daemon" || true
        echo "demo: vmstated exited during start-up (see above)" >&2
        exit 1
    fi
    i=$((i + 1))
    if [ "$i" -gt 300 ]; then
        echo "demo: vmstated did not answer on $sock within 30 seconds" >&2
        kill "$daemon" 2>/dev/null || true
        exit 1
    fi
    sleep 0.1
done

# Each reader prefixes its VM's lines; it ends when the daemon exits.
followers=
for vm in $vms; do
    $detach sh -c '"$1" -s "$2" log -f "$3" | sed -u "s/^/$3 | /"' sh "$bin/vmstatedctl" "$sock" "$vm" &
    followers="$followers $!"
done

cleanup() {
    trap - INT TERM
    echo
    echo "demo: stopping the VMs, then the daemon"
    case " $vms " in
    *" demo-qemu "*)
        echo "demo: demo-qemu has no operating system to answer the power button:"
        echo "demo: after its stop_timeout (5s) the daemon ends QEMU; that is expected" ;;
    esac
    ctl stop -a >/dev/null 2>&1 || true
    # stop -a returns once every VM is stopped; the stopped hook runs
    # after that. The readers end with the daemon, so wait until each
    # log's last line is the end of that hook (10s at most, its
    # hook_timeout) before ending the daemon.
    for vm in $vms; do
        i=0
        until ctl log -n 1 "$vm" 2>/dev/null | grep -q "\[vmstated\] hook stopped "; do
            i=$((i + 1))
            [ "$i" -gt 100 ] && break
            sleep 0.1
        done
    done
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    for p in $followers; do wait "$p" 2>/dev/null || true; done
    echo "demo: done; logs and state are kept in $demo"
    exit 0
}
trap cleanup INT TERM

cat <<MSG

vmstated runs in the foreground (pid $daemon) on the VMs in
$demo/config.
Talk to it from another terminal:

    export VMSTATED_SOCKET=$sock
    $bin/vmstatedctl status
    $bin/vmstatedctl events
    $bin/vmstatedctl stop -w demo
    $bin/vmstatedctl start -w demo

Press Ctrl-C here to stop the VMs and the daemon.

MSG

for vm in $vms; do
    ctl start "$vm" || true
done

# wait returns early when a signal arrives; go on waiting until the
# daemon is gone.
while kill -0 "$daemon" 2>/dev/null; do
    wait "$daemon" || true
done
echo "demo: vmstated exited" >&2
exit 1
