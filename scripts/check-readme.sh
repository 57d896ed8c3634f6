#!/usr/bin/env bash
# A new user's first hour, from the README alone: a fresh project outside the repository installs the
# packed tarballs of @digime-effect/core and @digime-effect/node with the README's own install commands
# (each package name of ours replaced by its tarball), copies the README's Quick start and Testing
# sections into files, type-checks them, runs the test file with vitest, and runs the quick start
# against `npx digime-simulator --auto-consent` through a whole authorization (connect → consent →
# callback → accounts). Its tsconfig.json is the README's too; the project's own TypeScript (with
# @types/node) is the one thing added.
# Usage: bash scripts/check-readme.sh   (also `pnpm check-readme`); needs the npm registry.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

work="$(mktemp -d)"
children=()
cleanup() {
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "check-readme: $1" >&2
  exit 1
}

mkdir -p "$work/tarballs" "$work/app"
for dir in packages/core packages/node; do
  (cd "$root/$dir" && pnpm pack --pack-destination "$work/tarballs") >"$work/pack.log" 2>&1 ||
    { cat "$work/pack.log" >&2; fail "pnpm pack failed in $dir"; }
done
core="$(ls "$work"/tarballs/digime-effect-core-*.tgz)"
node_tgz="$(ls "$work"/tarballs/digime-effect-node-*.tgz)"

# The README's pieces: the install commands (npm), the Quick start and the testing example.
node - "$root/README.md" "$work" "$core" "$node_tgz" <<'EOF' || fail "the README's sections could not be read"
const fs = require("node:fs")
const [readmePath, work, core, nodeTgz] = process.argv.slice(2)
const readme = fs.readFileSync(readmePath, "utf8")
const block = (heading, lang) => {
  const at = readme.indexOf(`\n## ${heading}\n`)
  if (at < 0) throw new Error(`no section ${heading}`)
  const start = readme.indexOf("```" + lang + "\n", at) + lang.length + 4
  return readme.slice(start, readme.indexOf("\n```", start) + 1)
}
const install = block("Install", "sh").split("\n")
  .map((line) => line.replace(/#.*$/, "").trim())
  .filter((line) => line.startsWith("npm install"))
  .map((line) => line.replace(/@digime-effect\/core(?=\s|$)/, core).replace(/@digime-effect\/node(?=\s|$)/, nodeTgz))
if (install.length === 0) throw new Error("no npm install line")
fs.writeFileSync(`${work}/install.sh`, install.map((line) => `${line} --no-fund --no-audit`).join("\n") + "\n")
fs.writeFileSync(`${work}/app/tsconfig.json`, block("Install", "json"))
fs.writeFileSync(`${work}/app/quickstart.ts`, block("Quick start", "ts"))
fs.writeFileSync(`${work}/app/accounts.test.ts`, block("Testing your own code", "ts"))
EOF

cd "$work/app"
cat >package.json <<'EOF'
{ "name": "first-hour", "private": true, "type": "module" }
EOF

echo "check-readme: installing with the README's commands" >&2
bash "$work/install.sh" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "the README's install commands failed"; }
npm install --save-dev --no-fund --no-audit "typescript@$(grep -E '^  typescript:' "$root/pnpm-workspace.yaml" | awk '{print $2}')" \
  "@types/node@$(grep -E '^  "@types/node":' "$root/pnpm-workspace.yaml" | awk '{print $2}')" >>"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "installing TypeScript failed"; }

echo "check-readme: type-checking the Quick start and the testing example" >&2
npx tsc -p . || fail "the README's code does not type-check in a fresh project"

echo "check-readme: running the testing example" >&2
npx vitest run accounts.test.ts || fail "the README's testing example does not pass in a fresh project"

echo "check-readme: running the Quick start against digime-simulator --auto-consent" >&2
node -e '
const { generateKeyPairSync } = require("node:crypto")
const fs = require("node:fs")
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
fs.writeFileSync("private.pem", privateKey.export({ type: "pkcs8", format: "pem" }))
fs.writeFileSync("public.pem", publicKey.export({ type: "spki", format: "pem" }))
'
free_port() { node -e 'const s=require("node:net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
sim_port="$(free_port)"
app_port="$(free_port)"
npx digime-simulator --port "$sim_port" --auto-consent --contract first-hour=public.pem >"$work/simulator.log" 2>&1 &
children+=("$!")
PORT="$app_port" DIGIME_APPLICATION_ID=demo-app DIGIME_CONTRACT_ID=first-hour DIGIME_PRIVATE_KEY="$(cat private.pem)" \
  DIGIME_BASE_URL="http://127.0.0.1:$sim_port/v1.7/" DIGIME_ONBOARD_URL="http://127.0.0.1:$sim_port/apps/saas/" \
  npx tsx quickstart.ts >"$work/app.log" 2>&1 &
children+=("$!")

node - "$app_port" <<'EOF' || { cat "$work/simulator.log" "$work/app.log" >&2; fail "the Quick start did not complete an authorization"; }
const port = process.argv[2]
const app = `http://127.0.0.1:${port}`
const until = async (check) => {
  for (let i = 0; i < 300; i++) {
    try { if (await check()) return } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error("timed out")
}
const main = async () => {
  await until(async () => (await fetch(`${app}/connect?user=alice`, { redirect: "manual" })).status === 302)
  const connect = await fetch(`${app}/connect?user=alice`, { redirect: "manual" })
  const consent = await fetch(connect.headers.get("location"), { redirect: "manual" })
  if (consent.status !== 302) throw new Error(`the consent page answered ${consent.status}`)
  const callback = await fetch(consent.headers.get("location"), { redirect: "manual" })
  if (callback.status !== 302) throw new Error(`the callback answered ${callback.status}: ${await callback.text()}`)
  const accounts = await fetch(new URL(callback.headers.get("location"), app))
  const list = await accounts.json()
  if (accounts.status !== 200 || !Array.isArray(list) || list.length === 0) {
    throw new Error(`the accounts answered ${accounts.status}: ${JSON.stringify(list)}`)
  }
  console.log(`check-readme: alice connected and read ${list.length} account(s)`)
}
main().catch((error) => { console.error(error); process.exit(1) })
EOF
echo "check-readme: the README's install, Quick start and testing example work in a fresh project" >&2
