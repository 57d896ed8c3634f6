/**
 * 2. A burst on a stale token: N concurrent `withAutoRefresh` calls (N = 10 … 10,000) meet a token
 * that is due for refresh. Counted: the refresh requests digi.me received (target: exactly one per
 * burst, for every N). Timed: until every call is done, against one plain refresh, the same call
 * made once on a stale token (target ≤ 1.5×), and against the least any Effect program pays for
 * the same work: one refresh while N fibers wait for its result (a hand-rolled single flight: one
 * forced refresh, N fibers awaiting a `Deferred`).
 *
 * The simulated digi.me runs over real HTTP on loopback with strict refresh-token rotation (a
 * second refresh of the same generation would be a replay and revoke the grant). Between bursts
 * the clock the client and the simulator share is moved forward by most of a token's hour, so
 * that each burst meets a token that is due, as it would an hour later.
 */
import { AutoRefresh, TokenManager, TokenStore } from "@digime-effect/core"
import { Deferred, Duration, Effect, Redacted } from "effect"
import {
  authorize,
  clientLayer,
  keyOf,
  makeSteppedClock,
  median,
  quantile,
  refreshRequests,
  type SectionOptions,
  startSimulator,
  timed
} from "./support.js"

const section = "2 burst"

interface Sample {
  readonly millis: number
  readonly refreshRequests: number
  readonly replays: number
  /** Whether every call of the burst used one access token, the new one. */
  readonly oneNewToken: boolean
}

export const run = (options: SectionOptions) => {
  const stepped = makeSteppedClock()
  return Effect.gen(function*() {
    const sizes = options.quick ? [10, 100, 1_000] : [10, 100, 1_000, 10_000]
    const repetitions = options.quick ? 3 : 15
    const server = yield* startSimulator({ accessTokenLifetime: "1 hour" })
    const key = keyOf("burst")
    yield* Effect.gen(function*() {
      yield* authorize(server, key)
      const store = yield* TokenStore.TokenStore
      const use = (credentials: AutoRefresh.KeyedCredentials) => Effect.succeed(credentials.accessToken)

      const burst = (n: number, stale: boolean) =>
        Effect.gen(function*() {
          // The default wait margin is 10 s: 5 s before expiry, every caller waits for the refresh
          // (earlier, within the lead time, they would get the old token and not wait).
          if (stale) yield* stepped.advance(Duration.seconds(3_595))
          const old = yield* store.get(key)
          const calls = Array.from({ length: n }, () => AutoRefresh.withAutoRefresh(key, use))
          const before = yield* refreshRequests(server)
          const [millis, tokens] = yield* timed(Effect.all(calls, { concurrency: "unbounded" }))
          const after = yield* refreshRequests(server)
          const values = new Set(tokens.map(Redacted.value))
          const oldValue = old._tag === "Some" ? Redacted.value(old.value.token.accessToken.value) : undefined
          return {
            millis,
            refreshRequests: after.refreshRequests - before.refreshRequests,
            replays: after.replays - before.replays,
            oneNewToken: values.size === 1 && (stale ? !values.has(oldValue!) : values.has(oldValue!))
          } satisfies Sample
        })

      // The floor: one forced refresh (the same lease, store read, request, verification and
      // write as the library's own) while N fibers wait for its result on a Deferred.
      const manager = yield* TokenManager.TokenManager
      const handRolled = (n: number) =>
        Effect.gen(function*() {
          const done = yield* Deferred.make<Redacted.Redacted<string>>()
          const leader = manager.refresh(key).pipe(
            Effect.flatMap((versioned) => Deferred.succeed(done, versioned.token.accessToken.value))
          )
          const follower = Effect.flatMap(
            Deferred.await(done),
            (accessToken) => use({ key, contractId: key.contractId, accessToken })
          )
          const [millis] = yield* timed(
            Effect.all([leader, ...Array.from({ length: n }, () => follower)], { concurrency: "unbounded" })
          )
          return millis
        })

      // Interleaved, so that drift over the run (heap growth, JIT) touches every size alike.
      const plain: Array<Sample> = []
      const stale = new Map(sizes.map((n) => [n, [] as Array<Sample>]))
      const valid = new Map(sizes.map((n) => [n, [] as Array<number>]))
      const floor = new Map(sizes.map((n) => [n, [] as Array<number>]))
      yield* burst(1, true) // warm-up: the first refresh also compiles the code it runs
      yield* handRolled(1)
      for (let i = 0; i < repetitions; i++) {
        plain.push(yield* burst(1, true))
        for (const n of sizes) {
          stale.get(n)!.push(yield* burst(n, true))
          floor.get(n)!.push(yield* handRolled(n))
          valid.get(n)!.push((yield* burst(n, false)).millis)
        }
      }

      const plainMillis = median(plain.map((sample) => sample.millis))
      options.report.record({
        section,
        name: "one plain refresh (a single call on a stale token)",
        value: plainMillis,
        unit: "ms",
        details: {
          repetitions,
          p90: quantile(plain.map((sample) => sample.millis), 0.9),
          refreshRequests: plain.map((sample) => sample.refreshRequests)
        }
      })
      for (const n of sizes) {
        const samples = stale.get(n)!
        const requests = samples.map((sample) => sample.refreshRequests)
        const replays = samples.reduce((sum, sample) => sum + sample.replays, 0)
        options.report.record({
          section,
          name: `refresh requests per burst (N = ${n})`,
          value: Math.max(...requests),
          unit: "max over bursts",
          target: "exactly 1 for every burst",
          pass: requests.every((count) => count === 1) && replays === 0 &&
            samples.every((sample) => sample.oneNewToken),
          details: {
            bursts: repetitions,
            requests,
            replays,
            everyCallUsedTheNewToken: samples.every((sample) => sample.oneNewToken)
          }
        })
        const millis = median(samples.map((sample) => sample.millis))
        const validMillis = median(valid.get(n)!)
        const floorMillis = median(floor.get(n)!)
        options.report.record({
          section,
          name: `time to all done (N = ${n})`,
          value: millis,
          unit: "ms",
          floor: plainMillis,
          floorName: "ms one plain refresh",
          ratio: millis / plainMillis,
          target: "≤ 1.5× one plain refresh",
          pass: millis / plainMillis <= 1.5,
          details: {
            bursts: repetitions,
            p90: quantile(samples.map((sample) => sample.millis), 0.9),
            // The same N calls with a valid token: what running N fibers costs by itself.
            validTokenMillis: validMillis
          }
        })
        options.report.record({
          section,
          name: `time to all done vs a hand-rolled single flight (N = ${n})`,
          value: millis,
          unit: "ms",
          floor: floorMillis,
          floorName: "ms one refresh + N fibers on a Deferred",
          ratio: millis / floorMillis,
          target: "≤ 1.5× the hand-rolled floor",
          pass: millis / floorMillis <= 1.5,
          details: { bursts: repetitions, p90: quantile(floor.get(n)!, 0.9) }
        })
      }
      // The token cache outlives the clock's steps, as a busy key's cache entry is fresh when its
      // token comes due: the burst's fibers find the due token in memory, not in the store.
    }).pipe(Effect.provide(clientLayer(server, TokenStore.layerMemory, { tokenCacheTtl: "2 hours" })))
  }).pipe(Effect.scoped, Effect.withClock(stepped.clock))
}
