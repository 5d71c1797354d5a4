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

# Every parser's libFuzzer target, briefly (10 s each, from seeds made of
# ../shared) after replaying the kept regression inputs; longer campaigns:
# bash scripts/fuzz.sh all 600.
bash "$LC_ROOT/scripts/fuzz.sh" all 10

# One closing line for the whole run (set -e stopped at any failure above).
n_tests=$(cd "$LC_BUILD" && ctest -N | grep -c "Test *#")
echo "all: $((2 * n_tests + 8)) passed, 0 failed (ctest twice: optimized and sanitized; 8 fuzz targets)"
