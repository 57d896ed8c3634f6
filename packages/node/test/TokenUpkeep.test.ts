/**
 * TokenUpkeep on PostgreSQL: several instances (each with its own pool, token manager and
 * upkeep, as separate processes would have) on one table and one simulated digi.me with strict
 * refresh-token rotation. They split the due keys without a coordinator: no key is claimed by two
 * of them in one generation, every due key is refreshed once, and a caller racing them on a key
 * makes no second refresh.
 */
import {
  AutoRefresh,
  DigimeClient,
  TokenEvents,
  TokenKey,
  TokenManager,
  TokenStore,
  TokenUpkeep
} from "@digime-effect/core"
import { DigimeSimulator, DigimeTest, TestContract } from "@digime-effect/core/testing"
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Queue, Redacted, TestClock } from "effect"
import { inject } from "vitest"
import * as SqlTokenStore from "../src/SqlTokenStore.js"

const contractId = "contract-1"
const testContract = await Effect.runPromise(TestContract.make(contractId))

// A store on its own pool, open for the test's scope: what another process would have.
const pgStore = (tableName: string) =>
  Effect.flatMap(
    Layer.build(PgClient.layer({ url: Redacted.make(inject("pgUrl")), maxConnections: 4 })),
    (pool) => SqlTokenStore.make({ tableName }).pipe(Effect.provide(pool))
  ).pipe(Effect.orDie)

// A token the simulator granted, stored as an authorization would.
const seed = (store: TokenStore.Service, key: TokenKey.TokenKey) =>
  Effect.flatMap(
    DigimeSimulator.DigimeSimulator,
    (simulator) => Effect.flatMap(simulator.grant({ contractId: key.contractId }), (token) => store.set(key, token))
  )

// One instance: its own store connection pool, token manager and upkeep, on the shared
// simulator and client.
const instance = (tableName: string) =>
  Effect.gen(function*() {
    const store = yield* pgStore(tableName)
    const manager = yield* TokenManager.make.pipe(Effect.provideService(TokenStore.TokenStore, store))
    const upkeep = yield* TokenUpkeep.make({ batchSize: 5, concurrency: 4 }).pipe(
      Effect.provideService(TokenStore.TokenStore, store),
      Effect.provideService(TokenManager.TokenManager, manager)
    )
    return { store, manager, upkeep }
  })

describe("TokenUpkeep on PostgreSQL", () => {
  it.scoped("three instances split 40 due keys: each claimed by one, each refreshed once, no replay", () =>
    Effect.gen(function*() {
      const tableName = `upkeep_${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`
      const seeding = yield* pgStore(tableName)
      const keys = Array.from({ length: 40 }, (_, i) => TokenKey.make(`user-${i}`, contractId))
      for (const key of keys) yield* seed(seeding, key)
      const instances = yield* Effect.all([instance(tableName), instance(tableName), instance(tableName)])
      const events = yield* TokenEvents.TokenEvents
      const queue = yield* events.subscribe
      // Every access token is within lead time plus interval.
      yield* TestClock.adjust("3515 seconds")
      const rounds: Array<ReadonlyArray<TokenUpkeep.Round>> = []
      for (let i = 0; i < 10; i++) {
        const round = yield* Effect.all(instances.map((each) => each.upkeep.runOnce), { concurrency: "unbounded" })
        rounds.push(round)
        if (round.every((r) => r.claimed === 0)) break
      }
      const claimed = rounds.flat().reduce((sum, r) => sum + r.claimed, 0)
      const refreshed = rounds.flat().reduce((sum, r) => sum + r.refreshed, 0)
      assert.strictEqual(claimed, 40)
      assert.strictEqual(refreshed, 40)
      // More than one instance took part.
      const perInstance = instances.map((_, i) => rounds.reduce((sum, round) => sum + round[i]!.claimed, 0))
      assert.isAtLeast(perInstance.filter((n) => n > 0).length, 2)
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const stats = yield* simulator.stats
      assert.strictEqual(stats.refreshes, 40)
      assert.strictEqual(stats.replays, 0)
      const refreshedKeys = Chunk.toReadonlyArray(yield* Queue.takeAll(queue))
        .filter((event) => event._tag === "Refreshed")
        .map((event) => TokenKey.toId(event.key))
      assert.strictEqual(new Set(refreshedKeys).size, 40)
      for (const key of keys) {
        const stored = yield* seeding.get(key)
        assert.strictEqual(stored._tag === "Some" && stored.value.version, 2)
      }
    }).pipe(Effect.provide(DigimeTest.layer({ contracts: [testContract] }).pipe(Layer.orDie))))

  it.scoped("a caller and two instances racing on one due key: one refresh", () =>
    Effect.gen(function*() {
      const tableName = `upkeep_${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`
      const seeding = yield* pgStore(tableName)
      const key = TokenKey.make("user-race", contractId)
      yield* seed(seeding, key)
      const [a, b] = yield* Effect.all([instance(tableName), instance(tableName)])
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const client = yield* DigimeClient.DigimeClient
      // Within the wait margin: the caller waits, both daemons claim (one of them gets the key).
      yield* TestClock.adjust("3595 seconds")
      yield* simulator.injectFault({ _tag: "Delay", endpoint: "token", delay: "1 second" })
      const caller = yield* Effect.fork(
        AutoRefresh.withAutoRefresh(key, client.readAccounts).pipe(
          Effect.provideService(TokenManager.TokenManager, a!.manager)
        )
      )
      const rounds = yield* Effect.fork(Effect.all([a!.upkeep.runOnce, b!.upkeep.runOnce], { concurrency: 2 }))
      for (let i = 0; i < 30 && (caller.unsafePoll() === null || rounds.unsafePoll() === null); i++) {
        yield* TestClock.adjust("100 millis")
        // Real time for the database's round trips.
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
      }
      const done = yield* rounds.await
      assert.strictEqual(done._tag, "Success")
      const [ra, rb] = done._tag === "Success" ? done.value : []
      assert.strictEqual(ra!.claimed + rb!.claimed, 1)
      const answered = yield* caller.await
      assert.strictEqual(answered._tag, "Success")
      const stats = yield* simulator.stats
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.replays, 0)
    }).pipe(Effect.provide(DigimeTest.layer({ contracts: [testContract] }).pipe(Layer.orDie))))
})
