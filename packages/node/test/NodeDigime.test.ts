import { AutoRefresh, DigimeClient, DigimeConfig, TokenKey, TokenStore } from "@digime-effect/core"
import { DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import { NodeDigime, NodeSigner } from "@digime-effect/node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"

const contract = await Effect.runPromise(TestContract.make("contract-node", { format: "pkcs1" }))
const key = TokenKey.make("user-node", "contract-node")
const callbackUrl = "https://app.example/cb"

const simulatorOptions: DigimeSimulator.Options = {
  applicationId: "app-node",
  contracts: [{ contractId: "contract-node", publicKeyPem: contract.publicKeyPem }]
}

const TestLayer = DigimeClient.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(
    DigimeConfig.layer({ applicationId: "app-node", contracts: [contract.contract] }).pipe(Layer.orDie),
    NodeSigner.layer,
    TokenStore.layerMemory
  )),
  Layer.provideMerge(DigimeSimulator.layer(simulatorOptions))
)

describe("NodeSigner against the simulated digi.me", () => {
  it.effect("the simulator (PS512, 64-byte salt, exact claims) accepts every assertion of the Node signer", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const simulator = yield* DigimeSimulator.DigimeSimulator
      const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl })
      const result = yield* DigimeClient.parseCallback(yield* simulator.consent(start.url), start.state)
      yield* client.exchangeCodeForToken({ key, code: result.code, codeVerifier: start.codeVerifier })
      yield* TestClock.adjust("2 hours")
      const accounts = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
      assert.isAbove(accounts.length, 0)
      const stats = yield* simulator.stats
      assert.strictEqual(stats.rejectedAssertions, 0)
      assert.strictEqual(stats.refreshes, 1)
      assert.strictEqual(stats.exchanges, 1)
    }).pipe(Effect.provide(TestLayer)))

  it.effect("NodeDigime.layerClient builds a client from a config and a store", () =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const error = yield* Effect.flip(AutoRefresh.withAutoRefresh(key, client.readAccounts))
      assert.strictEqual(error._tag, "ReauthRequired")
    }).pipe(Effect.provide(NodeDigime.layerClient.pipe(
      Layer.provide(DigimeConfig.layer({ applicationId: "app-node", contracts: [contract.contract] }).pipe(Layer.orDie)),
      Layer.provide(TokenStore.layerMemory)
    ))))
})
