#!/usr/bin/env bash
# The whole test suite: set-up, type check of every package (sources, tests and type tests),
# then every Vitest project. Ends with a line "N passed, N failed".
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

node -e '
const fs = require("node:fs")
const extra = Number(process.argv[1])
if (!fs.existsSync(".vitest-results.json")) { console.log(`0 passed, ${1 + extra} failed`); process.exit(0) }
const r = JSON.parse(fs.readFileSync(".vitest-results.json", "utf8"))
const failed = r.numFailedTests + (r.numFailedTestSuites > 0 && r.numFailedTests === 0 ? r.numFailedTestSuites : 0) + extra
console.log(`${r.numPassedTests} passed, ${failed} failed`)
' "$typecheck_failed"

exit $rc
