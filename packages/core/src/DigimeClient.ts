/**
 * The digi.me calls of the user-access-token lifecycle (authorize, exchange, refresh,
 * reauthorize), three authenticated data calls, and the token manager behind `withAutoRefresh`:
 * load from the `TokenStore`, refresh ahead of expiry or after a rejection, store before use,
 * one refresh per token however many fibers ask.
 *
 * Requests and responses are schema-validated on both sides; every token digi.me signs is
 * verified against a JWKS fetched only from the allowed origins.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Contract } from "./Contract.js"
import { DigimeConfig } from "./DigimeConfig.js"
import * as DigimeMetrics from "./DigimeMetrics.js"
import {
  AccessTokenRejected,
  ApiError,
  CallbackError,
  InvalidAccessToken,
  InvalidOptions,
  ReauthRequired,
  RefreshTokenExpired,
  RequestError,
  ResponseError,
  VerificationError
} from "./DigimeError.js"
import type { InvalidContractKey, TokenStoreError, UnknownContract } from "./DigimeError.js"
import { base64url, randomAlphanumeric, randomBytes, sha256 } from "./internal/encoding.js"
import { toSearchParams } from "./internal/callback.js"
import { makeVerifier } from "./internal/jwt.js"
import * as Protocol from "./internal/protocol.js"
import { Signer } from "./Signer.js"
import * as TokenKey from "./TokenKey.js"
import { TokenStore } from "./TokenStore.js"
import type { Versioned } from "./TokenStore.js"
import * as UserAccessToken from "./UserAccessToken.js"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * The session digi.me opens with a pre-authorization, a reauthorization or a sync trigger. The
 * unit of `expiry` is not documented by digi.me (probably milliseconds); it is passed on as sent.
 *
 * @since 0.1.0
 * @category models
 */
export class Session extends Schema.Class<Session>("@digime-effect/core/DigimeClient/Session")({
  expiry: Schema.Number,
  key: Schema.String
}) {}

/**
 * One account of the user's digi.me library, as `readAccounts` returns it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Account = Schema.Struct({
  id: Schema.String,
  reference: Schema.String,
  type: Schema.String,
  createdDate: Schema.Number,
  updatedDate: Schema.Number,
  serviceGroupId: Schema.Union(Schema.Number, Schema.String),
  serviceGroupName: Schema.String,
  serviceTypeId: Schema.Union(Schema.Number, Schema.String),
  serviceTypeName: Schema.String,
  serviceTypeReference: Schema.String,
  sourceId: Schema.Union(Schema.Number, Schema.String),
  accessTokenStatus: Schema.optional(Schema.Struct({
    authorized: Schema.Boolean,
    expiresAt: Schema.optional(Schema.Number)
  })),
  serviceProviderId: Schema.optional(Schema.Union(Schema.Number, Schema.String)),
  serviceProviderName: Schema.optional(Schema.String),
  serviceProviderReference: Schema.optional(Schema.String),
  username: Schema.optional(Schema.String),
  providerFavIcon: Schema.optional(Schema.String),
  providerLogo: Schema.optional(Schema.String),
  sample: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Account = typeof Account.Type

/**
 * What `getAuthorizeUrl` and `getReauthorizeUrl` return. Keep `codeVerifier` and `state`
 * server-side until the callback: `exchangeCodeForToken` needs the verifier, `parseCallback` the
 * state.
 *
 * @since 0.1.0
 * @category models
 */
export interface AuthorizeUrl {
  /** Where to send the user's browser. */
  readonly url: string
  readonly codeVerifier: Redacted.Redacted<string>
  readonly state: string
  readonly session: Session
}

/**
 * The options of a read session, sent as `actions.pull` on authorization and at the top level
 * of a sync trigger.
 *
 * @since 0.1.0
 * @category models
 */
export interface PullOptions {
  readonly limits?: unknown
  readonly scope?: unknown
  readonly sourceFetch?: boolean | undefined
  readonly sourceFetchFilter?: unknown
}

/**
 * The access token a data call runs with. `withAutoRefresh` hands one to the effect it wraps;
 * the data calls accept it as it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly contractId: string
  readonly accessToken: Redacted.Redacted<string>
}

/**
 * What `withAutoRefresh` hands to the effect it wraps: the key, its contract id and the current
 * access token. Every data call accepts it as it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyedCredentials extends Credentials {
  readonly key: TokenKey.TokenKey
}

/**
 * Names the contract of a call directly, or through the key of a stored token (which also makes
 * the call read or write the store).
 *
 * @since 0.1.0
 * @category models
 */
export type ContractOrKey =
  | { readonly contractId: string; readonly key?: undefined }
  | { readonly key: TokenKey.TokenKey; readonly contractId?: undefined }

/**
 * @since 0.1.0
 * @category models
 */
export interface AuthorizeOptions {
  readonly contractId: string
  /** The application's callback URL, where digi.me sends the browser back. */
  readonly callbackUrl: string
  /** Echoed back on the callback; default: 128 random bits. */
  readonly state?: string | undefined
  /** An existing access token of this user, to add the contract to the same digi.me library. */
  readonly accessToken?: Redacted.Redacted<string> | undefined
  readonly sourceType?: "pull" | "push" | undefined
  readonly serviceId?: number | undefined
  readonly sampleDataSetId?: string | undefined
  readonly sampleDataAutoOnboard?: boolean | undefined
  readonly locale?: string | undefined
  readonly includeSampleDataOnlySources?: boolean | undefined
  readonly storageRef?: string | undefined
  readonly triggerQuery?: boolean | undefined
  readonly sourcesScope?: unknown
  readonly sessionOptions?: PullOptions | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type ReauthorizeOptions = ContractOrKey & {
  readonly callbackUrl: string
  readonly state?: string | undefined
  /** The user's current access token; read from the store when `key` is given. */
  readonly accessToken?: Redacted.Redacted<string> | undefined
  readonly locale?: string | undefined
  readonly triggerQuery?: boolean | undefined
  readonly sessionOptions?: PullOptions | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type ExchangeOptions = ContractOrKey & {
  /** The `code` of the callback. */
  readonly code: Redacted.Redacted<string> | string
  /** The verifier returned with the authorize (or reauthorize) URL. */
  readonly codeVerifier: Redacted.Redacted<string>
}

/**
 * With `key`, the stored token is refreshed under the same single-flight and compare-and-set
 * rules as `withAutoRefresh` (even when it is not due yet). With `contractId`, the given refresh
 * token is exchanged and the result only returned.
 *
 * @since 0.1.0
 * @category models
 */
export type RefreshOptions =
  | { readonly key: TokenKey.TokenKey; readonly contractId?: undefined; readonly refreshToken?: undefined }
  | {
    readonly contractId: string
    readonly refreshToken: Redacted.Redacted<string>
    readonly key?: undefined
  }

/**
 * A callback as the application received it: the full URL, its query string, parsed parameters,
 * or a record of them.
 *
 * @since 0.1.0
 * @category models
 */
export type CallbackQuery = string | URL | URLSearchParams | Readonly<Record<string, string | undefined>>

/**
 * What a successful callback carries.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallbackResult {
  readonly code: Redacted.Redacted<string>
  readonly state: string
  /** Present after a first authorization; matches `reference` in `readAccounts`. */
  readonly accountReference?: string | undefined
}

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

/**
 * Failures of any HTTP exchange with digi.me.
 *
 * @since 0.1.0
 * @category errors
 */
export type RequestFailure = RequestError | ApiError | ResponseError | InvalidContractKey | UnknownContract

/**
 * Failures of a call that returns a token digi.me signed.
 *
 * @since 0.1.0
 * @category errors
 */
export type TokenCallError = RequestFailure | VerificationError | InvalidOptions

/**
 * Failures of a data call.
 *
 * @since 0.1.0
 * @category errors
 */
export type DataCallError = RequestFailure | AccessTokenRejected | InvalidOptions

/**
 * What a refresh of a stored token can fail with, besides the three token-state errors.
 *
 * @since 0.1.0
 * @category errors
 */
export type RefreshFailure = RequestFailure | VerificationError | TokenStoreError

/**
 * The errors `withAutoRefresh` adds to those of the effect it wraps.
 *
 * @since 0.1.0
 * @category errors
 */
export type AutoRefreshError = InvalidAccessToken | RefreshTokenExpired | ReauthRequired | RefreshFailure

// ---------------------------------------------------------------------------------------------
// service
// ---------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Pre-authorizes with PKCE and builds the onboarding URL to send the user to. Next: the user
   * consents, digi.me calls the callback, then `parseCallback` and `exchangeCodeForToken`.
   */
  readonly getAuthorizeUrl: (options: AuthorizeOptions) => Effect.Effect<AuthorizeUrl, TokenCallError>
  /**
   * Exchanges the callback's code for a token. With `key`, stores it (a new authorization always
   * replaces what was stored).
   */
  readonly exchangeCodeForToken: (
    options: ExchangeOptions
  ) => Effect.Effect<UserAccessToken.UserAccessToken, TokenCallError | TokenStoreError>
  /** Refreshes a token now. */
  readonly refreshToken: (
    options: RefreshOptions
  ) => Effect.Effect<UserAccessToken.UserAccessToken, TokenCallError | AutoRefreshError>
  /**
   * Starts a reauthorization (the refresh token has expired or was refused). Needs the user's
   * current access token, which may have expired but must be genuine; when digi.me refuses it,
   * fails with `InvalidAccessToken` (given a key) and only `getAuthorizeUrl` helps.
   */
  readonly getReauthorizeUrl: (
    options: ReauthorizeOptions
  ) => Effect.Effect<AuthorizeUrl, TokenCallError | InvalidAccessToken | ReauthRequired | TokenStoreError>
  /** Triggers a data sync and opens a read session (`POST permission-access/trigger`). */
  readonly readSession: (options: Credentials & PullOptions) => Effect.Effect<Session, DataCallError>
  /** Lists the accounts of the user's library (`GET permission-access/accounts`). */
  readonly readAccounts: (credentials: Credentials) => Effect.Effect<ReadonlyArray<Account>, DataCallError>
  /** Deletes the user's library at digi.me (`DELETE user`). The stored token is not touched. */
  readonly deleteUser: (credentials: Credentials) => Effect.Effect<void, DataCallError>
  /**
   * The stored token of the key, refreshed first if it expires within the lead time.
   */
  readonly getToken: (key: TokenKey.TokenKey) => Effect.Effect<Versioned, AutoRefreshError>
  /** See `AutoRefresh.withAutoRefresh`. */
  readonly withAutoRefresh: <A, E, R>(
    key: TokenKey.TokenKey,
    use: (credentials: KeyedCredentials) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R>
}

/**
 * @since 0.1.0
 * @category services
 */
export class DigimeClient extends Context.Tag("@digime-effect/core/DigimeClient")<DigimeClient, Service>() {}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const transientStatuses = new Set([408, 429, 500, 502, 503, 504, 521, 522, 524])

const isTransient = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error &&
  ((error._tag === "RequestError" && (error as RequestError).reason !== "Encode") ||
    (error._tag === "ApiError" && transientStatuses.has((error as ApiError).status)))

// Store writes: 5 attempts over about 1.5 s before the write is reported as failed.
const storeRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(4)))

const retrySchedule = Schedule.exponential("500 millis", 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(2))
)

const describeParseError = (error: ParseResult.ParseError): string => {
  const paths = ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) =>
    issue.path.length === 0 ? "(root)" : issue.path.map(String).join(".")
  )
  return `invalid or missing field(s): ${Array.from(new Set(paths)).join(", ")}`
}

const fromHttpClientError = (operation: string, error: HttpClientError.HttpClientError): RequestError =>
  new RequestError({
    operation,
    reason: error._tag === "RequestError" && error.reason !== "Transport" ? "Encode" : "Transport",
    description: `${error.reason} error (${error.request.method} ${error.request.url})`
  })

const parseJson = (text: string): unknown => {
  if (text.trim() === "") return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const withoutUndefined = (record: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(record)) if (value !== undefined) out[name] = value
  return out
}

const constantTimeEquals = (a: string, b: string): boolean => {
  let diff = a.length ^ b.length
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0)
  return diff === 0
}

const checkUrl = (operation: string, field: string, value: string): Effect.Effect<string, InvalidOptions> => {
  try {
    const url = new URL(value)
    if (url.protocol === "https:" || url.protocol === "http:") return Effect.succeed(value)
  } catch {
    // fall through
  }
  return Effect.fail(new InvalidOptions({ operation, field, reason: "must be an absolute http(s) URL" }))
}

const nonEmpty = (operation: string, field: string, value: string | undefined): Effect.Effect<string, InvalidOptions> =>
  value === undefined || value.trim() === ""
    ? Effect.fail(new InvalidOptions({ operation, field, reason: "must not be empty" }))
    : Effect.succeed(value)

// Caller-supplied JSON (session options, sources scope) that cannot be encoded (a cycle, a
// BigInt) is refused as input before any request, instead of throwing.
const encodeJson = (operation: string, field: string, value: unknown): Effect.Effect<string, InvalidOptions> => {
  try {
    return Effect.succeed(JSON.stringify(value))
  } catch {
    return Effect.fail(new InvalidOptions({ operation, field, reason: "cannot be encoded as JSON" }))
  }
}

const makePkce = Effect.promise(async () => {
  const verifier = base64url(randomBytes(32))
  return { verifier: Redacted.make(verifier), challenge: base64url(await sha256(verifier)) }
})

const randomState = (): string => base64url(randomBytes(16))

/**
 * Reads a callback query (a URL, a query string, `URLSearchParams` or a record) into a typed
 * result, checking its state against the one issued with the authorize URL.
 *
 * @see https://digime.github.io/digime-sdk-nodejs/pages/fundamentals/authorize.html
 * @since 0.1.0
 * @category constructors
 */
export const parseCallback = (
  query: CallbackQuery,
  expectedState: string
): Effect.Effect<CallbackResult, CallbackError | InvalidOptions> =>
  Effect.gen(function*() {
    if (expectedState.trim() === "") {
      return yield* new InvalidOptions({
        operation: "parseCallback",
        field: "expectedState",
        reason: "must not be empty"
      })
    }
    const params = toSearchParams(query)
    const state = params.get("state")
    if (state === null || state === "") return yield* new CallbackError({ reason: "MissingState" })
    if (!constantTimeEquals(state, expectedState)) return yield* new CallbackError({ reason: "StateMismatch" })
    const success = params.get("success")
    if (success === "false") {
      const errorCode = params.get("errorCode")
      return yield* new CallbackError(
        errorCode === null || errorCode === "" ? { reason: "Denied" } : { reason: "Denied", errorCode }
      )
    }
    if (success !== "true") return yield* new CallbackError({ reason: "Malformed" })
    const code = params.get("code")
    if (code === null || code === "") return yield* new CallbackError({ reason: "MissingCode" })
    const accountReference = params.get("accountReference")
    return {
      code: Redacted.make(code),
      state,
      ...(accountReference === null || accountReference === "" ? {} : { accountReference })
    }
  })

// ---------------------------------------------------------------------------------------------
// constructor
// ---------------------------------------------------------------------------------------------

/**
 * Builds the client, parsing every configured contract key (an unusable key fails with
 * `InvalidContractKey`). Refreshes run in fibers of the layer's scope, so that a caller
 * interrupted while waiting for one does not cancel it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  Service,
  InvalidContractKey,
  DigimeConfig | Signer | TokenStore | HttpClient.HttpClient | Scope.Scope
> = Effect.gen(function*() {
  const config = yield* DigimeConfig
  const signer = yield* Signer
  // Every configured key is parsed now: an unusable one fails the layer, naming its contract.
  yield* Effect.forEach(config.contracts.values(), signer.prepare, { discard: true })
  const store = yield* TokenStore
  const httpClient = yield* HttpClient.HttpClient
  const scope = yield* Effect.scope

  const timeout = <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) =>
    Effect.timeoutFail(effect, {
      duration: config.requestTimeout,
      onTimeout: () =>
        new RequestError({
          operation,
          reason: "Timeout",
          description: `no answer within ${Duration.format(config.requestTimeout)}`
        })
    })

  const fetchJwks = (url: string): Effect.Effect<unknown, string> =>
    Effect.gen(function*() {
      const response = yield* httpClient.execute(HttpClientRequest.get(url).pipe(HttpClientRequest.acceptJson)).pipe(
        Effect.mapError((error) => fromHttpClientError("jwks", error))
      )
      const text = yield* response.text.pipe(Effect.mapError((error) => fromHttpClientError("jwks", error)))
      if (response.status !== 200) {
        return yield* new ApiError({ operation: "jwks", status: response.status, code: "Unknown", description: "" })
      }
      return parseJson(text)
    }).pipe(
      (effect) => timeout("jwks", effect),
      Effect.retry({ schedule: retrySchedule, while: isTransient }),
      Effect.mapError((error) =>
        error._tag === "ApiError"
          ? `the key set answered HTTP ${error.status}`
          : `the key set is unreachable (${error.reason})`
      )
    )

  const verifier = yield* makeVerifier({ jwksOrigins: config.jwksOrigins, fetchJwks })

  interface Call {
    readonly operation: string
    readonly method: "GET" | "POST" | "DELETE"
    readonly path: string
    readonly contract: Contract
    readonly claims: Readonly<Record<string, unknown>>
    /** The JSON body, already encoded (see `encodeJson`). */
    readonly body?: string | undefined
    readonly jsonContentType?: boolean
    /** Repeat transient failures: only where a repeat is harmless. */
    readonly retry: boolean
    /** Map `401 InvalidToken` to `AccessTokenRejected` (data calls). */
    readonly dataCall: boolean
  }

  // One signed attempt: a new nonce and timestamp every time.
  const attempt = (call: Call) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const assertion = yield* signer.sign(
        call.contract,
        withoutUndefined({
          client_id: `${config.applicationId}_${call.contract.contractId}`,
          nonce: randomAlphanumeric(32),
          timestamp: now,
          ...call.claims
        })
      )
      let request = HttpClientRequest.make(call.method)(`${config.baseUrl}${call.path}`).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.setHeader("authorization", `Bearer ${Redacted.value(assertion)}`)
      )
      if (call.body !== undefined) request = HttpClientRequest.bodyText(request, call.body, "application/json")
      else if (call.jsonContentType === true) {
        request = HttpClientRequest.setHeader(request, "content-type", "application/json")
      }
      const response = yield* httpClient.execute(request).pipe(
        Effect.mapError((error) => fromHttpClientError(call.operation, error))
      )
      const text = yield* response.text.pipe(Effect.mapError((error) => fromHttpClientError(call.operation, error)))
      const json = parseJson(text)
      if (response.status >= 200 && response.status < 300) return { status: response.status, json }
      const body = Schema.decodeUnknownOption(Protocol.ErrorBody)(json)
      const detail = Option.match(body, {
        onNone: (): { code: string; description: string; reference?: string | undefined } => ({
          code: "Unknown",
          description: `HTTP ${response.status} without a digi.me error body`
        }),
        onSome: (body): { code: string; description: string; reference?: string | undefined } => {
          if (typeof body.error === "string") {
            return { code: body.error, description: "message" in body ? body.message ?? "" : "" }
          }
          const error = body.error
          return {
            code: error.code,
            description: error.message ?? "",
            ...(error.reference === undefined ? {} : { reference: error.reference })
          }
        }
      })
      if (call.dataCall && response.status === 401 && detail.code === "InvalidToken") {
        return yield* new AccessTokenRejected({
          operation: call.operation,
          contractId: call.contract.contractId,
          status: response.status,
          code: detail.code,
          ...(detail.reference === undefined ? {} : { reference: detail.reference })
        })
      }
      return yield* new ApiError({
        operation: call.operation,
        status: response.status,
        code: detail.code,
        description: detail.description,
        ...(detail.reference === undefined ? {} : { reference: detail.reference })
      })
    }).pipe((effect) => timeout(call.operation, effect))

  // Only data calls can fail with AccessTokenRejected (`attempt` maps it when `dataCall` is set).
  const send = <A, I, D extends boolean>(
    call: Call & { readonly dataCall: D },
    schema: Schema.Schema<A, I>
  ): Effect.Effect<A, RequestFailure | (D extends true ? AccessTokenRejected : never)> =>
    (attempt(call) as Effect.Effect<
      { readonly status: number; readonly json: unknown },
      RequestFailure | (D extends true ? AccessTokenRejected : never)
    >).pipe(
      call.retry ? Effect.retry({ schedule: retrySchedule, while: isTransient }) : (effect) => effect,
      Effect.flatMap(({ json, status }) =>
        Schema.decodeUnknown(schema)(json).pipe(
          Effect.mapError((error) =>
            new ResponseError({ operation: call.operation, status, description: describeParseError(error) })
          )
        )
      )
    )

  const verified = <A, I>(operation: string, token: string, schema: Schema.Schema<A, I>) =>
    verifier.verify(operation, token).pipe(
      Effect.tapError((error) =>
        Metric.increment(Metric.tagged(DigimeMetrics.verificationFailures, "reason", error.reason))
      ),
      Effect.flatMap((payload) =>
        Schema.decodeUnknown(schema)(payload).pipe(
          Effect.mapError((error) =>
            new VerificationError({ operation, reason: "InvalidClaims", description: describeParseError(error) })
          )
        )
      )
    )

  const contractOf = (options: ContractOrKey) =>
    config.contract(options.key === undefined ? options.contractId : options.key.contractId)

  const onboardingUrl = (path: string, params: ReadonlyArray<readonly [string, string | undefined]>): string => {
    const query = new URLSearchParams()
    for (const [name, value] of params) if (value !== undefined) query.append(name, value)
    return `${config.onboardUrl}${path}?${query.toString()}`
  }

  const actionsOf = (options: PullOptions | undefined) =>
    options === undefined ? undefined : { pull: withoutUndefined({ ...options }) }

  const agent = { sdk: { name: config.sdkAgent.name, version: config.sdkAgent.version } }

  // -------------------------------------------------------------------------------------------
  // protocol calls
  // -------------------------------------------------------------------------------------------

  const getAuthorizeUrl = (options: AuthorizeOptions) =>
    Effect.gen(function*() {
      const operation = "getAuthorizeUrl"
      const contract = yield* config.contract(yield* nonEmpty(operation, "contractId", options.contractId))
      const callbackUrl = yield* checkUrl(operation, "callbackUrl", options.callbackUrl)
      const state = options.state === undefined ? randomState() : yield* nonEmpty(operation, "state", options.state)
      const sourcesScope = options.sourcesScope === undefined
        ? undefined
        : yield* encodeJson(operation, "sourcesScope", options.sourcesScope)
      const pkce = yield* makePkce
      const answer = yield* send({
        operation,
        method: "POST",
        path: "oauth/authorize",
        contract,
        claims: {
          access_token: options.accessToken === undefined ? undefined : Redacted.value(options.accessToken),
          code_challenge: pkce.challenge,
          code_challenge_method: "S256",
          redirect_uri: callbackUrl,
          response_mode: "query",
          response_type: "code",
          state
        },
        body: yield* encodeJson(
          operation,
          "sessionOptions",
          withoutUndefined({ agent, actions: actionsOf(options.sessionOptions) })
        ),
        retry: true,
        dataCall: false
      }, Protocol.TokenEnvelopeWithSession)
      const payload = yield* verified(operation, answer.token, Protocol.PreauthorizationPayload)
      const url = onboardingUrl("authorize", [
        ["code", payload.preauthorization_code],
        ["sourceType", options.sourceType ?? "pull"],
        ["service", options.serviceId === undefined ? undefined : String(options.serviceId)],
        ["sampleDataSet", options.sampleDataSetId],
        ["sampleDataAutoOnboard", options.sampleDataAutoOnboard === true ? "true" : undefined],
        ["lng", options.locale],
        [
          "includeSampleDataOnlySources",
          options.includeSampleDataOnlySources === undefined ? undefined : String(options.includeSampleDataOnlySources)
        ],
        ["storageRef", options.storageRef],
        ["triggerQuery", options.triggerQuery === undefined ? undefined : String(options.triggerQuery)],
        // digi.me reads this parameter percent-encoded twice.
        [
          "sourcesScope",
          sourcesScope === undefined ? undefined : encodeURIComponent(sourcesScope)
        ]
      ])
      return { url, codeVerifier: pkce.verifier, state, session: new Session(answer.session) }
    }).pipe(
      Effect.withSpan("DigimeClient.getAuthorizeUrl", { attributes: { "digime.contract_id": options.contractId } })
    )

  const tokenGrant = (operation: string, contract: Contract, claims: Readonly<Record<string, unknown>>) =>
    send({
      operation,
      method: "POST",
      path: "oauth/token",
      contract,
      claims,
      jsonContentType: claims.grant_type === "refresh_token",
      // Never repeated: a code is single-use, and a refresh whose answer was lost has already
      // rotated the refresh token, so a blind repeat would be a replay (see README).
      retry: false,
      dataCall: false
    }, Protocol.TokenEnvelope).pipe(
      Effect.flatMap((answer) => verified(operation, answer.token, Protocol.TokenPayload)),
      Effect.map(Protocol.toUserAccessToken)
    )

  const exchangeCodeForToken = (options: ExchangeOptions) =>
    Effect.gen(function*() {
      const operation = "exchangeCodeForToken"
      const contract = yield* contractOf(options)
      const code = typeof options.code === "string" ? options.code : Redacted.value(options.code)
      yield* nonEmpty(operation, "code", code)
      yield* nonEmpty(operation, "codeVerifier", Redacted.value(options.codeVerifier))
      const token = yield* tokenGrant(operation, contract, {
        grant_type: "authorization_code",
        code,
        code_verifier: Redacted.value(options.codeVerifier)
      })
      if (options.key !== undefined) {
        // The code is spent: a token that cannot be stored can only be had again by a new consent.
        const versioned = yield* store.set(options.key, token).pipe(Effect.retry({ schedule: storeRetry }))
        pending.delete(TokenKey.toId(options.key))
        yield* remember(options.key, versioned)
      }
      return token
    }).pipe(Effect.withSpan("DigimeClient.exchangeCodeForToken", { attributes: spanAttributes(options) }))

  const refreshCall = (contract: Contract, refreshToken: Redacted.Redacted<string>) =>
    tokenGrant("refreshToken", contract, {
      grant_type: "refresh_token",
      refresh_token: Redacted.value(refreshToken)
    })

  const getReauthorizeUrl = (options: ReauthorizeOptions) =>
    Effect.gen(function*() {
      const operation = "getReauthorizeUrl"
      const contract = yield* contractOf(options)
      const callbackUrl = yield* checkUrl(operation, "callbackUrl", options.callbackUrl)
      const state = options.state === undefined ? randomState() : yield* nonEmpty(operation, "state", options.state)
      let accessToken = options.accessToken
      if (accessToken === undefined && options.key !== undefined) {
        const stored = yield* store.get(options.key)
        if (Option.isNone(stored)) return yield* new ReauthRequired({ key: options.key, reason: "Missing" })
        accessToken = stored.value.token.accessToken.value
      }
      if (accessToken === undefined) {
        return yield* new InvalidOptions({ operation, field: "accessToken", reason: "is required without a key" })
      }
      const pkce = yield* makePkce
      const answer = yield* send({
        operation,
        method: "POST",
        path: "oauth/token/reference",
        contract,
        claims: {
          access_token: Redacted.value(accessToken),
          code_challenge: pkce.challenge,
          code_challenge_method: "S256",
          redirect_uri: callbackUrl,
          state
        },
        body: yield* encodeJson(
          operation,
          "sessionOptions",
          withoutUndefined({ agent, actions: actionsOf(options.sessionOptions) })
        ),
        retry: true,
        dataCall: false
      }, Protocol.TokenEnvelopeWithSession).pipe(
        Effect.catchIf(
          (error): error is ApiError =>
            options.key !== undefined && error._tag === "ApiError" && error.status === 401 &&
            error.code === "InvalidToken",
          () => Effect.fail(new InvalidAccessToken({ key: options.key! }))
        )
      )
      const payload = yield* verified(operation, answer.token, Protocol.ReferencePayload)
      const url = onboardingUrl("user-reauth", [
        ["code", payload.reference_code],
        ["lng", options.locale],
        ["triggerQuery", options.triggerQuery === undefined ? undefined : String(options.triggerQuery)]
      ])
      return { url, codeVerifier: pkce.verifier, state, session: new Session(answer.session) }
    }).pipe(Effect.withSpan("DigimeClient.getReauthorizeUrl", { attributes: spanAttributes(options) }))

  const dataCall = <A, I>(
    operation: string,
    method: "GET" | "POST" | "DELETE",
    path: string,
    credentials: Credentials,
    schema: Schema.Schema<A, I>,
    options: { readonly body?: unknown; readonly retry: boolean }
  ) =>
    Effect.gen(function*() {
      const contract = yield* config.contract(credentials.contractId)
      yield* nonEmpty(operation, "accessToken", Redacted.value(credentials.accessToken))
      const body = options.body === undefined ? undefined : yield* encodeJson(operation, "options", options.body)
      return yield* send({
        operation,
        method,
        path,
        contract,
        claims: { access_token: Redacted.value(credentials.accessToken) },
        body,
        retry: options.retry,
        dataCall: true
      }, schema)
    }).pipe(Effect.withSpan(`DigimeClient.${operation}`, {
      attributes: { "digime.contract_id": credentials.contractId }
    }))

  const readSession = (options: Credentials & PullOptions) =>
    dataCall(
      "readSession",
      "POST",
      "permission-access/trigger",
      options,
      Protocol.TriggerResponse,
      {
        body: withoutUndefined({
          limits: options.limits,
          scope: options.scope,
          sourceFetch: options.sourceFetch,
          sourceFetchFilter: options.sourceFetchFilter,
          agent
        }),
        // A repeated trigger starts another sync: harmless, but not free, so not repeated.
        retry: false
      }
    ).pipe(Effect.map((answer) => new Session(answer.session)))

  const readAccounts = (credentials: Credentials) =>
    dataCall("readAccounts", "GET", "permission-access/accounts", credentials, Schema.Array(Account), {
      retry: true
    })

  const deleteUser = (credentials: Credentials) =>
    dataCall("deleteUser", "DELETE", "user", credentials, Schema.Unknown, { retry: true }).pipe(Effect.asVoid)

  // -------------------------------------------------------------------------------------------
  // token manager
  // -------------------------------------------------------------------------------------------

  // Refreshed tokens whose write failed, kept so that the next refresh of the key stores them
  // instead of spending the (already rotated) refresh token again.
  const pending = new Map<string, { readonly baseVersion: number; readonly token: UserAccessToken.UserAccessToken }>()
  const inFlight = new Map<string, Deferred.Deferred<Versioned, AutoRefreshError>>()

  // The hot path: tokens read from (or written to) the store are served from memory for
  // `tokenCacheTtl`, so a valid token costs no store round trip. Every refresh decision re-reads
  // the store under its lock. Entries are filed by contract, then by user: a lookup encodes
  // nothing, and two keys never share an entry.
  const cache = new Map<string, Map<string, { readonly versioned: Versioned; readonly readAt: number }>>()
  const cacheTtlMillis = Duration.toMillis(config.tokenCacheTtl)
  const cached = (key: TokenKey.TokenKey, now: number): Versioned | undefined => {
    const hit = cache.get(key.contractId)?.get(key.userId)
    return hit !== undefined && now - hit.readAt < cacheTtlMillis ? hit.versioned : undefined
  }
  const forget = (key: TokenKey.TokenKey) => {
    const users = cache.get(key.contractId)
    if (users !== undefined && users.delete(key.userId) && users.size === 0) cache.delete(key.contractId)
  }
  const remember = (key: TokenKey.TokenKey, versioned: Versioned) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      if (cacheTtlMillis > 0) {
        let users = cache.get(key.contractId)
        if (users === undefined) cache.set(key.contractId, users = new Map())
        users.set(key.userId, { versioned, readAt: now })
      }
      return versioned
    })

  const loadOrFail = (key: TokenKey.TokenKey): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
    Effect.flatMap(Metric.increment(DigimeMetrics.storeReads).pipe(Effect.zipRight(store.get(key))), Option.match({
      onNone: () =>
        Effect.sync(() => forget(key)).pipe(
          Effect.zipRight(Effect.fail(new ReauthRequired({ key, reason: "Missing" })))
        ),
      onSome: (versioned) => remember(key, versioned)
    }))

  const persist = (
    key: TokenKey.TokenKey,
    baseVersion: number,
    token: UserAccessToken.UserAccessToken
  ): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
    // Kept in memory from before the write until the store's lock is released (the write is
    // durable only then): `refreshLocked` forgets it once `withLock` has succeeded.
    Effect.sync(() => pending.set(TokenKey.toId(key), { baseVersion, token })).pipe(
      Effect.zipRight(store.compareAndSet(key, baseVersion, token)),
      Effect.retry({ schedule: storeRetry }),
      Effect.tapError(() =>
        Effect.logError("A refreshed token could not be stored; it is kept in memory for the next try")
      ),
      Effect.flatMap(Option.match({
        onSome: (versioned) => remember(key, versioned),
        // Another writer stored a newer token (a new authorization) while this refresh ran.
        onNone: () =>
          Effect.sync(() => pending.delete(TokenKey.toId(key))).pipe(
            Effect.zipRight(
              Effect.logWarning("The store holds a newer token than the one refreshed; using the stored one")
            ),
            Effect.zipRight(loadOrFail(key))
          )
      }))
    )

  // Runs under the store's lock of the key: re-reads, and refreshes only if still needed.
  const refreshLocked = (
    key: TokenKey.TokenKey,
    staleVersion: number | undefined,
    force: boolean
  ): Effect.Effect<Versioned, AutoRefreshError> =>
    Effect.gen(function*() {
      let current = yield* loadOrFail(key)
      const unsaved = pending.get(TokenKey.toId(key))
      if (unsaved !== undefined) {
        if (unsaved.baseVersion === current.version) {
          // A refreshed token that could not be stored before: store it, then decide as usual
          // (it may itself be due by now).
          current = yield* persist(key, current.version, unsaved.token)
          yield* Effect.logDebug("Stored the token kept from an earlier refresh")
        } else {
          // Superseded (a write of that refresh did land, or a new authorization did).
          pending.delete(TokenKey.toId(key))
        }
      }
      const now = yield* DateTime.now
      const due = force || current.version === staleVersion ||
        UserAccessToken.accessTokenExpiresWithin(current.token, now, config.refreshLeadTime)
      if (!due) {
        yield* Effect.annotateCurrentSpan("digime.outcome", "reused")
        yield* Effect.logDebug("The store already holds a newer token: no refresh")
        return current
      }
      if (UserAccessToken.isRefreshTokenExpired(current.token, now)) {
        yield* Effect.logDebug("The refresh token has expired by the clock: no refresh sent")
        return yield* new RefreshTokenExpired({ key, detectedBy: "Clock" })
      }
      yield* Effect.logDebug("Refreshing the token")
      const contract = yield* config.contract(key.contractId)
      const token = yield* refreshCall(contract, current.token.refreshToken.value).pipe(
        Effect.catchIf(
          (error): error is ApiError =>
            error._tag === "ApiError" && error.status === 401 && error.code === "InvalidToken",
          (error): Effect.Effect<never, RefreshTokenExpired | ReauthRequired> =>
            /expired/i.test(error.description)
              ? Effect.fail(new RefreshTokenExpired({ key, detectedBy: "Server" }))
              : Effect.fail(new ReauthRequired({ key, reason: "RefreshTokenInvalid" }))
        ),
        Effect.tapBoth({
          onFailure: (error) => countRefresh(key, error._tag),
          onSuccess: () => countRefresh(key, "refreshed")
        })
      )
      const stored = yield* persist(key, current.version, token)
      yield* Effect.annotateCurrentSpan("digime.outcome", "refreshed")
      yield* Effect.logDebug("Refreshed token stored").pipe(Effect.annotateLogs("digime.version", stored.version))
      return stored
    }).pipe(
      Effect.tapError((error) => Effect.annotateCurrentSpan("digime.outcome", error._tag)),
      (effect) => store.withLock(key, effect),
      // The lock is released and the write durable: the kept copy is no longer needed.
      Effect.tap((versioned) =>
        Effect.sync(() => {
          const kept = pending.get(TokenKey.toId(key))
          if (kept !== undefined && kept.baseVersion < versioned.version) pending.delete(TokenKey.toId(key))
        })
      ),
      Metric.trackDuration(DigimeMetrics.refreshDuration),
      Effect.annotateLogs({ "digime.contract_id": key.contractId, "digime.key": TokenKey.hash(key) }),
      Effect.withSpan("AutoRefresh.refresh", {
        attributes: { "digime.contract_id": key.contractId, "digime.key": TokenKey.hash(key) }
      })
    )

  // Single flight: one refresh per key at a time in this process; the store's lock extends that
  // to every process sharing the store. The refresh runs in the layer's scope, not the caller's.
  // Written without generators: in a burst, every waiting fiber runs this once.
  const refresh = (
    key: TokenKey.TokenKey,
    staleVersion: number | undefined,
    force: boolean
  ): Effect.Effect<Versioned, AutoRefreshError> =>
    Effect.suspend(() => {
      const id = TokenKey.toId(key)
      const running = inFlight.get(id)
      if (running === undefined) return lead(id, key, staleVersion, force)
      return Metric.increment(DigimeMetrics.coalescedWaiters).pipe(
        Effect.zipRight(Deferred.await(running)),
        // The flight we joined may have started before our token was found stale.
        Effect.flatMap((joined) =>
          !force && (staleVersion === undefined || joined.version !== staleVersion)
            ? Effect.succeed(joined)
            : lead(id, key, staleVersion, force)
        )
      )
    })

  // Starts a flight (or joins one started meanwhile) and waits for its result. Registering the
  // flight and starting its fiber must not be torn apart by an interruption: a registered flight
  // that never starts would make every later caller wait forever.
  const lead = (
    id: string,
    key: TokenKey.TokenKey,
    staleVersion: number | undefined,
    force: boolean
  ): Effect.Effect<Versioned, AutoRefreshError> =>
    Effect.uninterruptible(Effect.gen(function*() {
      const leader = inFlight.get(id)
      if (leader !== undefined) return leader
      const deferred = yield* Deferred.make<Versioned, AutoRefreshError>()
      inFlight.set(id, deferred)
      // The fiber itself is interruptible (timeouts need that); only its start is protected.
      yield* Effect.interruptible(refreshLocked(key, staleVersion, force)).pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => inFlight.delete(id)).pipe(Effect.zipRight(Deferred.done(deferred, exit)))
        ),
        Effect.forkIn(scope)
      )
      return deferred
    })).pipe(Effect.flatMap(Deferred.await))

  // The hot path: one clock read, two map lookups, two comparisons, no generator.
  const leadMillis = Duration.toMillis(config.refreshLeadTime)
  const usable = (versioned: Versioned, now: number) =>
    DateTime.toEpochMillis(versioned.token.accessToken.expiresAt) - now > leadMillis

  // Otherwise: the stored token (read again if the cached copy `hit` is missing or too old),
  // refreshed first when due; `renewed` says whether it is not the one first read.
  const currentToken = (
    key: TokenKey.TokenKey,
    now: number,
    hit: Versioned | undefined
  ): Effect.Effect<{ readonly versioned: Versioned; readonly renewed: boolean }, AutoRefreshError> => {
    const decide = (current: Versioned) =>
      usable(current, now)
        ? Effect.succeed({ versioned: current, renewed: false })
        : Effect.map(
          refresh(key, current.version, false),
          (fresh) => ({ versioned: fresh, renewed: fresh.version !== current.version })
        )
    return hit !== undefined ? decide(hit) : Effect.flatMap(loadOrFail(key), decide)
  }

  const getToken = (key: TokenKey.TokenKey): Effect.Effect<Versioned, AutoRefreshError> =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const hit = cached(key, now)
      return hit !== undefined && usable(hit, now)
        ? Effect.succeed(hit)
        : Effect.map(currentToken(key, now, hit), ({ versioned }) => versioned)
    })

  const withAutoRefresh = <A, E, R>(
    key: TokenKey.TokenKey,
    use: (credentials: KeyedCredentials) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R> => {
    const renew = (versioned: Versioned, expiredInFlight: boolean) =>
      refresh(key, versioned.version, false).pipe(Effect.flatMap((fresh) => run(fresh, true, expiredInFlight)))
    const rejected = (versioned: Versioned, afterRefresh: boolean, expiredInFlight: boolean) =>
      Effect.gen(function*() {
        if (!afterRefresh) {
          yield* Effect.logDebug("The access token was rejected: re-reading the store")
          return yield* renew(versioned, false)
        }
        // A token renewed just now and rejected: only a token that expired while the call was in
        // flight (by the Clock) gets one more renewal; otherwise the grant is gone.
        const now = yield* DateTime.now
        const dueNow = UserAccessToken.accessTokenExpiresWithin(versioned.token, now, config.refreshLeadTime)
        if (!expiredInFlight && dueNow) {
          yield* Effect.logDebug("The renewed access token expired in flight: renewing once more")
          return yield* renew(versioned, true)
        }
        yield* Effect.logWarning("The access token was rejected right after a refresh")
        return yield* new InvalidAccessToken({ key })
      }).pipe(Effect.annotateLogs({ "digime.contract_id": key.contractId, "digime.key": TokenKey.hash(key) }))
    const run = (
      versioned: Versioned,
      afterRefresh: boolean,
      expiredInFlight: boolean
    ): Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R> =>
      Effect.catchIf(
        use({ key, contractId: key.contractId, accessToken: versioned.token.accessToken.value }),
        isAccessTokenRejected,
        () => rejected(versioned, afterRefresh, expiredInFlight)
      ) as Effect.Effect<A, Exclude<E, AccessTokenRejected> | AutoRefreshError, R>
    return Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const hit = cached(key, now)
      // A token renewed just now is not renewed again on a rejection: that is InvalidAccessToken.
      return hit !== undefined && usable(hit, now)
        ? run(hit, false, false)
        : Effect.flatMap(currentToken(key, now, hit), ({ renewed, versioned }) => run(versioned, renewed, false))
    })
  }

  const refreshToken = (options: RefreshOptions) =>
    options.key === undefined
      ? Effect.gen(function*() {
        const contract = yield* config.contract(options.contractId)
        yield* nonEmpty("refreshToken", "refreshToken", Redacted.value(options.refreshToken))
        return yield* refreshCall(contract, options.refreshToken)
      })
      : Effect.map(refresh(options.key, undefined, true), (versioned) => versioned.token)

  return {
    getAuthorizeUrl,
    exchangeCodeForToken,
    refreshToken,
    getReauthorizeUrl,
    readSession,
    readAccounts,
    deleteUser,
    getToken,
    withAutoRefresh
  } satisfies Service
})

const isAccessTokenRejected = (error: unknown): error is AccessTokenRejected =>
  typeof error === "object" && error !== null && (error as { readonly _tag?: unknown })._tag === "AccessTokenRejected"

const countRefresh = (key: TokenKey.TokenKey, outcome: string) =>
  Metric.update(
    DigimeMetrics.refreshes.pipe(Metric.tagged("outcome", outcome), Metric.tagged("contract_id", key.contractId)),
    1
  )

const spanAttributes = (options: ContractOrKey): Record<string, string> =>
  options.key === undefined
    ? { "digime.contract_id": options.contractId }
    : { "digime.contract_id": options.key.contractId, "digime.key": TokenKey.hash(options.key) }

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  DigimeClient,
  InvalidContractKey,
  DigimeConfig | Signer | TokenStore | HttpClient.HttpClient
> = Layer.scoped(DigimeClient, make)

