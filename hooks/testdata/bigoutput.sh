#!/bin/sh
# About 5 MB on each stream at once, every line numbered.
pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
awk -v pad="$pad" 'BEGIN { for (i = 0; i < 52429; i++) printf "out %06d %s\n", i, pad }' &
awk -v pad="$pad" 'BEGIN { for (i = 0; i < 52429; i++) printf "err %06d %s\n", i, pad }' >&2
wait
