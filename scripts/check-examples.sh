#!/usr/bin/env bash
# Every `@example` of a doc comment in a published package compiles (and runs: docgen imports each one with tsx,
# so its top-level code must not throw). @effect/docgen extracts the examples of packages/<pkg>/src (internal/
# excluded), rewrites imports of the package itself to its sources, and runs tsc with the
# `examplesCompilerOptions` of packages/<pkg>/docgen.json (paths map the other workspace packages to their
# sources). The markdown it also writes goes to packages/<pkg>/.docgen, removed afterwards. @since is not
# enforced here (`pnpm docgen` enforces it when generating the docs).
# Usage: bash scripts/check-examples.sh [package-dir...]   (default: packages/core packages/node; also
# `pnpm check-examples`)
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

if [ "$#" -eq 0 ]; then set -- packages/core packages/node; fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

failed=0
for dir in "$@"; do
  rm -rf "$root/$dir/.docgen"
  if (cd "$root/$dir" && DOCGEN_OUT=.docgen DOCGEN_ENFORCE_VERSION=false timeout 600 pnpm exec docgen) >"$log" 2>&1; then
    count="$(grep -Eo '[0-9]+ example\(s\) found' "$log" | grep -Eo '^[0-9]+' || echo 0)"
    echo "check-examples: $dir: ${count} example(s) compile and run"
  else
    failed=1
    # Drop docgen's progress lines; keep the error (tsc's or tsx's output, or a parse error).
    grep -v ' INFO (#' "$log" >&2
    bad="$(grep -Eo '\.docgen/examples/[^(:]+\.ts' "$log" | sort -u | sed 's|^\.docgen/examples/||')"
    if [ -n "$bad" ]; then
      while IFS= read -r name; do echo "check-examples: $dir: example fails: $name" >&2; done <<<"$bad"
    fi
    if grep -Eq '^ *src/[^(]+\.ts\([0-9]+,[0-9]+\): error' "$log"; then
      echo "check-examples: $dir: the sources themselves do not compile (see tsc -b)" >&2
    fi
    echo "check-examples: $dir: FAILED" >&2
  fi
  rm -rf "$root/$dir/.docgen"
done

exit "$failed"
