/**
 * A simulated digi.me API for tests: pre-authorization with PKCE, consent, code exchange, refresh
 * with rotation and replay detection, reauthorization, the three data calls and the JWKS, all held
 * in memory and timed by the caller's `Clock` (so `TestClock` drives every expiry).
 *
 * It is strict on purpose: the client assertion must be a PS512 JWT with a 64-byte salt and exactly
 * the claims digi.me's own SDK sends, each body must have the SDK's shape. A client that digi.me
 * would refuse is refused here first.
 *
 * The simulator is a pure request handler (`Service.handle`) plus an adapter (`httpClient`) that
 * serves it as an in-memory `HttpClient`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { UserAccessToken } from "../UserAccessToken.js"
import * as Consent from "./internal/simulator/consent.js"
import * as Handle from "./internal/simulator/handle.js"
import * as SimHttpClient from "./internal/simulator/httpClient.js"
import * as Signing from "./internal/simulator/signing.js"
import * as State from "./internal/simulator/state.js"

/**
 * The calls the simulator answers.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Endpoint = Schema.Literal("authorize", "token", "reference", "trigger", "accounts", "deleteUser", "jwks")

/**
 * @since 0.1.0
 * @category models
 */
export type Endpoint = typeof Endpoint.Type

/**
 * An HTTP request as the handler sees it. Header names are lower case.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimRequest {
  readonly method: string
  /** The absolute URL, query string included. */
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | undefined
}

/**
 * An HTTP answer of the handler.
 *
 * @since 0.1.0
 * @category models
 */
export interface SimResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /**
   * Set by a `DropResponse` fault: the request was processed, but the connection is cut before
   * the answer arrives. `httpClient` turns it into a transport error; a server would close the socket.
   */
  readonly dropConnection?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly applicationId: string
  /** The contracts digi.me knows, each with the public key that verifies its client assertions. */
  readonly contracts: ReadonlyArray<{ readonly contractId: string; readonly publicKeyPem: string }>
  /** Default `"https://api.digi.me/v1.7/"`; a trailing slash is added if missing. */
  readonly baseUrl?: string | undefined
  /** Default `"https://api.digi.me/apps/saas/"`; a trailing slash is added if missing. */
  readonly onboardUrl?: string | undefined
  /** Default 1 hour. */
  readonly accessTokenLifetime?: Duration.DurationInput | undefined
  /** Default 30 days. */
  readonly refreshTokenLifetime?: Duration.DurationInput | undefined
  /**
   * `"sliding"` (the default): each refresh token lives `refreshTokenLifetime` from its issue.
   * `"fixed"`: every refresh token of a family expires when the family's first one does.
   */
  readonly refreshTokenExpiry?: "sliding" | "fixed" | undefined
  /**
   * Default `true`: presenting a refresh token that was already rotated away is a replay, and
   * revokes the whole token family. With `false` the old refresh token is accepted again.
   */
  readonly strictRotation?: boolean | undefined
  /** How far the assertion's `timestamp` may be from now, either way. Default 5 minutes. */
  readonly assertionMaxAge?: Duration.DurationInput | undefined
  /** Waits this long (on the caller's `Clock`) before answering each request. */
  readonly latency?: Duration.DurationInput | undefined
  /**
   * Answers every `nth` API request (the `nth`, `2 × nth`, …; counted over the known endpoints, JWKS
   * included, whatever their answer) with `status` and a `SimulatedFault` error body, without
   * processing it. `nth` is a positive integer, `status` 500 to 599.
   */
  readonly failEvery?: { readonly nth: number; readonly status: number } | undefined
}

/**
 * Counters since the simulator was made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Requests received per endpoint, whatever the answer. */
  readonly requests: Readonly<Record<Endpoint, number>>
  /** Authorization codes exchanged for tokens. */
  readonly exchanges: number
  /** Successful refresh grants. */
  readonly refreshes: number
  /** Refresh tokens presented again after their rotation. */
  readonly replays: number
  /** Token families revoked (replay, reauthorization, user deletion, `revokeUser`). */
  readonly revocations: number
  /** Requests refused because of their client assertion (406 answers). */
  readonly rejectedAssertions: number
}

/**
 * One request as the simulator saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecordedRequest {
  readonly endpoint: Endpoint | "unknown"
  readonly method: string
  /** The URL's path, e.g. `/v1.7/oauth/token`. */
  readonly path: string
  /**
   * The decoded claims of the client assertion, when it could be decoded; the values of
   * `access_token`, `refresh_token`, `code` and `code_verifier` are replaced by `"<redacted>"`.
   */
  readonly claims: Readonly<Record<string, unknown>> | undefined
  readonly status: number
  /** Why the request was refused, when it was (e.g. `"unexpected claim: iat"`). */
  readonly problem?: string | undefined
}

// A `Delay`'s duration: anything `Duration.decode` reads (over JSON: milliseconds or a string such as
// "2 seconds"), except a negative number of milliseconds.
const DelayInput = Schema.declare(
  (input: unknown): input is Duration.DurationInput =>
    (typeof input !== "number" || input >= 0) && Option.isSome(Duration.decodeUnknown(input)),
  { identifier: "DurationInput", description: "milliseconds, or a duration such as \"2 seconds\"" }
)

/**
 * One-shot faults, each applied to the next request it matches.
 *
 * - `Status`: answer with this status (400 to 599) and an error body, without processing the request.
 * - `DropResponse`: process the request fully (a refresh rotates the token), then fail the HTTP
 *   call with a transport error. With `grant` (endpoint `token` only), the fault waits for the next
 *   *successful* token answer of that grant: `grant: "refresh_token"` drops the answer of a refresh
 *   that has rotated the refresh token.
 * - `Delay`: process the request, then hold the answer back (on the caller's `Clock`). The delay is
 *   a `Duration.DurationInput`; in JSON, milliseconds or a duration string such as `"2 seconds"`.
 * - `TamperToken`: the request is processed, but the next answer that carries a token
 *   (authorize, token, reference) carries a bad one.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Fault = Schema.Union(
  Schema.TaggedStruct("Status", {
    endpoint: Endpoint,
    status: Schema.Int.pipe(Schema.between(400, 599)),
    code: Schema.optional(Schema.String),
    message: Schema.optional(Schema.String)
  }),
  Schema.TaggedStruct("DropResponse", {
    endpoint: Endpoint,
    grant: Schema.optional(Schema.Literal("authorization_code", "refresh_token"))
  }),
  Schema.TaggedStruct("Delay", { endpoint: Endpoint, delay: DelayInput }),
  Schema.TaggedStruct("TamperToken", {
    tamper: Schema.Literal(
      "BadSignature",
      "AlgNone",
      "AlgRS256",
      "UnknownKid",
      "ForeignJku",
      "MissingJku",
      "Garbage",
      "Expired",
      "MissingFields"
    )
  })
)

/**
 * @since 0.1.0
 * @category models
 */
export type Fault = typeof Fault.Type

/**
 * A misuse of the simulator by the test itself (e.g. consenting to an unknown or used code).
 *
 * @since 0.1.0
 * @category errors
 */
export class SimulatorError extends Schema.TaggedError<SimulatorError>("@digime-effect/core/testing/SimulatorError")(
  "SimulatorError",
  { reason: Schema.String }
) {
  override get message(): string {
    return `Simulated digi.me: ${this.reason}`
  }
}

/**
 * What an onboarding URL asks for, as `describeConsent` reads it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsentRequest {
  /** `"authorize"` for `{onboardUrl}authorize?code=…`, `"reauth"` for `{onboardUrl}user-reauth?code=…`. */
  readonly kind: "authorize" | "reauth"
  readonly applicationId: string
  readonly contractId: string
  /** The callback URL the browser is sent back to. */
  readonly redirectUri: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The API base URL, with a trailing slash. */
  readonly baseUrl: string
  /** The onboard (browser) URL, with a trailing slash. */
  readonly onboardUrl: string
  /** Where the signing keys are published; every token names it in `jku`. */
  readonly jwksUrl: string
  readonly applicationId: string
  /** The request handler. Reads the `Clock`; never fails. */
  readonly handle: (request: SimRequest) => Effect.Effect<SimResponse>
  /**
   * The user opens an onboard URL (`{onboardUrl}authorize?code=…` or `{onboardUrl}user-reauth?code=…`)
   * and clicks Allow (or Deny with `allow: false`). Returns the callback URL digi.me redirects to.
   */
  readonly consent: (
    onboardingUrl: string,
    options?: { readonly allow?: boolean | undefined; readonly errorCode?: string | undefined }
  ) => Effect.Effect<string, SimulatorError>
  /**
   * Reads an onboarding URL without using its code: what it asks for, or why `consent` would
   * refuse it (unknown, used or expired code).
   */
  readonly describeConsent: (onboardingUrl: string) => Effect.Effect<ConsentRequest, SimulatorError>
  /**
   * Makes a contract known from now on (or replaces its key): client assertions of
   * `{applicationId}_{contractId}` are verified with this public key (SPKI or PKCS#1 PEM).
   */
  readonly registerContract: (contractId: string, publicKeyPem: string) => Effect.Effect<void, SimulatorError>
  readonly stats: Effect.Effect<Stats>
  readonly requests: Effect.Effect<ReadonlyArray<RecordedRequest>>
  /** That access token is refused from now on (401 `InvalidToken`). */
  readonly revokeAccessToken: (accessToken: string) => Effect.Effect<void>
  /** Revokes every token family of the user. */
  readonly revokeUser: (digimeUserId: string) => Effect.Effect<void>
  /** A new signing key with a new `kid`; the JWKS then lists only the new key. */
  readonly rotateSigningKey: Effect.Effect<void>
  readonly injectFault: (fault: Fault) => Effect.Effect<void>
  /**
   * digi.me grants a token to a new user of the contract (one account, a new token family), as if
   * the user had consented and the code had been exchanged: no request is made and `stats` counts
   * no exchange. The lifetimes are the configured ones, from the `Clock`.
   */
  readonly grant: (options: { readonly contractId: string }) => Effect.Effect<UserAccessToken, SimulatorError>
}

/**
 * @since 0.1.0
 * @category services
 */
export class DigimeSimulator extends Context.Tag("@digime-effect/core/testing/DigimeSimulator")<
  DigimeSimulator,
  Service
>() {}

const misuse = (reason: string): SimulatorError => new SimulatorError({ reason })

/**
 * Makes a simulator with its own signing key and empty state.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service> =>
  Effect.gen(function*() {
    const config = yield* State.makeConfig(options)
    const verifyKeys = new Map<string, CryptoKey>()
    for (const contract of options.contracts) {
      const key = yield* Effect.promise(() => Signing.importVerifyKey(contract.contractId, contract.publicKeyPem))
      verifyKeys.set(State.clientIdOf(config, contract.contractId), key)
    }
    const signing = yield* Effect.promise(Signing.generateSigningKey)
    const state = State.makeState(config, { verifyKeys, signing, endpoints: Endpoint.literals })
    const atNow = <A>(f: (now: number) => Either.Either<A, string>): Effect.Effect<A, SimulatorError> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => Either.mapLeft(f(now), misuse))

    return {
      baseUrl: config.baseUrl,
      onboardUrl: config.onboardUrl,
      jwksUrl: config.jwksUrl,
      applicationId: config.applicationId,
      handle: (request) => Handle.handle(state, request),
      consent: (onboardingUrl, consentOptions) =>
        atNow((now) => Consent.consent(state, onboardingUrl, consentOptions, now)),
      describeConsent: (onboardingUrl) => atNow((now) => Consent.describeConsent(state, onboardingUrl, now)),
      registerContract: (contractId, publicKeyPem) =>
        Effect.mapError(Consent.registerContract(state, contractId, publicKeyPem), misuse),
      stats: Effect.sync((): Stats => ({ requests: { ...state.requestCounts }, ...state.counters })),
      requests: Effect.sync((): ReadonlyArray<RecordedRequest> => state.recorded.slice()),
      revokeAccessToken: (accessToken) =>
        Effect.sync(() => {
          const token = state.accessTokens.get(accessToken)
          if (token !== undefined) token.revoked = true
        }),
      revokeUser: (digimeUserId) =>
        Effect.sync(() => {
          for (const family of state.users.get(digimeUserId)?.families ?? []) State.revokeFamily(state, family)
        }),
      rotateSigningKey: Effect.promise(Signing.generateSigningKey).pipe(
        Effect.map((key) => {
          state.signing = key
        })
      ),
      injectFault: (fault) =>
        Effect.sync(() => {
          state.faults.push(fault)
        }),
      grant: ({ contractId }) => atNow((now) => Consent.grant(state, contractId, now))
    } satisfies Service
  })

/**
 * Serves a simulator as an in-memory `HttpClient`: no sockets, the handler runs in the caller's
 * fiber (so its `Clock` and `TestClock` apply).
 *
 * @since 0.1.0
 * @category constructors
 */
export const httpClient = (simulator: Service): HttpClient.HttpClient => SimHttpClient.make(simulator.handle)

/**
 * The simulator and an `HttpClient` that talks to it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<DigimeSimulator | HttpClient.HttpClient> =>
  Layer.effectContext(
    Effect.map(
      make(options),
      (simulator) =>
        Context.make(DigimeSimulator, simulator).pipe(Context.add(HttpClient.HttpClient, httpClient(simulator)))
    )
  )
