/**
 * The digi.me API as a service: each call of `TokenProtocol` and `DataProtocol`, signed with the
 * contract's key (a fresh nonce and timestamp on every attempt), sent through one `HttpClient`
 * configured once (base URL, JSON accept), within `DigimeConfig.requestTimeout` per attempt,
 * repeated on transient failures only where a repeat is harmless, and answered through the call's
 * response processor. Every token digi.me signs is verified with the `KeySet`.
 *
 * The client holds no token: it is the protocol and nothing else. Tokens are stored, refreshed and
 * handed out by `TokenManager`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { flow } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as DataProtocol from "./DataProtocol.js"
import { DigimeConfig } from "./DigimeConfig.js"
import { RequestError, ResponseError } from "./DigimeError.js"
import type {
  AccessTokenRejected,
  ApiError,
  InvalidContractKey,
  InvalidOptions,
  UnknownContract,
  VerificationError
} from "./DigimeError.js"
import type { Request } from "./DigimeRequest.js"
import * as Calls from "./internal/calls.js"
import { base64url, randomAlphanumeric, randomBytes, sha256 } from "./internal/encoding.js"
import {
  buffered,
  fromHttpClientError,
  harden,
  isTransientRequestError,
  retrySchedule,
  timeout,
  transientStatuses
} from "./internal/transport.js"
import * as KeySet from "./KeySet.js"
import { Signer } from "./Signer.js"
import * as TokenProtocol from "./TokenProtocol.js"
import type { UserAccessToken } from "./UserAccessToken.js"

/**
 * Failures of any exchange with digi.me.
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
 * What `getAuthorizeUrl` and `getReauthorizeUrl` return. Keep `codeVerifier` and `state`
 * server-side until the callback: the exchange needs the verifier, `parseCallback` the state.
 *
 * @since 0.1.0
 * @category models
 */
export interface AuthorizeUrl {
  /** Where to send the user's browser. */
  readonly url: string
  readonly codeVerifier: Redacted.Redacted<string>
  readonly state: string
  readonly session: DataProtocol.Session
}

/**
 * @since 0.1.0
 * @category models
 */
export interface AuthorizeOptions extends TokenProtocol.AuthorizeUrlOptions {
  readonly contractId: string
  /** The application's callback URL, where digi.me sends the browser back. */
  readonly callbackUrl: string
  /** Echoed back on the callback; default: 128 random bits. */
  readonly state?: string | undefined
  /** An existing access token of this user, to add the contract to the same digi.me library. */
  readonly accessToken?: Redacted.Redacted<string> | undefined
  /** Any JSON: which sources the user may pick (sent double-encoded, as digi.me reads it). */
  readonly sourcesScope?: unknown
  readonly sessionOptions?: DataProtocol.PullOptions | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ReauthorizeOptions {
  readonly contractId: string
  /** The user's current access token: it may have expired, but must be genuine. */
  readonly accessToken: Redacted.Redacted<string>
  readonly callbackUrl: string
  readonly state?: string | undefined
  readonly locale?: string | undefined
  readonly triggerQuery?: boolean | undefined
  readonly sessionOptions?: DataProtocol.PullOptions | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Pre-authorizes with PKCE and builds the onboarding URL to send the user to. Next: the user
   * consents, digi.me calls the callback, then `TokenProtocol.parseCallback` and
   * `exchangeCodeForToken`.
   */
  readonly getAuthorizeUrl: (options: AuthorizeOptions) => Effect.Effect<AuthorizeUrl, TokenCallError>
  /** Exchanges the callback's code for a token (and only returns it). */
  readonly exchangeCodeForToken: (options: {
    readonly contractId: string
    /** The `code` of the callback. */
    readonly code: Redacted.Redacted<string> | string
    /** The verifier returned with the authorize (or reauthorize) URL. */
    readonly codeVerifier: Redacted.Redacted<string>
  }) => Effect.Effect<UserAccessToken, TokenCallError>
  /**
   * Exchanges a refresh token for a new token (and only returns it): the refresh token sent is
   * spent from then on. `TokenManager` refreshes stored tokens.
   */
  readonly refreshToken: (options: {
    readonly contractId: string
    readonly refreshToken: Redacted.Redacted<string>
  }) => Effect.Effect<UserAccessToken, TokenCallError>
  /**
   * The refresh grant alone: its answer as it arrived, not yet verified. From the moment digi.me
   * has answered, the refresh token sent is spent, whether or not the answer can be verified now;
   * `TokenManager` keeps such an answer until `verifyTokenAnswer` succeeds.
   */
  readonly requestRefresh: (options: {
    readonly contractId: string
    readonly refreshToken: Redacted.Redacted<string>
  }) => Effect.Effect<Redacted.Redacted<string>, RequestFailure | InvalidOptions>
  /** Verifies a token answer (of a refresh or an exchange) with the client's `KeySet`. */
  readonly verifyTokenAnswer: (
    operation: string,
    answer: Redacted.Redacted<string>
  ) => Effect.Effect<UserAccessToken, VerificationError>
  /**
   * Starts a reauthorization (the refresh token has expired or was refused). digi.me answers
   * `ApiError` `401 InvalidToken` when it refuses the access token: only `getAuthorizeUrl` helps then.
   */
  readonly getReauthorizeUrl: (options: ReauthorizeOptions) => Effect.Effect<AuthorizeUrl, TokenCallError>
  /** Triggers a data sync and opens a read session (`POST permission-access/trigger`). */
  readonly readSession: (
    options: DataProtocol.Credentials & DataProtocol.PullOptions
  ) => Effect.Effect<DataProtocol.Session, DataCallError>
  /** Lists the accounts of the user's library (`GET permission-access/accounts`). */
  readonly readAccounts: (
    credentials: DataProtocol.Credentials
  ) => Effect.Effect<ReadonlyArray<DataProtocol.Account>, DataCallError>
  /** Deletes the user's library at digi.me (`DELETE user`). The stored token is not touched. */
  readonly deleteUser: (credentials: DataProtocol.Credentials) => Effect.Effect<void, DataCallError>
  /**
   * Signs and sends a request built by a request builder and hands the answer to `process` (its
   * response processor): the one way every call above is made, open to calls this library does
   * not wrap yet.
   */
  readonly execute: <A, E, R>(
    request: Request,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | RequestFailure, Exclude<R, KeySet.KeySet>>
}

/**
 * @since 0.1.0
 * @category services
 */
export class DigimeClient extends Context.Tag("@digime-effect/core/DigimeClient")<DigimeClient, Service>() {}

const makePkce = Effect.promise(async () => {
  const verifier = base64url(randomBytes(32))
  return { verifier: Redacted.make(verifier), challenge: base64url(await sha256(verifier)) }
})

const randomState = (): string => base64url(randomBytes(16))

// On the idempotent path only: a transient status becomes a failure to repeat, and the last
// answer is handed to the processor when the attempts run out.
class TransientStatus extends Data.TaggedError("TransientStatus")<{
  readonly response: HttpClientResponse.HttpClientResponse
}> {}

/**
 * Builds the client, parsing every configured contract key (an unusable key fails with
 * `InvalidContractKey`, naming the contract).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  Service,
  InvalidContractKey,
  DigimeConfig | Signer | KeySet.KeySet | HttpClient.HttpClient
> = Effect.gen(function*() {
  const config = yield* DigimeConfig
  const signer = yield* Signer
  yield* Effect.forEach(config.contracts.values(), signer.prepare, { discard: true })
  const keySet = yield* KeySet.KeySet
  const httpClient = harden(yield* HttpClient.HttpClient).pipe(
    HttpClient.mapRequest(flow(HttpClientRequest.prependUrl(config.baseUrl), HttpClientRequest.acceptJson))
  )
  const serverAddress = new URL(config.baseUrl).host

  // The exchange, its body read (within `maxResponseBytes`), in a span of ours: the platform's
  // would hold the request's headers, and so the client assertion with every secret it carries.
  const send = (request: Request, assertion: Redacted.Redacted<string>) =>
    httpClient.execute(HttpClientRequest.bearerToken(request.request, assertion)).pipe(
      Effect.mapError((error) => fromHttpClientError(request.operation, error)),
      Effect.flatMap((response) =>
        buffered(response, config.maxResponseBytes).pipe(
          Effect.catchTags({
            BodyTooLarge: ({ limit }) =>
              Effect.fail(
                new ResponseError({
                  operation: request.operation,
                  status: response.status,
                  description: `the answer is longer than ${limit} bytes`
                })
              ),
            BodyUnreadable: ({ description }) =>
              Effect.fail(
                new RequestError({
                  operation: request.operation,
                  reason: "Transport",
                  description: `the answer could not be read (${description})`
                })
              )
          })
        )
      ),
      Effect.tap((response) => Effect.annotateCurrentSpan("http.response.status_code", response.status)),
      Effect.withSpan("DigimeClient.send", {
        kind: "client",
        attributes: {
          "digime.operation": request.operation,
          "digime.contract_id": request.contractId,
          "http.request.method": request.request.method,
          "server.address": serverAddress
        }
      })
    )

  // One signed attempt, its body read within the time limit: a new nonce and timestamp each time.
  const attempt = (request: Request) =>
    Effect.flatMap(config.contract(request.contractId), (contract) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((now) =>
          signer.sign(contract, {
            client_id: `${config.applicationId}_${contract.contractId}`,
            nonce: randomAlphanumeric(32),
            timestamp: now,
            ...request.claims
          })
        ),
        Effect.flatMap((assertion) => send(request, assertion)),
        timeout(request.operation, config.requestTimeout)
      ))

  const execute = <A, E, R>(
    request: Request,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | RequestFailure, Exclude<R, KeySet.KeySet>> =>
    (request.idempotent
      ? attempt(request).pipe(
        Effect.filterOrFail((response) => !transientStatuses.has(response.status), (response) =>
          new TransientStatus({ response })),
        Effect.retry({
          schedule: retrySchedule,
          while: (error) =>
            error._tag === "TransientStatus" || isTransientRequestError(error)
        }),
        Effect.catchTag("TransientStatus", (error) => Effect.succeed(error.response))
      )
      : attempt(request)).pipe(
        Effect.flatMap((response) => process(response, request)),
        Effect.provideService(KeySet.KeySet, keySet)
      ) as Effect.Effect<A, E | RequestFailure, Exclude<R, KeySet.KeySet>>

  const getAuthorizeUrl = (options: AuthorizeOptions) =>
    Effect.gen(function*() {
      const state = options.state ?? randomState()
      const pkce = yield* makePkce
      const request = yield* TokenProtocol.authorizeRequest({
        ...options,
        state,
        codeChallenge: pkce.challenge,
        agent: config.sdkAgent
      })
      yield* config.contract(options.contractId)
      const sourcesScope = options.sourcesScope === undefined
        ? undefined
        : yield* Calls.encodeJson(request.operation, "sourcesScope", options.sourcesScope)
      const answer = yield* execute(request, TokenProtocol.processAuthorizeResponse)
      const url = TokenProtocol.authorizeUrl(config.onboardUrl, answer.code, { ...options, sourcesScope })
      return { url, codeVerifier: pkce.verifier, state, session: answer.session }
    }).pipe(Effect.withSpan("DigimeClient.getAuthorizeUrl", spanOf(options.contractId)))

  const getReauthorizeUrl = (options: ReauthorizeOptions) =>
    Effect.gen(function*() {
      const state = options.state ?? randomState()
      const pkce = yield* makePkce
      const request = yield* TokenProtocol.referenceRequest({
        ...options,
        state,
        codeChallenge: pkce.challenge,
        agent: config.sdkAgent
      })
      const answer = yield* execute(request, TokenProtocol.processReferenceResponse)
      const url = TokenProtocol.reauthorizeUrl(config.onboardUrl, answer.code, options)
      return { url, codeVerifier: pkce.verifier, state, session: answer.session }
    }).pipe(Effect.withSpan("DigimeClient.getReauthorizeUrl", spanOf(options.contractId)))

  const call = <O, A, E>(
    name: string,
    build: (options: O) => Effect.Effect<Request, InvalidOptions>,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E, KeySet.KeySet>
  ) =>
  (options: O & { readonly contractId: string }) =>
    build(options).pipe(
      Effect.flatMap((request) => execute(request, process)),
      Effect.withSpan(`DigimeClient.${name}`, spanOf(options.contractId))
    )

  return {
    getAuthorizeUrl,
    exchangeCodeForToken: call(
      "exchangeCodeForToken",
      TokenProtocol.exchangeCodeRequest,
      TokenProtocol.processTokenResponse
    ),
    refreshToken: call("refreshToken", TokenProtocol.refreshTokenRequest, TokenProtocol.processTokenResponse),
    requestRefresh: call("refreshToken", TokenProtocol.refreshTokenRequest, TokenProtocol.processTokenEnvelope),
    verifyTokenAnswer: (operation, answer) =>
      TokenProtocol.verifyTokenAnswer(operation, answer).pipe(Effect.provideService(KeySet.KeySet, keySet)),
    getReauthorizeUrl,
    readSession: call(
      "readSession",
      (options: DataProtocol.Credentials & DataProtocol.PullOptions) =>
        DataProtocol.triggerRequest(options, config.sdkAgent),
      DataProtocol.processTriggerResponse
    ),
    readAccounts: call("readAccounts", DataProtocol.accountsRequest, DataProtocol.processAccountsResponse),
    deleteUser: call("deleteUser", DataProtocol.deleteUserRequest, DataProtocol.processDeleteUserResponse),
    execute
  } satisfies Service
})

const spanOf = (contractId: string) => ({ attributes: { "digime.contract_id": contractId } })

/**
 * The client with its `KeySet` (on the same `HttpClient` and `DigimeConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<DigimeClient, InvalidContractKey, DigimeConfig | Signer | HttpClient.HttpClient> = Layer
  .effect(DigimeClient, make).pipe(Layer.provide(KeySet.layer))
