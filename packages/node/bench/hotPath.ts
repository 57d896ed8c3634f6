/**
 * 1. The hot path: `withAutoRefresh` around a trivial effect, with a valid token, against the same
 * trivial effect alone. Per store: the per-call overhead (median, in µs, and as a ratio) and the
 * store operations per call. The cost with the token cache turned off (`tokenCacheTtl: 0`) is given
 * for context: it is what every call would pay without the cache, one store read.
 */
import { AutoRefresh, type TokenKey } from "@digime-effect/core"
import { Duration, Effect } from "effect"
import {
  authorize,
  clientLayer,
  countingStore,
  interleaved,
  keyOf,
  managedRuntime,
  type SectionOptions,
  type Services,
  startSimulator,
  type Store,
  type StoreCounts,
  storeLayer,
  zeroCounts
} from "./support.js"

const section = "1 hot path"
const round = (n: number) => Math.round(n * 1_000) / 1_000
const defaultCacheTtl = Duration.seconds(30)

const cases: ReadonlyArray<{ readonly store: Store; readonly cached: boolean }> = [
  { store: "memory", cached: true },
  { store: "sqlite", cached: true },
  { store: "postgres", cached: true },
  { store: "sqlite", cached: false },
  { store: "postgres", cached: false }
]

export const run = (options: SectionOptions) =>
  Effect.gen(function*() {
    const server = yield* startSimulator({ accessTokenLifetime: "1 hour" })
    // The first case measured in a fresh process pays for the JIT's work on every path it takes:
    // it is measured once more, unrecorded, before anything counts.
    for (const [i, { cached, store }] of [cases[0]!, ...cases].entries()) {
      const counts = zeroCounts()
      const tableName = `bench_hot_${i}_${store}_${cached ? "cached" : "uncached"}_${process.pid}`
      const runtime = yield* managedRuntime(clientLayer(
        server,
        countingStore(storeLayer(store, { pgUrl: options.pgUrl, tableName }), counts),
        cached ? { tokenCacheTtl: defaultCacheTtl } : { tokenCacheTtl: 0 }
      ))
      const key = keyOf(`hot-${i}-${store}-${cached ? "cached" : "uncached"}`)
      yield* Effect.promise(() => runtime.runPromise(authorize(server, key)))
      yield* Effect.promise(() => measure(runtime, key, store, cached, counts, options, i === 0))
    }
  }).pipe(Effect.scoped)

interface Runtime {
  readonly runPromise: <A, E>(effect: Effect.Effect<A, E, Services>) => Promise<A>
}

const measure = async (
  runtime: Runtime,
  key: TokenKey.TokenKey,
  store: Store,
  cached: boolean,
  counts: StoreCounts,
  options: SectionOptions,
  warmUp: boolean
) => {
  // A store read costs a database round trip when the cache is off: fewer calls per sample then.
  const batch = cached ? 1_000 : 50
  const use = (credentials: AutoRefresh.KeyedCredentials) => Effect.succeed(credentials.contractId)
  const stored = await runtime.runPromise(
    AutoRefresh.withAutoRefresh(key, (credentials) => Effect.succeed(credentials))
  )
  const bare = Effect.gen(function*() {
    for (let i = 0; i < batch; i++) yield* use(stored)
  })
  const wrapped = Effect.gen(function*() {
    for (let i = 0; i < batch; i++) yield* AutoRefresh.withAutoRefresh(key, use)
  })
  let wrappedCalls = 0
  const before = { ...counts }
  const started = performance.now()
  const results = await interleaved({
    bare: () => runtime.runPromise(bare),
    wrapped: () => {
      wrappedCalls += batch
      return runtime.runPromise(wrapped)
    }
  }, { rounds: options.quick ? 2 : 10, time: options.quick ? 100 : 250, warmupTime: options.quick ? 50 : 750 })
  const elapsedMillis = performance.now() - started
  if (warmUp) return
  const bareMicros = (results.p50("bare") * 1_000) / batch
  const wrappedMicros = (results.p50("wrapped") * 1_000) / batch
  const overhead = (results.difference("wrapped", "bare") * 1_000) / batch
  const reads = counts.get - before.get
  const operations = reads + counts.compareAndSet - before.compareAndSet + counts.set - before.set +
    counts.lease - before.lease
  const label = `${store}${cached ? "" : ", tokenCacheTtl 0"}`
  const details = {
    batch,
    rounds: results.rounds,
    bareSamples: results.samples("bare"),
    wrappedSamples: results.samples("wrapped"),
    wrappedCalls,
    storeReads: reads,
    storeOperations: operations
  }
  options.report.record({
    section,
    name: `overhead per call (${label})`,
    value: overhead,
    unit: "µs",
    floor: bareMicros,
    floorName: "µs bare effect",
    ratio: results.ratio("wrapped", "bare"),
    ...(store === "memory" ? { target: "< 2 µs overhead", pass: overhead < 2 } : {}),
    details: {
      ...details,
      wrappedMicros,
      // Per round, µs per call: how steady the machine was while this case ran.
      bareMicrosPerRound: results.perRound("bare").map((ms) => round((ms * 1_000) / batch)),
      wrappedMicrosPerRound: results.perRound("wrapped").map((ms) => round((ms * 1_000) / batch))
    }
  })
  if (store === "memory") return
  // At most one read per key per cache period: the token is read again once it is older than that.
  const allowedReads = cached ? Math.ceil(elapsedMillis / Duration.toMillis(defaultCacheTtl)) : wrappedCalls
  options.report.record({
    section,
    name: `store operations per call (${label})`,
    value: operations / wrappedCalls,
    unit: "per call",
    ...(cached
      ? {
        target: "no store round trip per call (≤ 1 read per key per 30 s)",
        pass: operations <= allowedReads
      }
      : {}),
    details
  })
}
