#!/bin/sh
# A 200 KiB line, then a last line without a newline.
head -c 204800 /dev/zero | tr '\0' a
printf '\nlast line without newline'
