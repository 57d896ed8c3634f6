import { AutoRefresh, DigimeMetrics } from "@digime-effect/core"
import { DigimeSimulator } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, TestClock } from "effect"
import { authorize, key, readAccounts, stack } from "./fixtures.js"

// Metrics are global to the runtime: each test measures the change it causes.
const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

describe("DigimeMetrics", () => {
  it.effect("a burst on a stale token: one refresh counted as refreshed, the others as coalesced waiters", () =>
    Effect.gen(function*() {
      yield* authorize()
      yield* TestClock.adjust("1 hour")
      const tagged = DigimeMetrics.refreshes.pipe(
        Metric.tagged("outcome", "refreshed"),
        Metric.tagged("contract_id", key.contractId)
      )
      const refreshedBefore = (yield* Metric.value(tagged)).count
      const waitersBefore = yield* count(DigimeMetrics.coalescedWaiters)
      const durationsBefore = (yield* Metric.value(DigimeMetrics.refreshDuration)).count
      yield* Effect.all(Array.from({ length: 20 }, () => AutoRefresh.withAutoRefresh(key, readAccounts)), {
        concurrency: "unbounded"
      })
      assert.strictEqual((yield* Metric.value(tagged)).count - refreshedBefore, 1)
      assert.strictEqual((yield* count(DigimeMetrics.coalescedWaiters)) - waitersBefore, 19)
      assert.strictEqual((yield* Metric.value(DigimeMetrics.refreshDuration)).count - durationsBefore, 1)
    }).pipe(Effect.provide(stack())))

  it.effect("a refused refresh is counted with its outcome; verification failures with their reason", () =>
    Effect.gen(function*() {
      const token = yield* authorize()
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const refused = DigimeMetrics.refreshes.pipe(
        Metric.tagged("outcome", "ReauthRequired"),
        Metric.tagged("contract_id", key.contractId)
      )
      const badSignature = DigimeMetrics.verificationFailures.pipe(Metric.tagged("reason", "InvalidSignature"))
      const refusedBefore = (yield* Metric.value(refused)).count
      const badBefore = (yield* Metric.value(badSignature)).count
      yield* simulator.revokeUser(token.digimeUserId!)
      yield* TestClock.adjust("1 hour")
      yield* Effect.flip(AutoRefresh.withAutoRefresh(key, readAccounts))
      assert.strictEqual((yield* Metric.value(refused)).count - refusedBefore, 1)
      yield* simulator.injectFault({ _tag: "TamperToken", tamper: "BadSignature" })
      yield* Effect.flip(authorize())
      assert.strictEqual((yield* Metric.value(badSignature)).count - badBefore, 1)
    }).pipe(Effect.provide(stack())))

  it.effect("store reads: none per call on the hot path", () =>
    Effect.gen(function*() {
      yield* authorize()
      const before = yield* count(DigimeMetrics.storeReads)
      for (let i = 0; i < 5; i++) yield* AutoRefresh.withAutoRefresh(key, readAccounts)
      assert.strictEqual((yield* count(DigimeMetrics.storeReads)) - before, 0)
    }).pipe(Effect.provide(stack())))
})
