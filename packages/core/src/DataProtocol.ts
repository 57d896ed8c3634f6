/**
 * digi.me's data calls about the user's library as a whole (a read session, the accounts, deleting
 * the user, the portability report), each as a request builder (`xRequest`) and a response
 * processor (`processXResponse`, a function of the HTTP answer, testable without HTTP), and the
 * models they read and return; files are in `FileProtocol`, pushes in `PushProtocol`. Every data call is made with the user's access token (`Credentials`) and fails
 * with `AccessTokenRejected` when digi.me refuses it (`401 InvalidToken`), which is what
 * `AutoRefresh.withAutoRefresh` handles.
 *
 * @since 0.1.0
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { SdkAgent } from "./DigimeConfig.js"
import { InvalidOptions, ResponseError } from "./DigimeError.js"
import type { AccessTokenRejected, ApiError } from "./DigimeError.js"
import type { Request } from "./DigimeRequest.js"
import * as Calls from "./internal/calls.js"
import * as Protocol from "./internal/protocol.js"

/**
 * The session digi.me opens with a pre-authorization, a reauthorization or a sync trigger. The
 * unit of `expiry` is not documented by digi.me (probably milliseconds); it is passed on as sent.
 *
 * @since 0.1.0
 * @category models
 */
export class Session extends Schema.Class<Session>("@digime-effect/core/DataProtocol/Session")({
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
  /** Only these accounts are synced: `{account: {id: [accountId, ...]}}`. */
  readonly sourceFetchFilter?: { readonly account: { readonly id: ReadonlyArray<string> } } | undefined
}

/**
 * The access token a data call runs with. `AutoRefresh.withAutoRefresh` hands one to the effect
 * it wraps; the data calls accept it as it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly contractId: string
  readonly accessToken: Redacted.Redacted<string>
}

/**
 * The `agent` object of JSON bodies: the SDK identity digi.me checks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const agentOf = (agent: SdkAgent): typeof Protocol.Agent.Type => ({
  sdk: { name: agent.name, version: agent.version }
})

/**
 * `POST permission-access/trigger`: starts a sync and opens a read session, the pull options at
 * the top level of the body (WP §4.6). Not repeated: a repeat would start another sync.
 *
 * @since 0.1.0
 * @category constructors
 */
export const triggerRequest = (
  options: Credentials & PullOptions,
  agent: SdkAgent
): Effect.Effect<Request, InvalidOptions> =>
  Effect.flatMap(
    Calls.withJsonBody(
      "readSession",
      "options",
      HttpClientRequest.post("permission-access/trigger"),
      Protocol.TriggerBody,
      Calls.withoutUndefined({
        limits: options.limits,
        scope: options.scope,
        sourceFetch: options.sourceFetch,
        sourceFetchFilter: options.sourceFetchFilter,
        agent: agentOf(agent)
      })
    ),
    (request) => Calls.userRequest("readSession", options, request, false)
  )

/**
 * Reads the answer to `triggerRequest`: `{session}`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processTriggerResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<Session, ApiError | AccessTokenRejected | ResponseError> =>
  Effect.map(
    Calls.decodeSuccess(request, response, Protocol.TriggerResponse, true),
    (answer) => new Session(answer.session)
  )

/**
 * `GET permission-access/accounts` (WP §4.7). Repeatable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const accountsRequest = (credentials: Credentials): Effect.Effect<Request, InvalidOptions> =>
  Calls.userRequest("readAccounts", credentials, HttpClientRequest.get("permission-access/accounts"), true)

// Built once: a schema made per call would have its decoder compiled anew every time.
const Accounts = Schema.Array(Account)

/**
 * Reads the answer to `accountsRequest`: a JSON array of accounts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processAccountsResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<ReadonlyArray<Account>, ApiError | AccessTokenRejected | ResponseError> =>
  Calls.decodeSuccess(request, response, Accounts, true)

/**
 * `DELETE user`: deletes the user's library at digi.me (WP §4.8). Repeatable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const deleteUserRequest = (credentials: Credentials): Effect.Effect<Request, InvalidOptions> =>
  Calls.userRequest("deleteUser", credentials, HttpClientRequest.del("user"), true)

/**
 * Reads the answer to `deleteUserRequest`: any 2xx, whatever its body.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processDeleteUserResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<void, ApiError | AccessTokenRejected> =>
  response.status >= 200 && response.status < 300 ? Effect.void : Calls.failure(request, response, true)

// ---------------------------------------------------------------------------------------------
// Portability report (data protocol §8)
// ---------------------------------------------------------------------------------------------

/**
 * `GET export/{serviceType}/report`: the user's portability report (MedMij only, XML). `from` and
 * `to` are seconds since the epoch; each is sent only when given. Repeatable.
 *
 * @since 0.2.0
 * @category constructors
 */
export const portabilityReportRequest = (
  options: Credentials & {
    readonly serviceType?: "medmij" | undefined
    readonly format?: "xml" | undefined
    readonly from?: number | undefined
    readonly to?: number | undefined
  }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const operation = "getPortabilityReport"
    for (const field of ["from", "to"] as const) {
      const value = options[field]
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
        return yield* new InvalidOptions({ operation, field, reason: "must be whole seconds since the epoch" })
      }
    }
    const params: Array<[string, string]> = [["format", options.format ?? "xml"]]
    if (options.from !== undefined) params.push(["from", String(options.from)])
    if (options.to !== undefined) params.push(["to", String(options.to)])
    return yield* Calls.userRequest(
      operation,
      options,
      HttpClientRequest.get(`export/${options.serviceType ?? "medmij"}/report`).pipe(
        HttpClientRequest.setUrlParams(params),
        HttpClientRequest.setHeader("accept", "application/octet-stream")
      ),
      true
    )
  })

/**
 * Reads the answer to `portabilityReportRequest`: the body as UTF-8 text.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processPortabilityReportResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<string, ApiError | AccessTokenRejected | ResponseError> =>
  response.status >= 200 && response.status < 300
    ? Effect.mapError(
      response.text,
      () => new ResponseError({ operation: request.operation, status: response.status, description: "unreadable body" })
    )
    : Calls.failure(request, response, true)
