#!/bin/sh
# Each line is written in two pieces while the other stream writes too.
(i=0; while [ $i -lt 2000 ]; do printf 'out-%d-' $i; printf 'tail\n'; i=$((i+1)); done) &
i=0
while [ $i -lt 2000 ]; do printf 'err-%d-' $i >&2; printf 'tail\n' >&2; i=$((i+1)); done
wait
