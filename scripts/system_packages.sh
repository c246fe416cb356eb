#!/usr/bin/env bash
# Debian packages beyond Python's that reports and some tests use: a CJK font (reports draw Chinese labels;
# tests/eval/test_report.py) and headless Chromium with its driver (the report and inspector-page tests).
# `make fonts` and `.ci/run` both call this.
#
#   scripts/system_packages.sh [fonts] [chromium]     (no argument: both)
#
# Installs only what is missing, and only with apt-get as root or with password-less sudo. It never fails its
# caller for want of apt: exit 0 when everything asked for is present afterwards, 1 with the reason otherwise.
set -uo pipefail

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(fonts chromium)

have_fonts() {  # what bbuvl.eval.fonts finds first: fontconfig's Chinese fonts, else the package's file
  { command -v fc-list >/dev/null && fc-list :lang=zh | grep -q .; } ||
    dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed"
}
have_chromium() { { command -v chromium || command -v chromium-browser; } >/dev/null && command -v chromedriver >/dev/null; }

missing=()
for group in "${groups[@]}"; do
  case $group in
    fonts) have_fonts || missing+=(fonts-wqy-microhei) ;;
    chromium) have_chromium || missing+=(chromium chromium-driver) ;;
    *) echo "system packages: unknown group '$group' (fonts, chromium)" >&2; exit 2 ;;
  esac
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: ${groups[*]} already present"
  exit 0
fi

why=""
if ! command -v apt-get >/dev/null; then
  why="no apt-get on this machine"
elif [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif ! command -v sudo >/dev/null; then
  why="not root, and no sudo"
elif sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  why="not root, and sudo needs a password"
fi
if [ -n "$why" ]; then
  echo "system packages: not installing ${missing[*]}: $why; the tests that need them will skip" >&2
  exit 1
fi

start=$(date +%s)
log=$(mktemp)
if DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >"$log" 2>&1 &&
   DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  echo "system packages: installed ${missing[*]} in $(( $(date +%s) - start )) s"
  rm -f "$log"
else
  echo "system packages: apt-get could not install ${missing[*]} (last lines of its output below); the tests that need" \
       "them will skip" >&2
  tail -n 5 "$log" >&2
  rm -f "$log"
  exit 1
fi
