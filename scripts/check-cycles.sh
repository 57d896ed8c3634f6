#!/usr/bin/env bash
# Circular imports between the modules of packages/*/src, with dpdm. Only runtime imports count: `import type` is
# erased first (--transform), as in the Effect monorepo's own check. Fails (exit 1) on any cycle, and also when a
# relative import does not resolve to a file: dpdm would then see no edge, and so no cycle, without saying so.
# Usage: bash scripts/check-cycles.sh [glob...]   (default: "packages/*/src/**/*.ts"; also `pnpm check-cycles`)
set -uo pipefail
cd "$(dirname "$0")/.."

out="$(mktemp)"
err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT

if [ "$#" -eq 0 ]; then set -- "packages/*/src/**/*.ts"; fi

# tsconfig.base.json: NodeNext resolution, so "./Foo.js" resolves to ./Foo.ts as in tsc.
if ! pnpm exec dpdm --transform --no-tree --no-warning --no-progress --tsconfig tsconfig.base.json \
  --output "$out" "$@" >/dev/null 2>"$err"; then
  cat "$err" >&2
  echo "check-cycles: dpdm failed" >&2
  exit 2
fi

node - "$out" <<'JS'
const fs = require("node:fs")
const r = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const files = Object.keys(r.tree).filter((f) => !/^node:|(^|\/)node_modules\//.test(f))
const unresolved = files.flatMap((issuer) =>
  (r.tree[issuer] ?? []).filter((d) => d.request.startsWith(".") && d.id === null).map((d) => `${issuer}: "${d.request}"`)
)
for (const u of unresolved) console.error(`check-cycles: unresolved import ${u}`)
const cycles = r.circulars ?? []
cycles.forEach((c, i) => console.error(`check-cycles: cycle ${i + 1}) ${[...c, c[0]].join(" -> ")}`))
console.log(`check-cycles: ${files.length} modules, ${cycles.length} cycle(s), ${unresolved.length} unresolved import(s)`)
process.exit(cycles.length > 0 || unresolved.length > 0 ? 1 : 0)
JS
