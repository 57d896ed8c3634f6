/**
 * The whole library on a simulated digi.me, for tests: `DigimeConfig`, `DigimeClient`,
 * `TokenManager`, an in-memory `TokenStore` (or yours) and `PendingAuthorizations`, all talking to
 * the in-memory `DigimeSimulator` through its `HttpClient`. Every expiry is read from the Effect
 * `Clock`, so `TestClock` drives the tokens of both sides; the simulator is in the context to
 * inspect (`stats`, `requests`) and steer (`injectFault`, `revokeUser`, ...).
 *
 * @example
 * import { AutoRefresh, DigimeClient, TokenKey } from "@digime-effect/core"
 * import { DigimeSimulator, DigimeTest } from "@digime-effect/core/testing"
 * import { Effect, TestClock } from "effect"
 *
 * const key = TokenKey.make("user-1", DigimeTest.contractId)
 * const program = Effect.gen(function*() {
 *   yield* DigimeTest.seedToken(key)
 *   yield* TestClock.adjust("1 hour") // the access token is due: the next call refreshes it
 *   const client = yield* DigimeClient.DigimeClient
 *   yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
 *   return (yield* (yield* DigimeSimulator.DigimeSimulator).stats).refreshes // 1
 * }).pipe(Effect.provide(DigimeTest.layer()))
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Contract } from "../Contract.js"
import * as Digime from "../Digime.js"
import { DigimeClient } from "../DigimeClient.js"
import type { TokenCallError } from "../DigimeClient.js"
import type * as DigimeConfig from "../DigimeConfig.js"
import type { CallbackError, InvalidConfig, InvalidContractKey, TokenStoreError } from "../DigimeError.js"
import * as FileCipher from "../FileCipher.js"
import * as PendingAuthorizations from "../PendingAuthorizations.js"
import * as Signer from "../Signer.js"
import type { TokenKey } from "../TokenKey.js"
import { TokenManager } from "../TokenManager.js"
import * as TokenProtocol from "../TokenProtocol.js"
import * as TokenStore from "../TokenStore.js"
import type { UserAccessToken } from "../UserAccessToken.js"
import * as DigimeSimulator from "./DigimeSimulator.js"
import * as TestContract from "./TestContract.js"

/**
 * The application id of the default set-up.
 *
 * @since 0.1.0
 * @category models
 */
export const applicationId = "app-1"

/**
 * The contract id of the default test contract.
 *
 * @since 0.1.0
 * @category models
 */
export const contractId = "contract-1"

/**
 * The callback URL `authorize` uses.
 *
 * @since 0.1.0
 * @category models
 */
export const callbackUrl = "https://app.example/digime/callback"

/**
 * The default test contract: an RSA key pair made once per process, on first use (making one
 * takes tens to hundreds of milliseconds).
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultContract: Effect.Effect<TestContract.TestContract> = Effect.runSync(
  Effect.cached(TestContract.make(contractId))
)

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E = never, R = never> {
  /** Default `"app-1"`. */
  readonly applicationId?: string | undefined
  /** The contracts both sides know; default `defaultContract`. */
  readonly contracts?: ReadonlyArray<TestContract.TestContract> | undefined
  /** More options of the simulator (lifetimes, rotation, latency, faults). */
  readonly simulator?: Partial<Omit<DigimeSimulator.Options, "applicationId" | "contracts">> | undefined
  /** More options of the client (lead time, cache, timeout, ...); its URLs are the simulator's. */
  readonly config?: Partial<Omit<DigimeConfig.Options, "applicationId" | "contracts">> | undefined
  /** The token store; default `TokenStore.layerMemory`. */
  readonly store?: Layer.Layer<TokenStore.TokenStore, E, R> | undefined
  /** The signer; default `Signer.layerWebCrypto`. */
  readonly signer?: Layer.Layer<Signer.Signer> | undefined
  /** The file cipher; default `FileCipher.layerWebCrypto` (no brotli on platforms without it). */
  readonly fileCipher?: Layer.Layer<FileCipher.FileCipher> | undefined
}

/**
 * What the layer provides.
 *
 * @since 0.1.0
 * @category models
 */
export type Services =
  | Digime.Services
  | TokenStore.TokenStore
  | PendingAuthorizations.PendingAuthorizations
  | DigimeSimulator.DigimeSimulator
  | HttpClient.HttpClient

/**
 * What a simulated digi.me is made from: the application and the contracts it knows.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimulatorSetup {
  readonly applicationId: string
  readonly contracts: ReadonlyArray<{ readonly contractId: string; readonly publicKeyPem: string }>
}

/**
 * The library on a simulated digi.me of your making: `makeSimulator` builds it from the setup
 * and provides the `DigimeSimulator` and an `HttpClient` that reaches it (in memory, or over
 * real HTTP as `NodeDigimeTest.layer` of `@digime-effect/node/testing` does). The client's URLs
 * are the simulator's.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithSimulator = <S, E2, R2, E = never, R = never>(
  makeSimulator: (
    setup: SimulatorSetup
  ) => Layer.Layer<S | DigimeSimulator.DigimeSimulator | HttpClient.HttpClient, E2, R2>,
  options: Omit<Options<E, R>, "simulator"> = {}
): Layer.Layer<Services | S, E | E2 | InvalidConfig | InvalidContractKey, R | R2> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const contracts = options.contracts ?? [yield* defaultContract]
    const application = options.applicationId ?? applicationId
    const library = Layer.unwrapEffect(Effect.map(DigimeSimulator.DigimeSimulator, (sim) =>
      stack(options, {
        applicationId: application,
        contracts: contracts.map((c) => c.contract),
        baseUrl: sim.baseUrl,
        onboardUrl: sim.onboardUrl,
        ...options.config
      })))
    return library.pipe(Layer.provideMerge(makeSimulator({
      applicationId: application,
      contracts: contracts.map((c) => ({ contractId: c.contract.contractId, publicKeyPem: c.publicKeyPem }))
    })))
  }))

/**
 * The library on a fresh in-memory simulated digi.me, with fresh stores: build it per test.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E = never, R = never>(
  options: Options<E, R> = {}
): Layer.Layer<Services, E | InvalidConfig | InvalidContractKey, R> =>
  layerWithSimulator((setup) => DigimeSimulator.layer({ ...setup, ...options.simulator }), options)

/**
 * The library on an `HttpClient` of yours, with fresh in-memory stores: for tests that answer
 * each request themselves (`HttpClient.make`) and check exactly what was sent. The default API
 * URLs are digi.me's.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithHttpClient = <E = never, R = never>(
  httpClient: HttpClient.HttpClient,
  options: Omit<Options<E, R>, "contracts" | "simulator" | "config"> & {
    /** The contracts of the configuration; default the contract of `defaultContract`. */
    readonly contracts?: ReadonlyArray<Contract> | undefined
    readonly config?: Partial<Omit<DigimeConfig.Options, "applicationId" | "contracts">> | undefined
  } = {}
): Layer.Layer<
  Exclude<Services, DigimeSimulator.DigimeSimulator>,
  E | InvalidConfig | InvalidContractKey,
  R
> =>
  Layer.unwrapEffect(Effect.map(
    options.contracts === undefined
      ? Effect.map(defaultContract, (c) => [c.contract])
      : Effect.succeed(options.contracts),
    (contracts) =>
      stack(options, { applicationId: options.applicationId ?? applicationId, contracts, ...options.config }).pipe(
        Layer.provideMerge(Layer.succeed(HttpClient.HttpClient, httpClient))
      )
  ))

const stack = <E, R>(
  options: Pick<Options<E, R>, "store" | "signer" | "fileCipher">,
  config: DigimeConfig.Options
) =>
  Digime.layer(config).pipe(
    Layer.provideMerge(Layer.mergeAll(
      options.signer ?? Signer.layerWebCrypto,
      options.fileCipher ?? FileCipher.layerWebCrypto,
      options.store ?? (TokenStore.layerMemory as Layer.Layer<TokenStore.TokenStore, E, R>),
      PendingAuthorizations.layerMemory
    ))
  )

/**
 * Stores, under `key`, a token the simulated digi.me granted to a new user of the key's contract
 * (as after a consent and a code exchange, but without any request).
 *
 * @since 0.1.0
 * @category testing
 */
export const seedToken = (
  key: TokenKey
): Effect.Effect<
  UserAccessToken,
  DigimeSimulator.SimulatorError | TokenStoreError,
  DigimeSimulator.DigimeSimulator | TokenManager
> =>
  Effect.gen(function*() {
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const token = yield* simulator.grant({ contractId: key.contractId })
    yield* (yield* TokenManager).store(key, token)
    return token
  })

/**
 * Authorizes a user through the simulator as a browser would: `getAuthorizeUrl`, consent on the
 * onboarding page, the callback, and the code exchange, storing the token under `key`.
 *
 * @since 0.1.0
 * @category testing
 */
export const authorize = (
  key: TokenKey
): Effect.Effect<
  UserAccessToken,
  TokenCallError | CallbackError | DigimeSimulator.SimulatorError | TokenStoreError,
  DigimeClient | TokenManager | DigimeSimulator.DigimeSimulator
> =>
  Effect.gen(function*() {
    const client = yield* DigimeClient
    const simulator = yield* DigimeSimulator.DigimeSimulator
    const start = yield* client.getAuthorizeUrl({ contractId: key.contractId, callbackUrl })
    const callback = yield* simulator.consent(start.url)
    const result = yield* TokenProtocol.parseCallback(callback, start.state)
    return yield* (yield* TokenManager).exchangeCodeForToken({
      key,
      code: result.code,
      codeVerifier: start.codeVerifier
    })
  })
