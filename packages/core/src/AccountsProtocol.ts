/**
 * The management of a user's accounts (the sources of their digi.me library), each call as a
 * request builder (`xRequest`) and a response processor (`processXResponse`, a function of the
 * HTTP answer, testable without HTTP), plus the onboarding URLs: onboard an additional service,
 * reauthorize one account, revoke an account's permission, delete an account.
 *
 * The calls made with the user's access token take `DataProtocol.Credentials` and fail with
 * `AccessTokenRejected` when digi.me refuses it (`401 InvalidToken`), so they run inside
 * `AutoRefresh.withAutoRefresh`. digi.me's SDK does not refresh around revoke and delete; this
 * module lets them be refreshed too, because a `401 InvalidToken` means the same there.
 *
 * @see digi.me data protocol §6
 * @since 0.2.0
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { agentOf, type Credentials, type PullOptions, Session } from "./DataProtocol.js"
import type { SdkAgent } from "./DigimeConfig.js"
import type { AccessTokenRejected, ApiError, InvalidOptions, ResponseError, VerificationError } from "./DigimeError.js"
import type { Request } from "./DigimeRequest.js"
import * as Calls from "./internal/calls.js"
import * as Protocol from "./internal/protocol.js"
import { verified } from "./internal/verified.js"
import type { KeySet } from "./KeySet.js"
import type { AuthorizeUrlOptions } from "./TokenProtocol.js"

// ---------------------------------------------------------------------------------------------
// Machinery
// ---------------------------------------------------------------------------------------------

const withOnboardBase = (onboardBase: string): string => onboardBase.endsWith("/") ? onboardBase : `${onboardBase}/`

const onboarding = (
  onboardBase: string,
  path: string,
  params: ReadonlyArray<readonly [string, string | undefined]>
): string => {
  const query = new URLSearchParams()
  for (const [name, value] of params) if (value !== undefined) query.append(name, value)
  return `${withOnboardBase(onboardBase)}${path}?${query.toString()}`
}

const optionalFlag = (flag: boolean | undefined): string | undefined => flag === undefined ? undefined : String(flag)

// ---------------------------------------------------------------------------------------------
// The reference code (onboard an additional service, reauthorize one account)
// ---------------------------------------------------------------------------------------------

/**
 * A verified reference code, to put into an onboarding URL (`onboardUrl`,
 * `reauthorizeAccountUrl`), and the session digi.me opened, when it sent one.
 *
 * @since 0.2.0
 * @category models
 */
export class ReferenceCode extends Schema.Class<ReferenceCode>("@digime-effect/core/AccountsProtocol/ReferenceCode")({
  code: Schema.NonEmptyString,
  session: Schema.optional(Session)
}) {}

/**
 * What onboarding an additional service asks for, besides the user's credentials.
 *
 * @since 0.2.0
 * @category models
 */
export interface OnboardOptions {
  /** The application's callback URL, where digi.me sends the browser back. */
  readonly callbackUrl: string
  /** Passed to digi.me with the request; whether the callback echoes it is not documented. */
  readonly state?: string | undefined
  /** The read session to open once the new service is onboarded (`actions.pull`). */
  readonly sessionOptions?: PullOptions | undefined
}

const referenceRequest = (
  operation: string,
  credentials: Credentials,
  callbackUrl: string,
  state: string | undefined,
  body: typeof Protocol.AuthorizeBody.Type
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    yield* Calls.nonEmpty(operation, "contractId", credentials.contractId)
    yield* Calls.nonEmpty(operation, "accessToken", credentials.accessToken)
    yield* Calls.httpUrl(operation, "callbackUrl", callbackUrl)
    if (state !== undefined) yield* Calls.nonEmpty(operation, "state", state)
    const claims = yield* Calls.encodeClaims(
      operation,
      Protocol.OnboardClaims,
      Calls.withoutUndefined({ access_token: credentials.accessToken, redirect_uri: callbackUrl, state })
    )
    const request = yield* Calls.withJsonBody(
      operation,
      "sessionOptions",
      HttpClientRequest.post("oauth/token/reference"),
      Protocol.AuthorizeBody,
      body
    )
    // Repeatable, as a pre-authorization: each attempt only creates a new reference code.
    return { operation, contractId: credentials.contractId, request, claims, idempotent: true }
  })

/**
 * `POST oauth/token/reference` without a code challenge, which tells digi.me it is not a
 * reauthorization: the start of onboarding an additional service into the user's library (data
 * protocol §6.1). Claims: the access token, `redirect_uri` and `state` when given; body
 * `{agent, actions?: {pull}}`. Repeatable. Next: `processOnboardResponse`, then `onboardUrl`.
 *
 * @see digi.me data protocol §6.1
 * @since 0.2.0
 * @category constructors
 */
export const onboardRequest = (
  options: Credentials & OnboardOptions,
  agent: SdkAgent
): Effect.Effect<Request, InvalidOptions> =>
  referenceRequest(
    "getOnboardServiceUrl",
    options,
    options.callbackUrl,
    options.state,
    Calls.withoutUndefined({
      agent: agentOf(agent),
      actions: options.sessionOptions === undefined
        ? undefined
        : { pull: Calls.withoutUndefined({ ...options.sessionOptions }) }
    })
  )

// digi.me's SDK takes the session without looking at it; a missing one is no reason to refuse
// the code, a malformed one is.
const ReferenceAnswer = Schema.Struct({ token: Schema.String, session: Schema.optional(Protocol.Session) })

/**
 * Reads the answer to `onboardRequest` or `reauthorizeAccountRequest`: `{token, session?}`, the
 * token verified with `KeySet` and holding a `reference_code`. A `401 InvalidToken` is
 * `AccessTokenRejected`: refreshing the access token and starting again helps.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processOnboardResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<ReferenceCode, ApiError | AccessTokenRejected | ResponseError | VerificationError, KeySet> =>
  Calls.decodeSuccess(request, response, ReferenceAnswer, true).pipe(
    Effect.flatMap((answer) =>
      Effect.map(
        Effect.map(verified(request.operation, answer.token, Protocol.ReferencePayload), (payload) =>
          payload.reference_code),
        (code) =>
          new ReferenceCode({
            code,
            session: answer.session === undefined ? undefined : new Session(answer.session)
          })
      )
    )
  )

/**
 * What the onboarding URL of an additional service may ask for.
 *
 * @since 0.2.0
 * @category models
 */
export interface OnboardUrlOptions extends Omit<AuthorizeUrlOptions, "storageRef"> {
  /** JSON text of the sources scope (`{dataType?, organizationType?}`): which sources the user may pick. */
  readonly sourcesScope?: string | undefined
}

/**
 * The onboarding URL of an additional service, `{onboard}onboard?code=…&sourceType=…`, then the
 * optional parameters in digi.me's order: `service`, `sampleDataSet`, `sampleDataAutoOnboard`,
 * `lng`, `includeSampleDataOnlySources`, `triggerQuery`, `sourcesScope`. `sourcesScope` is
 * percent-encoded twice, as digi.me reads it. After the browser flow, digi.me calls the callback
 * with `success` and `errorCode`.
 *
 * @see digi.me data protocol §6.1
 * @since 0.2.0
 * @category constructors
 */
export const onboardUrl = (onboardBase: string, code: string, options: OnboardUrlOptions = {}): string =>
  onboarding(onboardBase, "onboard", [
    ["code", code],
    ["sourceType", options.sourceType ?? "pull"],
    ["service", options.serviceId === undefined || options.serviceId === 0 ? undefined : String(options.serviceId)],
    ["sampleDataSet", options.sampleDataSetId],
    ["sampleDataAutoOnboard", options.sampleDataAutoOnboard === true ? "true" : undefined],
    ["lng", options.locale],
    ["includeSampleDataOnlySources", optionalFlag(options.includeSampleDataOnlySources)],
    ["triggerQuery", optionalFlag(options.triggerQuery)],
    ["sourcesScope", options.sourcesScope === undefined ? undefined : encodeURIComponent(options.sourcesScope)]
  ])

// ---------------------------------------------------------------------------------------------
// Reauthorize one account
// ---------------------------------------------------------------------------------------------

/**
 * `POST oauth/token/reference` for reauthorizing one account, whose sync ended with
 * `ServiceAuthorizationError` (data protocol §6.2, step 1): the access token and `redirect_uri`,
 * no state, no code challenge; body `{agent}`. Repeatable. Next: `processReauthorizeAccountResponse`,
 * then `accountReferenceRequest`.
 *
 * @see digi.me data protocol §6.2
 * @since 0.2.0
 * @category constructors
 */
export const reauthorizeAccountRequest = (
  options: Credentials & { readonly callbackUrl: string },
  agent: SdkAgent
): Effect.Effect<Request, InvalidOptions> =>
  referenceRequest("getReauthorizeAccountUrl", options, options.callbackUrl, undefined, { agent: agentOf(agent) })

/**
 * Reads the answer to `reauthorizeAccountRequest`: `processOnboardResponse`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processReauthorizeAccountResponse: (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
) => Effect.Effect<ReferenceCode, ApiError | AccessTokenRejected | ResponseError | VerificationError, KeySet> =
  processOnboardResponse

/**
 * `POST reference` with `{"type":"accountId","value":accountId}`: the reference of an account to
 * put into `reauthorizeAccountUrl` (data protocol §6.2, step 2). No user in the claims (claim set
 * B). Repeatable: a repeat only makes another reference. Next: `processAccountReferenceResponse`.
 *
 * @see digi.me data protocol §6.2, §9
 * @since 0.2.0
 * @category constructors
 */
export const accountReferenceRequest = (options: {
  readonly contractId: string
  /** The `id` of a `DataProtocol.Account`. */
  readonly accountId: string
}): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const operation = "getAccountReference"
    yield* Calls.nonEmpty(operation, "contractId", options.contractId)
    yield* Calls.nonEmpty(operation, "accountId", options.accountId)
    const request = yield* Calls.withJsonBody(
      operation,
      "accountId",
      HttpClientRequest.post("reference"),
      Protocol.ReferenceBody,
      { type: "accountId" as const, value: options.accountId }
    )
    return { operation, contractId: options.contractId, request, claims: {}, idempotent: true }
  })

/**
 * Reads the answer to `accountReferenceRequest`: `{id}`, the account's reference. An answer
 * without an `id` is a `ResponseError`, never a URL with a made-up reference.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processAccountReferenceResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<string, ApiError | ResponseError> =>
  Effect.map(Calls.decodeSuccess(request, response, Protocol.ReferenceIdResponse, false), (answer) => answer.id)

/**
 * The onboarding URL that reauthorizes one account:
 * `{onboard}reauthorize?code=…&accountRef=…[&lng=…]`. After the browser flow, digi.me calls the
 * callback with `success` and `errorCode`.
 *
 * @see digi.me data protocol §6.2
 * @since 0.2.0
 * @category constructors
 */
export const reauthorizeAccountUrl = (
  onboardBase: string,
  code: string,
  accountRef: string,
  locale?: string | undefined
): string =>
  onboarding(onboardBase, "reauthorize", [
    ["code", code],
    ["accountRef", accountRef],
    ["lng", locale]
  ])

// ---------------------------------------------------------------------------------------------
// Revoke an account's permission, delete an account
// ---------------------------------------------------------------------------------------------

/**
 * `GET permission-access/revoke/h:accountId` (MedMij only): the page where the user withdraws
 * the permission of one account (data protocol §6.3). The account and the URL the browser comes
 * back to travel as the headers `accountId` and `redirectUri`; both are checked first (printable
 * ASCII; `redirectUri` an absolute http(s) URL), as they are sent. Repeatable. Next:
 * `processRevokeAccountPermissionResponse`; the browser then returns to `redirectUri` with
 * `result=success|failed` (and `error_message` on failure).
 *
 * @see digi.me data protocol §6.3
 * @since 0.2.0
 * @category constructors
 */
export const revokeAccountPermissionRequest = (
  options: Credentials & { readonly accountId: string; readonly redirectUri: string }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const operation = "getRevokeAccountPermissionUrl"
    yield* Calls.headerValue(operation, "accountId", options.accountId)
    yield* Calls.headerValue(operation, "redirectUri", options.redirectUri)
    yield* Calls.httpUrl(operation, "redirectUri", options.redirectUri)
    const request = HttpClientRequest.get("permission-access/revoke/h:accountId").pipe(
      HttpClientRequest.setHeaders({ accountId: options.accountId, redirectUri: options.redirectUri })
    )
    return yield* Calls.userRequest(operation, options, request, true)
  })

const LocationAnswer = Schema.Struct({ location: Protocol.AbsoluteHttpUrl })

/**
 * Reads the answer to `revokeAccountPermissionRequest`: `{location}`, an absolute http(s) URL
 * to send the user to.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processRevokeAccountPermissionResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<string, ApiError | AccessTokenRejected | ResponseError> =>
  Effect.map(Calls.decodeSuccess(request, response, LocationAnswer, true), (answer) => answer.location)

/**
 * `DELETE permission-access/service/h:accountId`: removes one account from the user's library
 * (data protocol §6.4). The account travels as the header `accountId` (checked first); the
 * request has a JSON content type and no body, as the SDK sends it. Repeatable (what a repeat
 * after a lost answer returns is not documented). Next: `processDeleteAccountResponse`.
 *
 * @see digi.me data protocol §6.4
 * @since 0.2.0
 * @category constructors
 */
export const deleteAccountRequest = (
  options: Credentials & { readonly accountId: string }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const operation = "deleteAccount"
    yield* Calls.headerValue(operation, "accountId", options.accountId)
    const request = HttpClientRequest.del("permission-access/service/h:accountId").pipe(
      HttpClientRequest.setHeaders({ "content-type": "application/json", accountId: options.accountId })
    )
    return yield* Calls.userRequest(operation, options, request, true)
  })

/**
 * Reads the answer to `deleteAccountRequest`: any 2xx, whatever its body.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processDeleteAccountResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<void, ApiError | AccessTokenRejected> =>
  response.status >= 200 && response.status < 300 ? Effect.void : Calls.failure(request, response, true)
