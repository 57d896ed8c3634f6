/**
 * Where digi.me lives and how this application talks to it: application id, contracts, API and
 * onboarding URLs, the refresh lead time, the request timeout and the origins trusted to serve
 * digi.me's signing keys.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { type Contract, unescapePem } from "./Contract.js"
import { InvalidConfig, UnknownContract } from "./DigimeError.js"
import * as TokenKey from "./TokenKey.js"

/**
 * @since 0.1.0
 * @category models
 */
export const defaultBaseUrl = "https://api.digi.me/v1.7/"

/**
 * @since 0.1.0
 * @category models
 */
export const defaultOnboardUrl = "https://api.digi.me/apps/saas/"

/**
 * The default of `Options.tokenCacheCapacity`: tokens read within `tokenCacheTtl` by 10,000
 * different users at most (about 330 new users a second with the default 30 seconds), about
 * 7 MB of memory. Beyond that, a call costs one store read.
 *
 * @since 0.2.0
 * @category models
 */
export const defaultTokenCacheCapacity = 10_000

/**
 * The default of `Options.warmUpTimeout`: how long building the layer waits for its warm-up at most.
 *
 * @since 0.4.0
 * @category models
 */
export const defaultWarmUpTimeout: Duration.Duration = Duration.seconds(1)

/**
 * The identity sent as `agent.sdk` in request bodies. digi.me answers `SDKInvalid` or
 * `SDKVersionInvalid` when it does not recognise it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SdkAgent {
  readonly name: string
  readonly version: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly applicationId: string
  readonly contracts: ReadonlyArray<Contract>
  /**
   * API base URL; default `https://api.digi.me/v1.7/`. Its path must end with the API's version
   * (`/v1.7/`): without it every call would answer 404.
   */
  readonly baseUrl?: string | undefined
  /** Onboarding (browser) base URL; default `https://api.digi.me/apps/saas/`. */
  readonly onboardUrl?: string | undefined
  /** Refresh an access token when it expires within this time; default 60 seconds. */
  readonly refreshLeadTime?: Duration.DurationInput | undefined
  /**
   * Callers wait for a refresh only when the access token expires within this time (or has
   * expired); default 10 seconds, or `refreshLeadTime` when that is shorter. Between it and
   * `refreshLeadTime`, a caller gets the still valid token at once and one refresh starts in the
   * background. Set it to `refreshLeadTime` to make every refresh a caller's wait; it cannot be
   * longer.
   */
  readonly refreshWaitMargin?: Duration.DurationInput | undefined
  /** Time limit of each HTTP attempt; default 30 seconds. */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /**
   * How long a refresh's lease lasts; default `4 × requestTimeout + 30 seconds`, above the worst
   * case of one refresh. Other processes wait for a refresh in flight until its lease ends; after
   * that, without a new token, they never send its refresh token again (`RefreshOutcomeUnknown`).
   * A shorter lease only makes them give up sooner.
   */
  readonly refreshLeaseTime?: Duration.DurationInput | undefined
  /** Origins allowed to serve the JWKS named by a token's `jku`; default: the origin of `baseUrl`. */
  readonly jwksOrigins?: ReadonlyArray<string> | undefined
  /**
   * How long a token read from the store is served from this process's memory without reading
   * the store again; default 30 seconds, `0` to read the store on every call. A rejection by
   * digi.me always re-reads the store, so a token refreshed by another process is found then.
   */
  readonly tokenCacheTtl?: Duration.DurationInput | undefined
  /**
   * How many tokens this process keeps in memory at most; default 10,000 (a few megabytes), `0`
   * to read the store on every call. When it is full, the token read longest ago makes room.
   */
  readonly tokenCacheCapacity?: number | undefined
  /**
   * Sent as `agent.sdk` in request bodies; default `{ name: "nodejs", version: "16.1.5" }`, the
   * identity of digi.me's own Node SDK. digi.me answers `SDKInvalid` or `SDKVersionInvalid` for
   * an identity it does not recognise or no longer supports, so change it only if digi.me asks.
   */
  readonly sdkAgent?: SdkAgent | undefined
  /**
   * The secret that keys `digime.key`, the pseudonym of a user in logs and spans (`TokenKey.tag`);
   * at least 16 bytes. Default: a random secret per process, so tags of different processes (and
   * restarts) differ. Set the same secret everywhere to correlate them.
   */
  readonly keyTagSecret?: Redacted.Redacted<string> | undefined
  /**
   * How long a downloaded key set is trusted before it is downloaded again; default 1 hour. A key
   * withdrawn from digi.me's key set stops verifying within this time.
   */
  readonly keySetMaxAge?: Duration.DurationInput | undefined
  /**
   * How far the clocks of digi.me and this process may disagree when a token's `nbf`, `iat` and
   * `exp` are checked; default 60 seconds.
   */
  readonly clockTolerance?: Duration.DurationInput | undefined
  /**
   * The largest body read from a digi.me answer, in bytes; default 1 MiB. A longer answer fails
   * with `ResponseError` (`TooLarge`) without being read further. Key sets have their own, smaller
   * limit (`KeySet.maxBytes`).
   */
  readonly maxResponseBytes?: number | undefined
  /**
   * Whether the platform's layer gets the first call ready while it is built, so that the first
   * call of a process costs about what a later one does; default `true`. On Node
   * (`NodeDigime.layer`): the connection to the origin of `baseUrl` is opened ahead (TCP, and TLS
   * for https), to be taken by the first request that needs one within 2 seconds (less than undici
   * keeps an idle connection, so that it is not one a server may have dropped), and one data call runs in memory against a canned answer, without a
   * byte leaving the process, so that the code of a call, each contract's key and the HTTP parser
   * are ready. Nothing is sent to digi.me,
   * no store is read, no span is made; a failure of the warm-up never fails the layer (it is only
   * logged, at debug level). Core's own `Digime.layer` does nothing with it.
   */
  readonly warmUp?: boolean | undefined
  /**
   * How long building the layer waits for its warm-up at most; default 1 second. Past it the layer
   * is built anyway (a digi.me unreachable at start-up delays it by this much at most), and a
   * connection still opening is used if it opens in time. `0`: the layer does not wait at all.
   */
  readonly warmUpTimeout?: Duration.DurationInput | undefined
}

/**
 * The validated configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly applicationId: string
  /** Always ends with `/`. */
  readonly baseUrl: string
  /** Always ends with `/`. */
  readonly onboardUrl: string
  readonly refreshLeadTime: Duration.Duration
  /** At most `refreshLeadTime`: see `Options.refreshWaitMargin`. */
  readonly refreshWaitMargin: Duration.Duration
  readonly requestTimeout: Duration.Duration
  /**
   * How long a refresh's lease lasts. By default above the worst case of one refresh, derived from
   * `requestTimeout` (the request, then up to three downloads of the key set and the store's
   * writes): `4 × requestTimeout + 30 seconds`. Other processes wait for a refresh in flight until
   * its lease ends.
   */
  readonly refreshLeaseTime: Duration.Duration
  readonly tokenCacheTtl: Duration.Duration
  readonly tokenCacheCapacity: number
  readonly jwksOrigins: ReadonlySet<string>
  readonly sdkAgent: SdkAgent
  /** The tagger keyed with `keyTagSecret`, when one is configured. */
  readonly keyTagger: Option.Option<TokenKey.Tagger>
  readonly keySetMaxAge: Duration.Duration
  readonly clockTolerance: Duration.Duration
  readonly maxResponseBytes: number
  /** See `Options.warmUp`. */
  readonly warmUp: boolean
  /** See `Options.warmUpTimeout`. */
  readonly warmUpTimeout: Duration.Duration
  readonly contracts: ReadonlyMap<string, Contract>
  /** The contract with this id, or `UnknownContract`. */
  readonly contract: (contractId: string) => Effect.Effect<Contract, UnknownContract>
}

/**
 * @since 0.1.0
 * @category services
 */
export class DigimeConfig extends Context.Tag("@digime-effect/core/DigimeConfig")<DigimeConfig, Service>() {}

const withSlash = (url: string): string => (url.endsWith("/") ? url : `${url}/`)

const parseHttpUrl = (field: string, input: string): Effect.Effect<URL, InvalidConfig> => {
  let url: URL
  try {
    url = new URL(input)
  } catch {
    return Effect.fail(new InvalidConfig({ field, reason: "is not an absolute URL" }))
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return Effect.fail(new InvalidConfig({ field, reason: "must use http or https" }))
  }
  if (url.search !== "" || url.hash !== "") {
    return Effect.fail(new InvalidConfig({ field, reason: "must not have a query or a fragment" }))
  }
  return Effect.succeed(url)
}

const positiveDuration = (
  field: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.Duration
): Effect.Effect<Duration.Duration, InvalidConfig> => {
  if (input === undefined) return Effect.succeed(fallback)
  // Duration.decode turns negative and NaN inputs into zero: refuse them here instead.
  const negativeOrNaN = (n: number | bigint) => typeof n === "bigint" ? n < 0n : !(n >= 0)
  if (
    ((typeof input === "number" || typeof input === "bigint") && negativeOrNaN(input)) ||
    (typeof input === "string" && /^\s*-/.test(input)) ||
    (Array.isArray(input) && (input as ReadonlyArray<number>).some(negativeOrNaN))
  ) {
    return Effect.fail(new InvalidConfig({ field, reason: "must be a finite, non-negative duration" }))
  }
  const decoded = Option.getOrUndefined(Duration.decodeUnknown(input))
  return decoded === undefined || Duration.lessThan(decoded, Duration.zero) || !Duration.isFinite(decoded)
    ? Effect.fail(new InvalidConfig({ field, reason: "must be a finite, non-negative duration" }))
    : Effect.succeed(decoded)
}

/**
 * The lease of a refresh for a request timeout: see `Service.refreshLeaseTime`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const leaseTimeOf = (requestTimeout: Duration.DurationInput): Duration.Duration =>
  Duration.sum(Duration.times(requestTimeout, 4), Duration.seconds(30))

/**
 * Validates the options. Fails with `InvalidConfig` naming the first unusable field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfig> =>
  Effect.gen(function*() {
    const applicationId = options.applicationId.trim()
    if (applicationId === "") {
      return yield* new InvalidConfig({ field: "applicationId", reason: "must not be empty" })
    }
    const baseUrl = yield* parseHttpUrl("baseUrl", options.baseUrl ?? defaultBaseUrl)
    if (!/\/v\d+(\.\d+)*\/$/.test(withSlash(baseUrl.pathname))) {
      return yield* new InvalidConfig({
        field: "baseUrl",
        reason: `must end with the API's version path, as in ${defaultBaseUrl} (its path is ${
          JSON.stringify(baseUrl.pathname)
        })`
      })
    }
    const onboardUrl = yield* parseHttpUrl("onboardUrl", options.onboardUrl ?? defaultOnboardUrl)
    const refreshLeadTime = yield* positiveDuration("refreshLeadTime", options.refreshLeadTime, Duration.seconds(60))
    const refreshWaitMargin = yield* positiveDuration(
      "refreshWaitMargin",
      options.refreshWaitMargin,
      Duration.min(Duration.seconds(10), refreshLeadTime)
    )
    if (Duration.greaterThan(refreshWaitMargin, refreshLeadTime)) {
      return yield* new InvalidConfig({ field: "refreshWaitMargin", reason: "must not be longer than refreshLeadTime" })
    }
    const requestTimeout = yield* positiveDuration("requestTimeout", options.requestTimeout, Duration.seconds(30))
    const tokenCacheTtl = yield* positiveDuration("tokenCacheTtl", options.tokenCacheTtl, Duration.seconds(30))
    const tokenCacheCapacity = options.tokenCacheCapacity ?? defaultTokenCacheCapacity
    if (!Number.isSafeInteger(tokenCacheCapacity) || tokenCacheCapacity < 0) {
      return yield* new InvalidConfig({ field: "tokenCacheCapacity", reason: "must be a non-negative integer" })
    }
    const refreshLeaseTime = yield* positiveDuration(
      "refreshLeaseTime",
      options.refreshLeaseTime,
      leaseTimeOf(requestTimeout)
    )
    if (Duration.lessThanOrEqualTo(requestTimeout, Duration.zero)) {
      return yield* new InvalidConfig({ field: "requestTimeout", reason: "must be positive" })
    }
    if (Duration.lessThanOrEqualTo(refreshLeaseTime, Duration.zero)) {
      return yield* new InvalidConfig({ field: "refreshLeaseTime", reason: "must be positive" })
    }
    if (options.jwksOrigins !== undefined && options.jwksOrigins.length === 0) {
      return yield* new InvalidConfig({ field: "jwksOrigins", reason: "must name at least one origin" })
    }
    const jwksOrigins = new Set<string>()
    for (const origin of options.jwksOrigins ?? [baseUrl.origin]) {
      const url = yield* parseHttpUrl("jwksOrigins", origin)
      jwksOrigins.add(url.origin)
    }
    if (options.contracts.length === 0) {
      return yield* new InvalidConfig({ field: "contracts", reason: "must name at least one contract" })
    }
    const contracts = new Map<string, Contract>()
    for (const contract of options.contracts) {
      if (contract.contractId.trim() === "" || contract.contractId !== contract.contractId.trim()) {
        return yield* new InvalidConfig({ field: "contracts", reason: "has an empty or padded contract id" })
      }
      if (contracts.has(contract.contractId)) {
        return yield* new InvalidConfig({ field: "contracts", reason: `names contract ${contract.contractId} twice` })
      }
      if (Redacted.value(contract.privateKey).trim() === "") {
        return yield* new InvalidConfig({
          field: "contracts",
          reason: `has an empty private key for contract ${contract.contractId}`
        })
      }
      contracts.set(contract.contractId, { ...contract, privateKey: unescapePem(contract.privateKey) })
    }
    const sdkAgent = options.sdkAgent ?? { name: "nodejs", version: "16.1.5" }
    if (sdkAgent.name.trim() === "" || sdkAgent.version.trim() === "") {
      return yield* new InvalidConfig({ field: "sdkAgent", reason: "needs a name and a version" })
    }
    const keyTagger = options.keyTagSecret === undefined
      ? Option.none()
      : Option.some(yield* TokenKey.makeTagger(options.keyTagSecret))
    const keySetMaxAge = yield* positiveDuration("keySetMaxAge", options.keySetMaxAge, Duration.hours(1))
    const clockTolerance = yield* positiveDuration("clockTolerance", options.clockTolerance, Duration.seconds(60))
    const maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024
    if (!Number.isSafeInteger(maxResponseBytes) || maxResponseBytes <= 0) {
      return yield* new InvalidConfig({ field: "maxResponseBytes", reason: "must be a positive integer" })
    }
    const warmUp = options.warmUp ?? true
    if (typeof warmUp !== "boolean") {
      return yield* new InvalidConfig({ field: "warmUp", reason: "must be true or false" })
    }
    const warmUpTimeout = yield* positiveDuration("warmUpTimeout", options.warmUpTimeout, defaultWarmUpTimeout)
    return {
      applicationId,
      baseUrl: withSlash(baseUrl.href),
      onboardUrl: withSlash(onboardUrl.href),
      refreshLeadTime,
      refreshWaitMargin,
      requestTimeout,
      refreshLeaseTime,
      tokenCacheTtl,
      tokenCacheCapacity,
      jwksOrigins,
      sdkAgent,
      keyTagger,
      keySetMaxAge,
      clockTolerance,
      maxResponseBytes,
      warmUp,
      warmUpTimeout,
      contracts,
      contract: (contractId) => {
        const contract = contracts.get(contractId)
        return contract === undefined ? Effect.fail(new UnknownContract({ contractId })) : Effect.succeed(contract)
      }
    }
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<DigimeConfig, InvalidConfig> =>
  Layer.effect(DigimeConfig, make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<DigimeConfig, ConfigError.ConfigError | InvalidConfig> =>
  Layer.effect(DigimeConfig, Effect.flatMap(Config.unwrap(config), make))

/**
 * The contracts read from the environment: one from `DIGIME_CONTRACT_ID` and `DIGIME_PRIVATE_KEY`,
 * and any number named by a label of your choice (letters and digits, no `_`):
 * `DIGIME_CONTRACTS_<LABEL>_ID` and `DIGIME_CONTRACTS_<LABEL>_PRIVATE_KEY`, e.g. a read and a write
 * contract as `DIGIME_CONTRACTS_READ_ID` … and `DIGIME_CONTRACTS_WRITE_ID` …. At least one
 * contract is required.
 *
 * @since 0.2.0
 * @category layers
 */
export const contractsFromEnv: Config.Config<ReadonlyArray<Contract>> = Config.all({
  contractId: Config.string("DIGIME_CONTRACT_ID").pipe(Config.option),
  privateKey: Config.redacted("DIGIME_PRIVATE_KEY").pipe(Config.option),
  labelled: Config.hashMap(Config.all({ contractId: Config.string("ID"), privateKey: Config.redacted("PRIVATE_KEY") }))
    .pipe(Config.nested("CONTRACTS"), Config.nested("DIGIME"))
}).pipe(
  Config.mapOrFail(({ contractId, labelled, privateKey }) => {
    // One of the pair without the other is a mistake to report, not a contract to leave out.
    if (Option.isSome(contractId) !== Option.isSome(privateKey)) {
      const missing = Option.isSome(contractId) ? "DIGIME_PRIVATE_KEY" : "DIGIME_CONTRACT_ID"
      return Either.left(ConfigError.MissingData([missing], `${missing} is missing (the other one of the pair is set)`))
    }
    const single = Option.all({ contractId, privateKey })
    const contracts: Array<Contract> = [
      ...Option.toArray(single),
      ...Array.from(HashMap.entries(labelled)).sort(([a], [b]) => a.localeCompare(b)).map(([, contract]) => contract)
    ]
    return contracts.length > 0
      ? Either.right(contracts)
      : Either.left(
        ConfigError.MissingData(
          ["DIGIME_CONTRACT_ID"],
          "No contract: set DIGIME_CONTRACT_ID and DIGIME_PRIVATE_KEY, " +
            "or DIGIME_CONTRACTS_<LABEL>_ID and DIGIME_CONTRACTS_<LABEL>_PRIVATE_KEY"
        )
      )
  })
)

/**
 * Options read from the environment: `DIGIME_APPLICATION_ID`; the contracts (see
 * `contractsFromEnv`); and optionally `DIGIME_BASE_URL`,
 * `DIGIME_ONBOARD_URL`, `DIGIME_REFRESH_LEAD_TIME`, `DIGIME_REFRESH_WAIT_MARGIN`, `DIGIME_REQUEST_TIMEOUT`,
 * `DIGIME_TOKEN_CACHE_TTL`, `DIGIME_WARM_UP_TIMEOUT` (durations such as `"60 seconds"`),
 * `DIGIME_TOKEN_CACHE_CAPACITY`, `DIGIME_JWKS_ORIGINS` (comma separated), `DIGIME_KEY_TAG_SECRET`
 * and `DIGIME_WARM_UP` (`true` or `false`).
 *
 * @example
 * import { DigimeConfig } from "@digime-effect/core"
 *
 * const DigimeConfigLive = DigimeConfig.layerConfig(DigimeConfig.fromEnv)
 *
 * @since 0.1.0
 * @category layers
 */
export const fromEnv: Config.Config<Options> = Config.all({
  applicationId: Config.string("DIGIME_APPLICATION_ID"),
  contracts: contractsFromEnv,
  baseUrl: Config.string("DIGIME_BASE_URL").pipe(Config.option, Config.map(Option.getOrUndefined)),
  onboardUrl: Config.string("DIGIME_ONBOARD_URL").pipe(Config.option, Config.map(Option.getOrUndefined)),
  refreshLeadTime: Config.duration("DIGIME_REFRESH_LEAD_TIME").pipe(Config.option, Config.map(Option.getOrUndefined)),
  refreshWaitMargin: Config.duration("DIGIME_REFRESH_WAIT_MARGIN").pipe(
    Config.option,
    Config.map(Option.getOrUndefined)
  ),
  requestTimeout: Config.duration("DIGIME_REQUEST_TIMEOUT").pipe(Config.option, Config.map(Option.getOrUndefined)),
  tokenCacheTtl: Config.duration("DIGIME_TOKEN_CACHE_TTL").pipe(Config.option, Config.map(Option.getOrUndefined)),
  tokenCacheCapacity: Config.integer("DIGIME_TOKEN_CACHE_CAPACITY").pipe(
    Config.option,
    Config.map(Option.getOrUndefined)
  ),
  jwksOrigins: Config.array(Config.string(), "DIGIME_JWKS_ORIGINS").pipe(
    Config.option,
    Config.map(Option.getOrUndefined)
  ),
  keyTagSecret: Config.redacted("DIGIME_KEY_TAG_SECRET").pipe(Config.option, Config.map(Option.getOrUndefined)),
  warmUp: Config.boolean("DIGIME_WARM_UP").pipe(Config.option, Config.map(Option.getOrUndefined)),
  warmUpTimeout: Config.duration("DIGIME_WARM_UP_TIMEOUT").pipe(Config.option, Config.map(Option.getOrUndefined))
})
