/**
 * `pnpm bench`: every figure of BENCHMARKS.md, each measured against its floor in this one run,
 * printed as a table and written as JSON.
 *
 *   pnpm bench [--only 1,3] [--quick] [--out FILE] [--markdown FILE]
 *
 * Needs PostgreSQL installed (as for the tests; `DATABASE_URL` to use a running one) and the
 * embedded SQLite driver, both set up by `npm test`'s set-up.
 */
import { Effect, Logger, LogLevel } from "effect"
import { existsSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import * as AllFiles from "./allFiles.js"
import * as Burst from "./burst.js"
import * as Decrypt from "./decrypt.js"
import * as HotPath from "./hotPath.js"
import * as Memory from "./memory.js"
import * as MultiProcess from "./multiProcess.js"
import * as PerRequest from "./perRequest.js"
import { machine, makeReport, markdown, table } from "./report.js"
import * as Signing from "./signing.js"
import { postgresUrl } from "./support.js"
import * as Upkeep from "./upkeep.js"

const usage = `Usage: pnpm bench [options]

Options:
  --only LIST       run only these sections (comma-separated numbers, 1 to 9)
  --quick           small sizes and short runs: checks that every section works, figures are rough
  --out FILE        where to write the JSON results (default bench-results.json at the repository root)
  --markdown FILE   also write the table as Markdown
  -h, --help        show this help`

// The repository root: where pnpm-workspace.yaml is (this file runs bundled, from bench/.build/).
const root = (() => {
  let dir = process.cwd()
  while (!existsSync(Path.join(dir, "pnpm-workspace.yaml")) && Path.dirname(dir) !== dir) dir = Path.dirname(dir)
  return dir
})()

const { values } = (() => {
  try {
    const argv = process.argv.slice(2)
    return parseArgs({
      args: argv[0] === "--" ? argv.slice(1) : argv,
      options: {
        only: { type: "string" },
        quick: { type: "boolean", default: false },
        out: { type: "string" },
        markdown: { type: "string" },
        help: { type: "boolean", short: "h", default: false }
      }
    })
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${usage}\n`)
    process.exit(2)
  }
})()
if (values.help) {
  process.stdout.write(`${usage}\n`)
  process.exit(0)
}

const sections = values.only === undefined
  ? [1, 2, 3, 4, 5, 6, 7, 8, 9]
  : values.only.split(",").map((part) => Number(part.trim()))
if (sections.some((n) => !Number.isInteger(n) || n < 1 || n > 9)) {
  process.stderr.write(`--only takes section numbers from 1 to 9\n\n${usage}\n`)
  process.exit(2)
}
if (typeof globalThis.gc !== "function") {
  process.stderr.write("bench: run with node --expose-gc (pnpm bench does)\n")
  process.exit(2)
}

const quick = values.quick
// Relative paths are the caller's: pnpm runs the script in this package, and says where it was called.
const callerDir = process.env.INIT_CWD ?? process.cwd()
const out = Path.resolve(callerDir, values.out ?? Path.join(root, "bench-results.json"))
const markdownOut = values.markdown === undefined ? undefined : Path.resolve(callerDir, values.markdown)
const report = makeReport()
const titles: Record<number, string> = {
  1: "hot path",
  2: "burst on a stale token",
  3: "per request",
  4: "signing",
  5: "multi-process",
  6: "memory",
  7: "file decryption",
  8: "all files",
  9: "fleet upkeep"
}

const main = Effect.gen(function*() {
  const startedAt = new Date()
  const needsPostgres = sections.some((n) => n === 1 || n === 3 || n === 5 || n === 9)
  const pgUrl = needsPostgres ? yield* postgresUrl : ""
  for (const n of sections) {
    process.stdout.write(`\n${n}. ${titles[n]}\n`)
    const options = { report, pgUrl, quick }
    switch (n) {
      case 1:
        yield* HotPath.run(options)
        break
      case 2:
        yield* Burst.run(options)
        break
      case 3:
        yield* PerRequest.run(options)
        break
      case 4:
        yield* Effect.promise(() => Signing.run(options))
        break
      case 5:
        yield* MultiProcess.run(options)
        break
      case 6:
        yield* Memory.run(options)
        break
      case 7:
        yield* Effect.promise(() => Decrypt.run(options))
        break
      case 8:
        yield* AllFiles.run(options)
        break
      case 9:
        yield* Upkeep.run(options)
        break
    }
  }
  const results = {
    startedAt: startedAt.toISOString(),
    durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    quick,
    machine: machine(),
    figures: report.figures
  }
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
  if (markdownOut !== undefined) writeFileSync(markdownOut, `${markdown(report.figures)}\n`)
  process.stdout.write(`\n${table(report.figures)}\n\n`)
  const missed = report.figures.filter((figure) => figure.pass === false).length
  const targets = report.figures.filter((figure) => figure.pass !== undefined).length
  process.stdout.write(
    `${targets - missed} of ${targets} targets met; results written to ${Path.relative(callerDir, out)}\n`
  )
}).pipe(
  Effect.scoped,
  // The library's own logs (a refresh that could not be stored, …) would only interleave with the table.
  Logger.withMinimumLogLevel(LogLevel.Error)
)

Effect.runPromise(main).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
