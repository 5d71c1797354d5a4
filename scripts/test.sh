#!/usr/bin/env bash
# Every test: set up, build, and run the ctest suite. Fixtures are read from
# ../shared beside the repository.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

lc_install_packages
lc_build
cd "$LC_BUILD"
ctest --output-on-failure -j"$(nproc)"
