/**
 * Shared set-up of the core tests: one test contract (key generation is slow, so it is made once
 * per file), and the layer stack of a client talking to the simulated digi.me.
 */
import {
  DigimeClient,
  DigimeConfig,
  type DigimeError,
  PendingAuthorizations,
  Signer,
  TokenKey,
  TokenStore
} from "@digime-effect/core"
import { DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import type { HttpClient } from "@effect/platform"
import { Duration, Effect, Fiber, Layer, Option, TestClock } from "effect"

export const applicationId = "app-1"
export const contractId = "contract-1"
export const callbackUrl = "https://app.example/digime/callback"

export const testContract: TestContract.TestContract = await Effect.runPromise(TestContract.make(contractId))

export const key = TokenKey.make("user-1", contractId)

export type Services =
  | DigimeClient.DigimeClient
  | DigimeConfig.DigimeConfig
  | TokenStore.TokenStore
  | PendingAuthorizations.PendingAuthorizations
  | DigimeSimulator.DigimeSimulator
  | HttpClient.HttpClient

export interface StackOptions {
  readonly simulator?: Partial<DigimeSimulator.Options>
  readonly config?: Partial<DigimeConfig.Options>
  readonly store?: Layer.Layer<TokenStore.TokenStore>
}

export const stack = (options: StackOptions = {}): Layer.Layer<Services, DigimeError.InvalidContractKey> => {
  const simulator = DigimeSimulator.layer({
    applicationId,
    contracts: [{ contractId, publicKeyPem: testContract.publicKeyPem }],
    ...options.simulator
  })
  const config = DigimeConfig.layer({
    applicationId,
    contracts: [testContract.contract],
    ...options.config
  }).pipe(Layer.orDie)
  return DigimeClient.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(config, Signer.layerWebCrypto, options.store ?? TokenStore.layerMemory)),
    Layer.provideMerge(simulator),
    Layer.merge(PendingAuthorizations.layerMemory)
  )
}

/** Authorize → consent → callback → exchange, storing the token under `forKey`. */
export const authorize = (forKey: TokenKey.TokenKey = key) =>
  Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const start = yield* client.getAuthorizeUrl({ contractId: forKey.contractId, callbackUrl })
    const callback = yield* simulator.consent(start.url)
    const result = yield* DigimeClient.parseCallback(callback, start.state)
    return yield* client.exchangeCodeForToken({ key: forKey, code: result.code, codeVerifier: start.codeVerifier })
  })

/** The stored token, which must exist. */
export const stored = (forKey: TokenKey.TokenKey = key) =>
  Effect.flatMap(TokenStore.TokenStore, (store) => store.get(forKey)).pipe(Effect.map(Option.getOrThrow))

export const stats = Effect.flatMap(DigimeSimulator.DigimeSimulator, (simulator) => simulator.stats)

export const totalRequests = Effect.map(
  stats,
  (s) => Object.values(s.requests).reduce((n: number, count) => n + (count as number), 0)
)

/**
 * Moves the TestClock forward by at most `total`, in `steps` equal steps, until `fiber` is done, then
 * joins it. One large step can run ahead of a fiber still waiting for real work (Web Crypto, the
 * event loop) on a loaded machine, so that its later sleeps are never reached; small steps let the
 * fiber catch up, and the simulated time it may take is the same as before.
 */
export const joinAdvancing = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, total: Duration.DurationInput, steps = 50) =>
  Effect.gen(function*() {
    const step = Duration.unsafeDivide(Duration.decode(total), steps)
    for (let i = 0; i < steps && fiber.unsafePoll() === null; i++) yield* TestClock.adjust(step)
    return yield* Fiber.join(fiber)
  })
