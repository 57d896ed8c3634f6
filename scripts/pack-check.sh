#!/usr/bin/env bash
# Packs each published package the way `pnpm publish` would (prepack builds dist; pnpm rewrites `exports` from
# `publishConfig.exports`, and `workspace:`/`catalog:` ranges to versions) into a temp dir, then checks each tarball:
# publint (--strict), attw with the ESM-only profile (every module of the `./*` wildcard named, since attw does not
# expand wildcards), and that README.md, LICENSE and dist/index.js are in it and no workspace:/catalog: range is left.
# Leaves nothing behind but the packages' dist/ (git-ignored; `pnpm clean` removes it).
# Usage: bash scripts/pack-check.sh [package-dir...]   (default: packages/core packages/node; also `pnpm check-pack`)
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

if [ "$#" -eq 0 ]; then set -- packages/core packages/node; fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failed=0
fail() {
  echo "pack-check: $1" >&2
  failed=1
}

for dir in "$@"; do
  name="$(node -p 'require(process.argv[1]).name' "$root/$dir/package.json")"
  dest="$tmp/$(basename "$dir")"
  mkdir -p "$dest"
  echo "pack-check: $name"
  if ! (cd "$root/$dir" && pnpm pack --pack-destination "$dest") >"$dest.log" 2>&1; then
    cat "$dest.log" >&2
    fail "$name: pnpm pack failed (the prepack build above)"
    continue
  fi
  tarball="$(ls "$dest"/*.tgz 2>/dev/null | head -n 1)"
  if [ -z "$tarball" ]; then
    fail "$name: pnpm pack made no tarball"
    continue
  fi

  listing="$(tar -tzf "$tarball")"
  for required in package/package.json package/README.md package/LICENSE package/dist/index.js package/dist/index.d.ts; do
    grep -qx "$required" <<<"$listing" || fail "$name: $required is missing from the tarball"
  done
  manifest="$(tar -xzOf "$tarball" package/package.json)"
  if grep -Eq '"(workspace|catalog):' <<<"$manifest"; then
    fail "$name: the packed package.json still has a workspace: or catalog: range"
  fi
  if ! grep -q '"./dist/' <<<"$manifest"; then
    fail "$name: the packed package.json's exports do not point at dist (publishConfig.exports not applied)"
  fi

  pnpm exec publint run "$tarball" --strict || fail "$name: publint"

  # Every module the `./*` (and `./testing/*`) wildcard exposes, as attw entrypoints.
  entrypoints=()
  for f in "$root/$dir"/src/*.ts "$root/$dir"/src/testing/*.ts; do
    [ -e "$f" ] || continue
    rel="${f#"$root/$dir/src/"}"
    rel="${rel%.ts}"
    case "$rel" in index | testing/index) continue ;; esac
    entrypoints+=("./$rel")
  done
  pnpm exec attw "$tarball" --profile esm-only --no-emoji --no-color --format table-flipped \
    ${entrypoints[@]+--include-entrypoints "${entrypoints[@]}"} || fail "$name: attw (--profile esm-only)"
done

if [ "$failed" -ne 0 ]; then
  echo "pack-check: FAILED" >&2
  exit 1
fi
echo "pack-check: all tarballs pass"
