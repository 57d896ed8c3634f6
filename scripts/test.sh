#!/usr/bin/env bash
# The whole test suite: set-up, type check of every package (sources, tests and type tests),
# then every Vitest project, then the project's habit checks (lint, import cycles, packaging, doc
# examples, the README's install, quick start and testing example in a fresh project). Ends with a
# line "N passed, N failed": each failed check (the type check, each habit check) counts as one
# failure beside the failed tests, and is named on stderr.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

rc=0
typecheck_failed=0
if ! pnpm exec tsc -b; then
  echo "test: type check failed" >&2
  typecheck_failed=1
  rc=1
fi

rm -f .vitest-results.json
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=.vitest-results.json || rc=$?

# Habit checks: each one that fails counts once.
habits_failed=0
habit() {
  local name="$1"
  shift
  echo "test: habit check: $name" >&2
  if ! "$@"; then
    echo "test: habit check failed: $name" >&2
    habits_failed=$((habits_failed + 1))
    rc=1
  fi
}
habit "lint (pnpm lint)" pnpm lint
habit "import cycles (pnpm check-cycles)" bash scripts/check-cycles.sh
habit "packaging (pnpm check-pack)" bash scripts/pack-check.sh
habit "doc examples (pnpm check-examples)" bash scripts/check-examples.sh
habit "a fresh project from the README (pnpm check-readme)" bash scripts/check-readme.sh

node -e '
const fs = require("node:fs")
const extra = Number(process.argv[1])
if (!fs.existsSync(".vitest-results.json")) { console.log(`0 passed, ${1 + extra} failed`); process.exit(0) }
const r = JSON.parse(fs.readFileSync(".vitest-results.json", "utf8"))
const failed = r.numFailedTests + (r.numFailedTestSuites > 0 && r.numFailedTests === 0 ? r.numFailedTestSuites : 0) + extra
console.log(`${r.numPassedTests} passed, ${failed} failed`)
' "$((typecheck_failed + habits_failed))"

exit $rc
