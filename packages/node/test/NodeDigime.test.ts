import { AutoRefresh, DigimeClient, TokenKey, TokenStore } from "@digime-effect/core"
import { DigimeSimulator, DigimeTest, TestContract } from "@digime-effect/core/testing"
import { NodeDigime, NodeSigner } from "@digime-effect/node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"

const contract = await Effect.runPromise(TestContract.make("contract-node", { format: "pkcs1" }))
const key = TokenKey.make("user-node", "contract-node")

const TestLayer = DigimeTest.layer({ applicationId: "app-node", contracts: [contract], signer: NodeSigner.layer })

describe("NodeSigner against the simulated digi.me", () => {
  it.effect("the simulator (PS512, 64-byte salt, exact claims) accepts every assertion of the Node signer", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      yield* DigimeTest.authorize(key)
      yield* TestClock.adjust("2 hours")
      const accounts = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.isAbove(accounts.length, 0)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.rejectedAssertions, 0)
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.exchanges, 1)
    }).pipe(Effect.provide(TestLayer)))

  it.effect("NodeDigime.layer builds the library from options and a store", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, client.readAccounts))
      assert.strictEqual(error._tag, "ReauthRequired")
    }).pipe(Effect.provide(
      NodeDigime.layer({ applicationId: "app-node", contracts: [contract.contract] }).pipe(
        Layer.provide(TokenStore.layerMemory),
        Layer.orDie
      )
    )))
})
