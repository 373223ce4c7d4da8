#!/bin/sh
# Make sure the browser tests have Debian's Chromium (Playwright drives /usr/bin/chromium;
# `playwright install` cannot download its own browser on the project's machines).
# Idempotent: does nothing when the binary is there; otherwise installs it with apt-get
# (as root, or through sudo). Set DEEPAE_CHROMIUM to use another binary.
set -eu
CHROMIUM="${DEEPAE_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "ensure-chromium: $CHROMIUM is installed ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
if [ "$CHROMIUM" != /usr/bin/chromium ]; then
    echo "ensure-chromium: DEEPAE_CHROMIUM=$CHROMIUM does not exist; fix the path or unset it" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "ensure-chromium: $CHROMIUM is missing; run 'apt-get install -y chromium' as root" >&2
    exit 1
fi
echo "ensure-chromium: $CHROMIUM is missing; installing Debian's chromium with apt-get"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
