#!/usr/bin/env node
/**
 * `digime-simulator` (the package's `bin`; `pnpm simulator` in this repository): serves the
 * simulated digi.me over HTTP until SIGINT or SIGTERM, and prints the URLs to point an application
 * at. Run with `--help` for the options.
 *
 * This entry first checks the installed `effect` (`bin/effectVersion.ts`, Node's built-ins only):
 * with Effect 4, or no `effect` at all, it says so on stderr and exits with code 1, where linking
 * the command would fail with a bare `ERR_MODULE_NOT_FOUND`. Only then does it import the command,
 * `bin/simulatorMain.ts`, dynamically, so that nothing of Effect is linked before the check.
 *
 * Built by `bin/tsconfig.json` into `dist/bin/simulator.js`.
 */
import { checkEffect } from "./effectVersion.js"

const refused = checkEffect(import.meta.url)
if (refused === undefined) {
  await import("./simulatorMain.js")
} else {
  process.stderr.write(`digime-simulator: ${refused}\n`)
  process.exitCode = 1
}
