/**
 * 5. Four OS processes share one PostgreSQL store and call digi.me (the simulator, over HTTP on
 * loopback) in waves of concurrent calls for three users, while the access tokens expire every
 * 1 to 2 seconds. Measured: calls per second through `withAutoRefresh`, against the same processes
 * calling `readAccounts` with a token read once that never expires (the baseline: nothing to
 * refresh, nothing to look up); and refreshes per token generation (target 1): every refresh request
 * digi.me received against the versions the refreshes added to the store, with no replay.
 *
 * The workers are `test/fixtures/worker.ts` (the multi-process test's), bundled like the benchmark.
 */
import { TokenStore } from "@digime-effect/core"
import { Effect, Option, Redacted } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { spawnWorker } from "../test/fixtures/workers.js"
import {
  applicationId,
  authorize,
  clientLayer,
  contractId,
  keyOf,
  refreshRequests,
  type SectionOptions,
  startSimulator,
  storeLayer,
  testContract
} from "./support.js"

const section = "5 multi-process"
const processes = 4
// Tokens live 6 to 7 s and are refreshed 5 s ahead: a new generation every 1 to 2 s.
const accessTokenLifetime = "7 seconds"
const leadMillis = 5_000

interface Phase {
  readonly calls: number
  readonly failed: number
  readonly callsPerSecond: number
  readonly refreshRequests: number
  readonly replays: number
  readonly versionsAdded: number
  readonly failures: Readonly<Record<string, number>>
  /** The slowest whole call (waits for a refresh included), and the slowest data call alone. */
  readonly maxCallMillis: number
  readonly maxReadMillis: number
}

export const run = (options: SectionOptions) =>
  Effect.gen(function*() {
    const durationMillis = options.quick ? 3_000 : 15_000
    const concurrency = options.quick ? 50 : 250
    const secrets = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(Path.join(tmpdir(), "digime-bench-keys-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const privateKeyFile = Path.join(secrets, "contract.pem")
    writeFileSync(privateKeyFile, Redacted.value(testContract.contract.privateKey), { mode: 0o600 })
    // The bundled worker sits next to the bundled benchmark.
    const workerScript = Path.join(Path.dirname(fileURLToPath(import.meta.url)), "worker.mjs")

    const phase = (name: "bare" | "auto") =>
      Effect.gen(function*() {
        const server = yield* startSimulator({ accessTokenLifetime: name === "bare" ? "1 hour" : accessTokenLifetime })
        const table = `bench_mp_${name}_${process.pid}`
        const users = ["alice", "bob", "carol"].map((user) => keyOf(`${user}-${name}`))
        return yield* Effect.gen(function*() {
          const store = yield* TokenStore.TokenStore
          for (const key of users) yield* authorize(server, key)
          const versions = Effect.forEach(
            users,
            (key) => Effect.map(Effect.orDie(store.get(key)), (stored) => Option.getOrThrow(stored).version)
          )
          const initial = yield* versions
          const before = yield* refreshRequests(server)
          // One window for all: each worker starts its first wave at the same instant, well after
          // the time a worker takes to start (about a second here).
          const startAt = Date.now() + 5_000
          const workers = yield* Effect.forEach(Array.from({ length: processes }), () =>
            spawnWorker({
              script: [workerScript],
              cwd: process.cwd(),
              origin: server.origin,
              applicationId,
              contractId,
              privateKeyFile,
              pgUrl: options.pgUrl,
              table,
              userIds: users.map((key) => key.userId),
              durationMillis,
              concurrency,
              leadMillis,
              bare: name === "bare",
              startAt
            }))
          const ended = yield* Effect.forEach(workers, (worker) => worker.ended(durationMillis + 30_000), {
            concurrency: "unbounded"
          }).pipe(Effect.orDie)
          const after = yield* refreshRequests(server)
          const final = yield* versions
          const failures: Record<string, number> = {}
          let calls = 0
          let failed = 0
          let windowMillis = 0
          let maxCallMillis = 0
          let maxReadMillis = 0
          for (const worker of ended) {
            if (worker.code !== 0 || worker.done === undefined) {
              return yield* Effect.dieMessage(`multi-process: a worker failed: ${worker.output.slice(0, 500)}`)
            }
            calls += worker.done.calls
            failed += worker.done.calls - worker.done.succeeded
            windowMillis = Math.max(windowMillis, worker.done.elapsedMillis)
            maxCallMillis = Math.max(maxCallMillis, worker.done.maxCallMillis)
            maxReadMillis = Math.max(maxReadMillis, worker.done.maxReadMillis)
            for (const [tag, count] of Object.entries(worker.done.failures)) {
              failures[tag] = (failures[tag] ?? 0) + count
            }
          }
          return {
            calls,
            failed,
            // The workers share one window (`startAt`), which ends with the last wave to finish.
            callsPerSecond: calls / (windowMillis / 1_000),
            refreshRequests: after.refreshRequests - before.refreshRequests,
            replays: after.replays - before.replays,
            versionsAdded: final.reduce((sum, version, i) => sum + version - initial[i]!, 0),
            failures,
            maxCallMillis,
            maxReadMillis
          } satisfies Phase
        }).pipe(Effect.provide(clientLayer(
          server,
          storeLayer("postgres", { pgUrl: options.pgUrl, tableName: table }),
          { refreshLeadTime: leadMillis }
        )))
      }).pipe(Effect.scoped)

    const bare = yield* phase("bare")
    const auto = yield* phase("auto")
    const common = { processes, concurrencyPerProcess: concurrency, users: 3, durationMillis }
    options.report.record({
      section,
      name: `calls per second, ${processes} processes, tokens expiring every 1-2 s`,
      value: auto.callsPerSecond,
      unit: "/s",
      floor: bare.callsPerSecond,
      floorName: "/s same calls, no withAutoRefresh, token never expires",
      ratio: auto.callsPerSecond / bare.callsPerSecond,
      details: {
        ...common,
        calls: auto.calls,
        baselineCalls: bare.calls,
        baselineFailed: bare.failed,
        slowestCallMillis: auto.maxCallMillis,
        slowestDataCallMillis: auto.maxReadMillis,
        baselineSlowestCallMillis: bare.maxCallMillis
      }
    })
    options.report.record({
      section,
      name: "refreshes per token generation",
      value: auto.refreshRequests / auto.versionsAdded,
      unit: "per generation",
      target: "1 (and no replay, no failed call)",
      pass: auto.versionsAdded > 0 && auto.refreshRequests === auto.versionsAdded && auto.replays === 0 &&
        auto.failed === 0,
      details: {
        refreshRequests: auto.refreshRequests,
        generations: auto.versionsAdded,
        replays: auto.replays,
        failedCalls: auto.failed,
        failures: auto.failures
      }
    })
  }).pipe(Effect.scoped)
