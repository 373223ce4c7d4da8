#!/bin/sh
# Everything the test suite needs from the system, installed when missing (idempotent):
#   - Debian's Chromium for the browser tests (scripts/ensure-chromium.sh);
#   - Debian's dataset-fashion-mnist, which tests/test_datasets.py loads for real: the
#     official Fashion-MNIST files at /usr/share/datasets/fashion-mnist (REFERENCE.md).
# Installs with apt-get as root, or through sudo; fails (never skips) when it cannot.
set -eu
sh "$(dirname "$0")/ensure-chromium.sh"

FASHION=/usr/share/datasets/fashion-mnist
if [ -f "$FASHION/train-images-idx3-ubyte.gz" ] && [ -f "$FASHION/t10k-labels-idx1-ubyte.gz" ]; then
    echo "ensure-test-deps: Fashion-MNIST is installed in $FASHION"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "ensure-test-deps: $FASHION is missing; run 'apt-get install -y dataset-fashion-mnist' as root" >&2
    exit 1
fi
echo "ensure-test-deps: $FASHION is missing; installing Debian's dataset-fashion-mnist"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist
echo "ensure-test-deps: installed Fashion-MNIST in $FASHION"
