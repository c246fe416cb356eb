#!/usr/bin/env bash
# The demo's output folder ($OUT, `make demo DEMO=...`, BBUVL_DEMO_OUT): the demo empties it before each run, and
# `make clean` removes it, but only when the demo wrote it. A folder typed by mistake (a home folder, a dataset)
# is refused with its name and left as it was.
#
#   demo_out.sh fresh DIR    empty DIR for a new demo run (created when absent) and mark it as the demo's
#   demo_out.sh check DIR    exit 0 when DIR is the demo's (or absent), 2 with a message when not
#   demo_out.sh remove DIR   remove DIR when it is the demo's (nothing when absent), refuse when not
#
# What counts as the demo's: DIR holds the mark file the demo writes ($MARK); or it is empty; or, from before the
# mark, it holds only the demo's stage folders (shapes, bbu), each with the `val_path` file the demo writes in it.
# A symbolic link is never the demo's: removing it would not remove what it points at, and emptying what it
# points at would reach outside the path given.
set -euo pipefail
MARK=.bbuvl-demo

owned() {  # owned DIR: true when DIR is absent or the demo's (above)
  local dir=$1 entry name
  if [ -L "$dir" ]; then
    WHY="it is a symbolic link (to $(readlink "$dir"))"
    return 1
  fi
  [ -e "$dir" ] || return 0
  if [ ! -d "$dir" ]; then
    WHY="it is a file, not a folder"
    return 1
  fi
  [ -f "$dir/$MARK" ] && [ ! -L "$dir/$MARK" ] && return 0
  for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue  # an unmatched glob
    name=${entry##*/}
    case "$name" in
      shapes|bbu) [ -d "$entry" ] && [ ! -L "$entry" ] && [ -f "$entry/val_path" ] && continue ;;
    esac
    WHY="it holds '$name', which the demo did not write (no $MARK in it)"
    return 1
  done
  return 0
}

refuse() {  # refuse DIR: the message and exit status 2
  echo "error: $1 is not the demo's output folder: $WHY. The demo empties its folder before each run;" \
    "give it another one (make demo DEMO=..., or BBUVL_DEMO_OUT=...), or move $1 away." >&2
  exit 2
}

[ $# -eq 2 ] || { echo "usage: $0 fresh|check|remove DIR" >&2; exit 2; }
command=$1 dir=$2
while [ "${#dir}" -gt 1 ] && [ "${dir%/}" != "$dir" ]; do dir=${dir%/}; done  # demo_out/ names the link, not its target
[ -n "$dir" ] || { echo "error: the demo's output folder is empty (DEMO= or BBUVL_DEMO_OUT=)" >&2; exit 2; }
WHY=""
owned "$dir" || refuse "$dir"
case "$command" in
  fresh)
    rm -rf -- "$dir"
    mkdir -p -- "$dir"
    echo "written by scripts/demo.sh: the next demo run empties this folder, and make clean removes it" > "$dir/$MARK"
    ;;
  check) ;;
  remove) rm -rf -- "$dir" ;;
  *) echo "usage: $0 fresh|check|remove DIR" >&2; exit 2 ;;
esac
