#!/bin/sh
# prune-venv [VENV]: shrink a venv for a runtime image without changing what the services execute.
# Runs in the builder stage only (it needs binutils' strip).
set -eu
lib="${1:-/opt/venv}/lib"
# Third-party test suites (pandas/tests alone is ~30 MB), never imported by a service. -mindepth 4 means
# <lib>/python3.X/site-packages/<pkg>/.../tests: a top-level package called "tests" is left alone.
find "$lib" -mindepth 4 -type d -name tests -prune -exec rm -rf {} +
# Type stubs are for type checkers.
find "$lib" -name '*.pyi' -delete
# Debug sections of shared objects (uvloop alone carries 12 MB). Only objects auditwheel left alone:
# stripping a library patchelf rewrote (the vendored *.libs/, anything with an RPATH/RUNPATH) breaks
# its program headers ("ELF load command address/offset not page-aligned"), so those are skipped.
find "$lib" -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*.libs/*' | while read -r so; do
  if ! readelf -d "$so" 2>/dev/null | grep -q -E '\((RPATH|RUNPATH)\)'; then
    strip --strip-debug "$so"
  fi
done
