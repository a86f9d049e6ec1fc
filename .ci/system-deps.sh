#!/usr/bin/env bash
# Debian packages for the end-to-end tests: Xvfb (PsychoPy runs), Chromium (report
# screenshots, online experiments driven by Playwright) and npm (fetches the libraries the
# online experiments load from a CDN). Idempotent and quiet; without root or apt it says what
# is missing.
set -euo pipefail
packages=(xvfb xauth chromium fonts-dejavu-core libgl1-mesa-dri libglu1-mesa libgl1 libglib2.0-0 libasound2 libportaudio2 libsndfile1)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm from any source will do (Node.js's own packages bring it; Debian's npm would clash)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "system-deps: apt-get not found; install these for the end-to-end tests: ${missing[*]}" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
if ! $SUDO true 2>/dev/null; then
  echo "system-deps: need root to install ${missing[*]}; those tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# Some names differ between Debian releases (e.g. libasound2 vs libasound2t64): install what exists.
available=()
for p in "${missing[@]}"; do
  apt-cache show "$p" >/dev/null 2>&1 && available+=("$p")
done
[ ${#available[@]} -eq 0 ] || $SUDO apt-get install -y -qq --no-install-recommends "${available[@]}" >/dev/null
