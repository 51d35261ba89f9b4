#!/bin/sh
env > env.out
pwd > cwd.out
printf '%s\n' "$0" "$@" > args.out
cat > stdin.out
