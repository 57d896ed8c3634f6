/**
 * The simulator's start: the options resolved and checked once (`Config`), the contracts given in
 * the options made known (their keys imported), a first signing key, and the empty `State`.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { Endpoint, Options } from "../../DigimeSimulator.js"
import { generateSigningKey, importContractKeys } from "./signing.js"
import { clientIdOf, type Config, type Contract, makeState, type State } from "./state.js"

const withSlash = (url: string): string => url.endsWith("/") ? url : `${url}/`

const millisOf = (input: Duration.DurationInput): number => Duration.toMillis(Duration.decode(input))

/** Resolves the options; dies on a `baseUrl` that is not a URL, a malformed `syncPolls` or `failEvery`. */
const makeConfig = (options: Options): Effect.Effect<Config> =>
  Effect.gen(function*() {
    const baseUrl = withSlash(options.baseUrl ?? "https://api.digi.me/v1.7/")
    const baseOrigin = yield* Effect.try({
      try: () => new URL(baseUrl).origin,
      catch: () => new Error(`DigimeSimulator: baseUrl ${baseUrl} is not a URL`)
    }).pipe(Effect.orDie)
    const failEvery = options.failEvery
    const syncPolls = options.syncPolls ?? 2
    if (!Number.isSafeInteger(syncPolls) || syncPolls < 0) {
      return yield* Effect.dieMessage("DigimeSimulator: syncPolls must be a non-negative integer")
    }
    if (
      failEvery !== undefined &&
      (!Number.isSafeInteger(failEvery.nth) || failEvery.nth < 1 || !Number.isInteger(failEvery.status) ||
        failEvery.status < 500 || failEvery.status > 599)
    ) {
      return yield* Effect.dieMessage("DigimeSimulator: failEvery needs a positive integer nth and a 5xx status")
    }
    return {
      applicationId: options.applicationId,
      baseUrl,
      baseOrigin,
      onboardUrl: withSlash(options.onboardUrl ?? "https://api.digi.me/apps/saas/"),
      jwksUrl: `${baseUrl}jwks/oauth`,
      accessLifetime: millisOf(options.accessTokenLifetime ?? "1 hour"),
      refreshLifetime: millisOf(options.refreshTokenLifetime ?? "30 days"),
      maxAge: millisOf(options.assertionMaxAge ?? "5 minutes"),
      sessionLifetime: millisOf(options.sessionLifetime ?? "30 minutes"),
      syncPolls,
      latency: options.latency === undefined ? undefined : Duration.decode(options.latency),
      slidingExpiry: (options.refreshTokenExpiry ?? "sliding") === "sliding",
      strictRotation: options.strictRotation ?? true,
      failEvery,
      autoConsent: options.autoConsent ?? false,
      log: options.log ?? false
    }
  })

/**
 * The state of a new simulator: `Service`'s members are made on it. A contract key that cannot be
 * imported is a defect, as a malformed option is.
 *
 * @internal
 */
export const make = (options: Options, endpoints: ReadonlyArray<Endpoint>): Effect.Effect<State> =>
  Effect.gen(function*() {
    const config = yield* makeConfig(options)
    const start = yield* Clock.currentTimeMillis
    const contracts = new Map<string, Contract>()
    for (const contract of options.contracts) {
      const keys = yield* Effect.promise(() => importContractKeys(contract.contractId, contract.publicKeyPem))
      contracts.set(clientIdOf(config, contract.contractId), {
        contractId: contract.contractId,
        ...keys,
        accessType: contract.accessType ?? "r",
        registeredAt: start
      })
    }
    const signing = yield* Effect.promise(generateSigningKey)
    return makeState(config, { contracts, signing, endpoints })
  })
