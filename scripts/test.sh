#!/usr/bin/env bash
# Every test: set up, build, and run the ctest suite. Fixtures are read from
# ../shared beside the repository.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

lc_install_packages
lc_build
(cd "$LC_BUILD" && ctest --output-on-failure -j"$(nproc)")

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer. The
# code checks every allocation for NULL, so ASan returns NULL for impossible
# sizes instead of aborting (a test asks for one on purpose).
LC_BUILD="$LC_ROOT/build-sanitize" lc_build -DCMAKE_BUILD_TYPE=Debug -DLC_SANITIZE=ON
(cd "$LC_ROOT/build-sanitize" &&
    ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j"$(nproc)")
