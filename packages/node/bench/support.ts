/**
 * What the benchmark sections share: the test contract, the simulated digi.me over real HTTP, the
 * client's layers on each store, a clock that can be moved forward, a store that counts its
 * operations, and small statistics.
 */
import type { Digime, DigimeConfig } from "@digime-effect/core"
import { DigimeClient, TokenKey, TokenManager, TokenProtocol, TokenStore } from "@digime-effect/core"
import { TestContract } from "@digime-effect/core/testing"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Clock, Duration, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import type * as Scope from "effect/Scope"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { Bench, type Fn } from "tinybench"
import { NodeDigime, SqlTokenStore } from "../src/index.js"
import { NodeDigimeSimulator } from "../src/testing/index.js"
import { startPostgres } from "../test/fixtures/postgres.js"
import type { Report } from "./report.js"

/** What every section is given: where to record its figures, the run's PostgreSQL, the mode. */
export interface SectionOptions {
  readonly report: Report
  readonly pgUrl: string
  /** Small sizes and short runs: every section works, the figures are rough. */
  readonly quick: boolean
}

export const applicationId = "bench-app"
export const contractId = "bench-contract"
export const callbackUrl = "https://app.example/digime/callback"

/** A 2048-bit contract key (as digi.me hands them out), made once per run. */
export const testContract: TestContract.TestContract = await Effect.runPromise(TestContract.make(contractId))

// ---------------------------------------------------------------------------------------------
// the simulated digi.me and the client
// ---------------------------------------------------------------------------------------------

export type SimulatorOptions = Omit<NodeDigimeSimulator.Options, "applicationId" | "contracts">

/** The simulated digi.me over real HTTP on loopback, knowing the test contract. */
export const startSimulator = (options: SimulatorOptions = {}) =>
  NodeDigimeSimulator.make({
    applicationId,
    contracts: [{ contractId, publicKeyPem: testContract.publicKeyPem }],
    refreshTokenLifetime: "3650 days",
    strictRotation: true,
    ...options
  }).pipe(Effect.orDie)

export type Store = "memory" | "sqlite" | "postgres"

/** A store layer of each kind. SQLite is a file in a temporary directory, removed afterwards. */
export const storeLayer = (
  store: Store,
  options: {
    readonly pgUrl: string
    readonly tableName?: string | undefined
    /** SQLite only: a database in memory instead of a file. */
    readonly inMemory?: boolean | undefined
  }
): Layer.Layer<TokenStore.TokenStore> => {
  switch (store) {
    case "memory":
      return TokenStore.layerMemory
    case "sqlite":
      return SqlTokenStore.layer({ tableName: options.tableName }).pipe(
        Layer.provide(
          options.inMemory === true
            ? SqliteClient.layer({ filename: ":memory:" })
            : Layer.unwrapScoped(
              Effect.map(temporaryDirectory, (dir) => SqliteClient.layer({ filename: Path.join(dir, "tokens.db") }))
            )
        ),
        Layer.orDie
      )
    case "postgres": {
      const tableName = options.tableName
      // The run's tables are dropped when the layer is released: a shared database (DATABASE_URL,
      // the test suite's) is left as it was found.
      const dropOnRelease = tableName === undefined ?
        Layer.empty :
        Layer.scopedDiscard(
          Effect.addFinalizer(() =>
            Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS ${sql(tableName)}`).pipe(
              Effect.ignore
            )
          )
        )
      return Layer.merge(SqlTokenStore.layer({ tableName }), dropOnRelease).pipe(
        Layer.provide(PgClient.layer({ url: Redacted.make(options.pgUrl) })),
        Layer.orDie
      )
    }
  }
}

const temporaryDirectory: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(Path.join(tmpdir(), "digime-bench-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** The library on Node (`NodeDigime.layer`) talking to the server, on the given store. */
export const clientLayer = (
  server: NodeDigimeSimulator.Server,
  store: Layer.Layer<TokenStore.TokenStore>,
  config: Partial<DigimeConfig.Options> = {}
): Layer.Layer<Services> =>
  NodeDigime.layer({
    applicationId,
    contracts: [testContract.contract],
    baseUrl: server.baseUrl,
    onboardUrl: server.onboardUrl,
    ...config
  }).pipe(Layer.provideMerge(store), Layer.orDie)

/** What `clientLayer` provides. */
export type Services = Digime.Services | TokenStore.TokenStore

/**
 * A runtime of `layer`, built now and disposed of when the scope closes: the benchmark harness
 * calls into it from plain promises.
 */
export const managedRuntime = <R>(
  layer: Layer.Layer<R>
): Effect.Effect<ManagedRuntime.ManagedRuntime<R, never>, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const runtime = ManagedRuntime.make(layer)
      await runtime.runtime()
      return runtime
    }),
    (runtime) => Effect.promise(() => runtime.dispose())
  )

/** Authorize → consent (the simulator's Allow) → callback → exchange, storing the token under `key`. */
export const authorize = (server: NodeDigimeSimulator.Server, key: TokenKey.TokenKey) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    const start = yield* client.getAuthorizeUrl({ contractId, callbackUrl })
    const callback = yield* server.simulator.consent(start.url)
    const result = yield* TokenProtocol.parseCallback(callback, start.state)
    const manager = yield* TokenManager.TokenManager
    return yield* manager.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
  }).pipe(Effect.orDie)

export const keyOf = (userId: string): TokenKey.TokenKey => TokenKey.make(userId, contractId)

/** Refresh grants digi.me received: every `oauth/token` request that was not a code exchange. */
export const refreshRequests = (server: NodeDigimeSimulator.Server) =>
  Effect.map(server.simulator.stats, (stats) => ({
    refreshRequests: stats.requests.token - stats.exchanges,
    refreshes: stats.refreshes,
    replays: stats.replays,
    jwks: stats.requests.jwks,
    accounts: stats.requests.accounts
  }))

/** A throwaway PostgreSQL for the run (`DATABASE_URL` when set), stopped when the scope closes. */
export const postgresUrl: Effect.Effect<string, never, Scope.Scope> = Effect.suspend(() => {
  const existing = process.env.DATABASE_URL
  if (existing !== undefined && existing !== "") return Effect.succeed(existing)
  return Effect.acquireRelease(
    Effect.promise(() => startPostgres()),
    (postgres) => Effect.sync(postgres.dispose)
  ).pipe(Effect.map((postgres) => postgres.url))
})

// ---------------------------------------------------------------------------------------------
// a clock that can be moved forward
// ---------------------------------------------------------------------------------------------

/**
 * The live clock plus an offset that only grows: `advance` makes every token look older to the
 * client and to the simulator alike (both read this clock), so that a token is due for refresh
 * now instead of in an hour, while every sleep and timeout still runs in real time.
 */
export const makeSteppedClock = () => {
  const live = Clock.make()
  let offsetMillis = 0
  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => live.unsafeCurrentTimeMillis() + offsetMillis,
    currentTimeMillis: Effect.sync(() => live.unsafeCurrentTimeMillis() + offsetMillis),
    unsafeCurrentTimeNanos: () => live.unsafeCurrentTimeNanos() + BigInt(offsetMillis) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => live.unsafeCurrentTimeNanos() + BigInt(offsetMillis) * 1_000_000n),
    sleep: (duration) => live.sleep(duration)
  }
  return {
    clock,
    advance: (duration: Duration.DurationInput) =>
      Effect.sync(() => {
        offsetMillis += Duration.toMillis(duration)
      })
  }
}

// ---------------------------------------------------------------------------------------------
// a store that counts what it is asked
// ---------------------------------------------------------------------------------------------

export interface StoreCounts {
  get: number
  set: number
  compareAndSet: number
  lease: number
}

/** Wraps the store of `layer`, counting each operation into `counts`. */
export const countingStore = (
  layer: Layer.Layer<TokenStore.TokenStore>,
  counts: StoreCounts
): Layer.Layer<TokenStore.TokenStore> =>
  Layer.effect(
    TokenStore.TokenStore,
    Effect.map(TokenStore.TokenStore, (store): TokenStore.Service => ({
      ...store,
      get: (key) => Effect.suspend(() => (counts.get++, store.get(key))),
      set: (key, token) => Effect.suspend(() => (counts.set++, store.set(key, token))),
      compareAndSet: (key, version, token) =>
        Effect.suspend(() => (counts.compareAndSet++, store.compareAndSet(key, version, token))),
      delete: store.delete,
      acquireLease: (key, lease) => Effect.suspend(() => (counts.lease++, store.acquireLease(key, lease))),
      endLease: (key, lease, end) => Effect.suspend(() => (counts.lease++, store.endLease(key, lease, end)))
    }))
  ).pipe(Layer.provide(layer))

export const zeroCounts = (): StoreCounts => ({ get: 0, set: 0, compareAndSet: 0, lease: 0 })

// ---------------------------------------------------------------------------------------------
// statistics
// ---------------------------------------------------------------------------------------------

export const quantile = (samples: ReadonlyArray<number>, q: number): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const position = (sorted.length - 1) * q
  const lower = Math.floor(position)
  const upper = Math.ceil(position)
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower)
}

export const median = (samples: ReadonlyArray<number>): number => quantile(samples, 0.5)

/**
 * Milliseconds elapsed while `effect` ran, with its result. Read from `performance.now()`, not from
 * Effect's `Clock`, which a section may be moving forward.
 */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<readonly [number, A], E, R> =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.map(effect, (a) => [performance.now() - start, a] as const)
  })

/**
 * Runs the tasks in `rounds` short tinybench runs, their order reversed every other round, so that
 * drift (CPU frequency, the other process on a 2-core machine, heap growth) falls on every task
 * alike; sequential runs of a few seconds each were seen to differ by 15% for the same code.
 * Returns per task the median over rounds of its median latency (ms), and paired ratios: the
 * median over rounds of `a / b` within a round.
 */
export const interleaved = async (
  tasks: Readonly<Record<string, Fn>>,
  options: { readonly rounds: number; readonly time: number; readonly warmupTime: number }
) => {
  const names = Object.keys(tasks)
  const p50s = new Map(names.map((name) => [name, [] as Array<number>]))
  const samples = new Map(names.map((name) => [name, 0]))
  for (let round = 0; round < options.rounds; round++) {
    const bench = new Bench({ time: options.time, warmup: round === 0, warmupTime: options.warmupTime })
    for (const name of round % 2 === 0 ? names : [...names].reverse()) bench.add(name, tasks[name]!)
    await bench.run()
    for (const name of names) {
      const result = bench.getTask(name)?.result
      if (result === undefined || result.state !== "completed") {
        const why = result?.state === "errored" ? result.error.message : result?.state
        throw new Error(`task ${name} did not complete: ${why}`)
      }
      p50s.get(name)!.push(result.latency.p50)
      samples.set(name, samples.get(name)! + result.latency.samplesCount)
    }
  }
  const of = (name: string) => p50s.get(name)!
  return {
    /** Median latency of one run of the task, in milliseconds. */
    p50: (name: string) => median(of(name)),
    /** The median over rounds of `a`'s latency divided by `b`'s. */
    ratio: (a: string, b: string) => median(of(a).map((value, i) => value / of(b)[i]!)),
    /** The median over rounds of `a`'s latency minus `b`'s, in milliseconds. */
    difference: (a: string, b: string) => median(of(a).map((value, i) => value - of(b)[i]!)),
    samples: (name: string) => samples.get(name)!,
    /** The task's median latency in each round, in milliseconds. */
    perRound: (name: string): ReadonlyArray<number> => of(name),
    rounds: options.rounds
  }
}
