#!/bin/sh
echo "hello from $1 $2"
echo "a warning" >&2
exit 0
