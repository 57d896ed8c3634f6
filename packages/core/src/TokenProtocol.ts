/**
 * The calls of the user-access-token lifecycle, each as a request builder (`xRequest`: the claims
 * of its client assertion, checked and encoded with the step's wire schema) and a response
 * processor (`processXResponse`: a function of the HTTP answer that decodes and validates it and
 * verifies the token digi.me signed, testable without HTTP), plus the onboarding URLs and the
 * callback. Steps are named in digi.me's own words: `authorize` → (consent) → `parseCallback` →
 * exchange; refresh; reference (reauthorize).
 *
 * @see https://digime.github.io/digime-sdk-nodejs/pages/fundamentals/authorize.html
 * @since 0.1.0
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { agentOf, type PullOptions, Session } from "./DataProtocol.js"
import type { SdkAgent } from "./DigimeConfig.js"
import type { ApiError, InvalidOptions, ResponseError } from "./DigimeError.js"
import type { VerificationError } from "./DigimeError.js"
import type { CallbackError } from "./DigimeError.js"
import type { Request } from "./DigimeRequest.js"
import * as Callback from "./internal/callback.js"
import * as Calls from "./internal/calls.js"
import * as Protocol from "./internal/protocol.js"
import { verified } from "./internal/verified.js"
import type { KeySet } from "./KeySet.js"
import type { UserAccessToken } from "./UserAccessToken.js"

const actionsOf = (options: PullOptions | undefined) =>
  options === undefined ? undefined : { pull: Calls.withoutUndefined({ ...options }) }

/**
 * @since 0.1.0
 * @category models
 */
export interface AuthorizeRequestOptions {
  readonly contractId: string
  /** The application's callback URL, where digi.me sends the browser back. */
  readonly callbackUrl: string
  /** Echoed back on the callback. */
  readonly state: string
  /** `base64url(SHA-256(verifier))` of a fresh PKCE verifier. */
  readonly codeChallenge: string
  /** An existing access token of this user, to add the contract to the same digi.me library. */
  readonly accessToken?: Redacted.Redacted<string> | undefined
  readonly sessionOptions?: PullOptions | undefined
  readonly agent: SdkAgent
}

/**
 * `POST oauth/authorize`: the pre-authorization with PKCE (WP §4.1). Repeatable: each attempt
 * only creates a new pre-authorization. Next: `processAuthorizeResponse`, then `authorizeUrl`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const authorizeRequest = (options: AuthorizeRequestOptions): Effect.Effect<Request, InvalidOptions> =>
  pkceRequest(
    "getAuthorizeUrl",
    "oauth/authorize",
    options,
    Calls.nonEmpty("getAuthorizeUrl", "state", options.state),
    Protocol.AuthorizeClaims,
    {
      access_token: options.accessToken,
      code_challenge: options.codeChallenge,
      code_challenge_method: "S256",
      redirect_uri: options.callbackUrl,
      state: options.state,
      response_mode: "query",
      response_type: "code"
    }
  )

// The two steps that start a consent: PKCE claims, and a body `{agent, actions?}`. Repeatable:
// each attempt only creates a new pre-authorization.
const pkceRequest = <A extends Readonly<Record<string, unknown>>, I extends Readonly<Record<string, unknown>>>(
  operation: string,
  path: string,
  options: {
    readonly contractId: string
    readonly callbackUrl: string
    readonly sessionOptions?: PullOptions | undefined
    readonly agent: SdkAgent
  },
  checks: Effect.Effect<void, InvalidOptions>,
  schema: Schema.Schema<A, I>,
  claims: NoInfer<A>
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    yield* Calls.nonEmpty(operation, "contractId", options.contractId)
    yield* Calls.httpUrl(operation, "callbackUrl", options.callbackUrl)
    yield* checks
    const encoded = yield* Calls.encodeClaims(operation, schema, Calls.withoutUndefined(claims))
    const request = yield* Calls.withJsonBody(
      operation,
      "sessionOptions",
      HttpClientRequest.post(path),
      Protocol.AuthorizeBody,
      Calls.withoutUndefined({ agent: agentOf(options.agent), actions: actionsOf(options.sessionOptions) })
    )
    return { operation, contractId: options.contractId, request, claims: encoded, idempotent: true }
  })

/**
 * A pre-authorization or reauthorization answer: the verified code to put in the onboarding URL,
 * and the session digi.me opened.
 *
 * @since 0.1.0
 * @category models
 */
export interface Preauthorization {
  readonly code: string
  readonly session: Session
}

const processCodeResponse = <I>(
  response: HttpClientResponse.HttpClientResponse,
  request: Request,
  payload: Schema.Schema<{ readonly code: string }, I>
) =>
  Calls.decodeSuccess(request, response, Protocol.TokenEnvelopeWithSession, false).pipe(
    Effect.flatMap((answer) =>
      Effect.map(
        verified(request.operation, answer.token, payload),
        ({ code }) => ({ code, session: new Session(answer.session) })
      )
    )
  )

/**
 * Reads the answer to `authorizeRequest`: `{token, session}`, the token verified with `KeySet`
 * and holding a `preauthorization_code`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processAuthorizeResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<Preauthorization, ApiError | ResponseError | VerificationError, KeySet> =>
  processCodeResponse(
    response,
    request,
    Protocol.PreauthorizationPayload.pipe(
      Schema.rename({ preauthorization_code: "code" })
    )
  )

/**
 * What the onboarding URL of a first authorization may ask for, besides the sources scope.
 *
 * @since 0.1.0
 * @category models
 */
export interface AuthorizeUrlOptions {
  /** `"pull"` (the default) to read data, `"push"` to write it. */
  readonly sourceType?: "pull" | "push" | undefined
  /** Opens the onboarding on this service. */
  readonly serviceId?: number | undefined
  readonly sampleDataSetId?: string | undefined
  readonly sampleDataAutoOnboard?: boolean | undefined
  readonly locale?: string | undefined
  readonly includeSampleDataOnlySources?: boolean | undefined
  readonly storageRef?: string | undefined
  readonly triggerQuery?: boolean | undefined
}

/**
 * The onboarding URL for a pre-authorization code, with the optional parameters in digi.me's
 * order (WP §4.1). `sourcesScope` is JSON text, percent-encoded twice here as digi.me reads it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const authorizeUrl = (
  onboardUrl: string,
  code: string,
  options: AuthorizeUrlOptions & {
    /** JSON text of the sources scope. */
    readonly sourcesScope?: string | undefined
  }
): string =>
  onboarding(onboardUrl, "authorize", [
    ["code", code],
    ["sourceType", options.sourceType ?? "pull"],
    ["service", options.serviceId === undefined ? undefined : String(options.serviceId)],
    ["sampleDataSet", options.sampleDataSetId],
    ["sampleDataAutoOnboard", options.sampleDataAutoOnboard === true ? "true" : undefined],
    ["lng", options.locale],
    ["includeSampleDataOnlySources", optionalFlag(options.includeSampleDataOnlySources)],
    ["storageRef", options.storageRef],
    ["triggerQuery", optionalFlag(options.triggerQuery)],
    ["sourcesScope", options.sourcesScope === undefined ? undefined : encodeURIComponent(options.sourcesScope)]
  ])

const optionalFlag = (flag: boolean | undefined) => flag === undefined ? undefined : String(flag)

const onboarding = (
  onboardUrl: string,
  path: string,
  params: ReadonlyArray<readonly [string, string | undefined]>
): string => {
  const query = new URLSearchParams()
  for (const [name, value] of params) if (value !== undefined) query.append(name, value)
  return `${onboardUrl}${path}?${query.toString()}`
}

/**
 * `POST oauth/token`, grant `authorization_code`: no body, the code and verifier in the claims
 * (WP §4.3). Never repeated: a code is single-use. Next: `processTokenResponse`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const exchangeCodeRequest = (options: {
  readonly contractId: string
  readonly code: Redacted.Redacted<string> | string
  readonly codeVerifier: Redacted.Redacted<string>
}): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const operation = "exchangeCodeForToken"
    yield* Calls.nonEmpty(operation, "contractId", options.contractId)
    yield* Calls.nonEmpty(operation, "code", options.code)
    yield* Calls.nonEmpty(operation, "codeVerifier", options.codeVerifier)
    const claims = yield* Calls.encodeClaims(operation, Protocol.ExchangeClaims, {
      grant_type: "authorization_code",
      code: typeof options.code === "string" ? Redacted.make(options.code) : options.code,
      code_verifier: options.codeVerifier
    })
    const request = HttpClientRequest.post("oauth/token")
    return { operation, contractId: options.contractId, request, claims, idempotent: false }
  })

// The HTTP request of every refresh, built once (requests are immutable).
const refreshTokenHttpRequest = HttpClientRequest.post("oauth/token").pipe(
  HttpClientRequest.setHeader("content-type", "application/json")
)

/**
 * `POST oauth/token`, grant `refresh_token`: a JSON content type but no body (WP §4.4). Never
 * repeated: digi.me rotates the refresh token on every refresh, so when an answer is lost the
 * token sent is already spent, and sending it again would be a replay. Next: `processTokenResponse`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const refreshTokenRequest = (options: {
  readonly contractId: string
  readonly refreshToken: Redacted.Redacted<string>
}): Effect.Effect<Request, InvalidOptions> =>
  // Without a generator: every refresh builds one.
  Effect.zipRight(
    Effect.zipRight(
      Calls.nonEmpty("refreshToken", "contractId", options.contractId),
      Calls.nonEmpty("refreshToken", "refreshToken", options.refreshToken)
    ),
    Effect.map(
      Calls.encodeClaims("refreshToken", Protocol.RefreshClaims, {
        grant_type: "refresh_token",
        refresh_token: options.refreshToken
      }),
      (claims): Request => ({
        operation: "refreshToken",
        contractId: options.contractId,
        request: refreshTokenHttpRequest,
        claims,
        idempotent: false
      })
    )
  )

/**
 * Reads the answer to `exchangeCodeRequest` or `refreshTokenRequest` without verifying it: the
 * token digi.me signed, as it arrived (`Redacted`: it holds both tokens). Once such an answer has
 * arrived, a refresh token is spent, whether or not the answer can be verified now.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processTokenEnvelope = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<Redacted.Redacted<string>, ApiError | ResponseError> =>
  Effect.map(
    Calls.decodeSuccess(request, response, Protocol.TokenEnvelope, false),
    (answer) => Redacted.make(answer.token)
  )

/**
 * Verifies a token answer with `KeySet` and reads both tokens with their expiries (seconds since
 * the epoch).
 *
 * @since 0.1.0
 * @category constructors
 */
export const verifyTokenAnswer = (
  operation: string,
  answer: Redacted.Redacted<string>
): Effect.Effect<UserAccessToken, VerificationError, KeySet> =>
  Effect.map(verified(operation, Redacted.value(answer), Protocol.TokenPayload), Protocol.toUserAccessToken)

/**
 * Reads the answer to `exchangeCodeRequest` or `refreshTokenRequest`: `processTokenEnvelope`, then
 * `verifyTokenAnswer`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processTokenResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<UserAccessToken, ApiError | ResponseError | VerificationError, KeySet> =>
  Effect.flatMap(processTokenEnvelope(response, request), (answer) => verifyTokenAnswer(request.operation, answer))

/**
 * @since 0.1.0
 * @category models
 */
export interface ReferenceRequestOptions {
  readonly contractId: string
  /** The user's current access token: it may have expired, but must be genuine. */
  readonly accessToken: Redacted.Redacted<string>
  readonly callbackUrl: string
  readonly state?: string | undefined
  readonly codeChallenge: string
  readonly sessionOptions?: PullOptions | undefined
  readonly agent: SdkAgent
}

/**
 * `POST oauth/token/reference`: the start of a reauthorization (WP §4.5). Repeatable like
 * `authorizeRequest`. Next: `processReferenceResponse`, then `reauthorizeUrl`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const referenceRequest = (options: ReferenceRequestOptions): Effect.Effect<Request, InvalidOptions> =>
  pkceRequest(
    "getReauthorizeUrl",
    "oauth/token/reference",
    options,
    Effect.zipRight(
      options.state === undefined ? Effect.void : Calls.nonEmpty("getReauthorizeUrl", "state", options.state),
      Calls.nonEmpty("getReauthorizeUrl", "accessToken", options.accessToken)
    ),
    Protocol.ReferenceClaims,
    {
      access_token: options.accessToken,
      code_challenge: options.codeChallenge,
      code_challenge_method: "S256",
      redirect_uri: options.callbackUrl,
      state: options.state
    }
  )

/**
 * Reads the answer to `referenceRequest`: `{token, session}`, the token verified and holding a
 * `reference_code`. digi.me answers `401 InvalidToken` when it refuses the access token: then
 * only a new authorization helps.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processReferenceResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<Preauthorization, ApiError | ResponseError | VerificationError, KeySet> =>
  processCodeResponse(response, request, Protocol.ReferencePayload.pipe(Schema.rename({ reference_code: "code" })))

/**
 * The onboarding URL of a reauthorization: `{onboard}user-reauth?code=…[&lng][&triggerQuery]`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reauthorizeUrl = (
  onboardUrl: string,
  code: string,
  options: { readonly locale?: string | undefined; readonly triggerQuery?: boolean | undefined }
): string =>
  onboarding(onboardUrl, "user-reauth", [
    ["code", code],
    ["lng", options.locale],
    ["triggerQuery", optionalFlag(options.triggerQuery)]
  ])

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

/**
 * Reads a callback query (WP §4.2) into a typed result, checking its state against the one
 * issued with the authorize URL (in constant time). Next: `exchangeCodeRequest`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseCallback = (
  query: CallbackQuery,
  expectedState: string
): Effect.Effect<CallbackResult, CallbackError | InvalidOptions> => Callback.parse(query, expectedState)
