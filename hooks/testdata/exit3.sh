#!/bin/sh
echo "storage not ready" >&2
exit 3
