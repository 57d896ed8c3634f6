#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: pnpm (the exact version of `packageManager`)
# and the locked dependencies. Idempotent; every other script starts with it.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION="$(node -p 'require("./package.json").packageManager.split("@")[1]')"

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "setup: installing pnpm@$PNPM_VERSION" >&2
  npm install --global --no-fund --no-audit "pnpm@$PNPM_VERSION" >/dev/null
fi

# --frozen-lockfile: the lockfile is the source of truth; a stale lockfile fails here, not later.
pnpm install --frozen-lockfile --reporter=silent
