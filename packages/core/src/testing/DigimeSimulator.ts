/**
 * A simulated digi.me API for tests: pre-authorization with PKCE, consent, code exchange, refresh
 * with rotation and replay detection, reauthorization, every data call (sessions, file lists,
 * encrypted file downloads, pushes, account management, discovery, contract details, the
 * portability report) and the JWKS, all held in memory and timed by the caller's `Clock` (so
 * `TestClock` drives every expiry).
 *
 * It is strict on purpose: the client assertion must be a PS512 JWT with a 64-byte salt and exactly
 * the claims digi.me's own SDK sends, each body must have the SDK's shape. A client that digi.me
 * would refuse is refused here first.
 *
 * The simulator is a pure request handler (`Service.handle`) plus an adapter (`httpClient`) that
 * serves it as an in-memory `HttpClient`.
 *
 * Where the protocol documents say "unknown", the simulator makes these choices:
 *
 * - **Sessions** (`POST permission-access/trigger`, and the `session` of pre-authorize, reauthorize
 *   and onboard answers) are bound to the user, the contract and an expiry (`sessionLifetime`,
 *   default 30 minutes; `expiry` in milliseconds since the epoch). A session of a pre-authorization
 *   answers `pending` until the user consents on its page (and stays `pending` after a Deny); a
 *   trigger session starts at once. An unknown session, or one of another user or contract, is
 *   `404 SessionNotFound`; an expired one `410 SessionExpired`.
 * - **Sync** (`GET permission-access/query/{sessionKey}`): each file-list answer is one poll. The
 *   first `syncPolls` polls (default 2) answer `running`, with every synced account `running` in
 *   `details` and the library's files appearing progressively (poll `i` of `K` lists the first
 *   `⌊n·i/(K+1)⌋` of `n` files, in the order they were added); the next poll and every later one
 *   answer the final state with the whole library: `completed`, or `partial` when an account needs
 *   reauthorization (its entry `{state: "partial", error: {code: "ServiceAuthorizationError",
 *   statusCode: 511, message, reauth: true}}`), the others `completed`. `sourceFetchFilter`
 *   narrows the accounts in `details`; the file list is always the whole library (the library keeps
 *   what earlier syncs brought). A session with `sourceFetch: false` is `completed` at once,
 *   without `details`. `scope` and `limits` are accepted and not applied. Files added later, or
 *   added again under the same name (their `updatedDate`, in ms, is then raised), show up in later
 *   polls.
 * - **Files** (`GET permission-access/query/{sessionKey}/{fileName}`): a file the session lists at its
 *   current poll can be downloaded; any other name is `404 FileNotFound`. The answer is `200`,
 *   `content-type: application/octet-stream`, `x-metadata` (base64url without padding of
 *   `{metadata, compression?}`), `last-modified` (HTTP date of `updatedDate`), and the envelope:
 *   256 bytes of a fresh AES-256 key wrapped with RSA-OAEP SHA-1 to the requesting contract's key
 *   (a key of another size gives a wrapped key of its own size), a fresh 16-byte IV, then
 *   AES-256-CBC with PKCS#7 of the content, compressed first when the file says so. `HEAD` on the
 *   same URL answers the same headers without a body. No `Content-Encoding`.
 * - **Access type**: a contract is a read contract (`accessType: "r"`, the default) or a write
 *   contract (`"w"`). A write contract cannot read the library (file list, file, file metadata) nor
 *   query sources, and a read contract cannot push: `403 InsufficientScope`.
 * - **Push** (`POST permission-access/import`) answers `201 {"status":"delivered"}`. Every account
 *   of the `FileDescriptor` must be one of the user's accounts (`400 ValidationErrors` otherwise).
 *   There is no size limit. The pushed file joins the library as a raw file named
 *   `push-{n}-{id}`, with lower-case raw metadata (`mimetype`, `accounts: [{accountid}]`, `appid`,
 *   `contractid`, `created` in ms, `reference`, `tags`), under its first account.
 *   Provider pushes (`POST permission-access/import/h:accountId/fhir/{stu3|3.0.2}`) answer
 *   `201 {"status":"delivered"}` too, are recorded and are never readable.
 * - **Accounts**: an unknown account (header `accountId`, or `POST reference` of type `accountId`)
 *   is `404 AccountNotFound`. Deleting an account deletes its files; revoking one (the page behind
 *   the `location` of `permission-access/revoke/h:accountId`) marks it as needing reauthorization.
 *   The consent of an onboard URL adds an account and redirects with `success=true` (and `state`
 *   when the call had one); reauthorizing an account clears its mark. Deleting the user empties
 *   the library.
 * - **Discovery**: a fixed, made-up catalogue (six sources, three countries, two platforms, three
 *   categories). `limit` defaults to 10 and `offset` to 0; `filter` fields and `search.name`
 *   (case-insensitive substring) are applied, `include` and `queryString` are ignored.
 * - **Report** (`GET export/medmij/report`): `from` and `to` are whole seconds with `from ≤ to`
 *   (`from=undefined` is `400 ValidationErrors`); the answer is `200 application/xml`.
 * - **Consent pages** are not served by `handle` unless `autoConsent` is set: then a `GET` of one
 *   answers `302` to the callback, as Allow would (`Service.consent`).
 * - **Statuses** of the data calls added to trigger (`202`), accounts (`202`) and delete user (`201`):
 *   `200` for the file list, files, revoke, discovery, sample datasets, contract details and the
 *   report; `201` for pushes, `POST reference` and account deletion.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { FileMetadata } from "../FileProtocol.js"
import type { UserAccessToken } from "../UserAccessToken.js"
import * as Consent from "./internal/simulator/consent.js"
import * as Faults from "./internal/simulator/faults.js"
import * as Handle from "./internal/simulator/handle.js"
import * as SimHttpClient from "./internal/simulator/httpClient.js"
import * as Library from "./internal/simulator/library.js"
import * as Setup from "./internal/simulator/setup.js"
import * as Signing from "./internal/simulator/signing.js"
import * as State from "./internal/simulator/state.js"

/**
 * The calls the simulator answers, relative to the base URL: `authorize` (`POST oauth/authorize`),
 * `token` (`POST oauth/token`), `reference` (`POST oauth/token/reference`, reauthorization and
 * onboarding), `trigger` (`POST permission-access/trigger`), `accounts` (`GET
 * permission-access/accounts`), `deleteUser` (`DELETE user`), `jwks` (`GET jwks/oauth`), `fileList`
 * (`GET permission-access/query/{sessionKey}`), `file` and `fileMetadata` (`GET` and `HEAD`
 * `permission-access/query/{sessionKey}/{fileName}`), `push` (`POST permission-access/import`),
 * `pushProvider` (`POST permission-access/import/h:accountId/fhir/{version}`), `accountReference`
 * (`POST reference`), `revokeAccount` (`GET permission-access/revoke/h:accountId`), `deleteAccount`
 * (`DELETE permission-access/service/h:accountId`), `discovery` (`POST discovery/{sources|countries|
 * platforms|categories}`), `sampleDatasets` (`GET permission-access/sample/datasets/{sourceId}`),
 * `contract` (`GET permission-access/contract`), `report` (`GET export/{serviceType}/report`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Endpoint = Schema.Literal(
  "authorize",
  "token",
  "reference",
  "trigger",
  "accounts",
  "deleteUser",
  "jwks",
  "fileList",
  "file",
  "fileMetadata",
  "push",
  "pushProvider",
  "accountReference",
  "revokeAccount",
  "deleteAccount",
  "discovery",
  "sampleDatasets",
  "contract",
  "report"
)

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
  /** Text (JSON, XML) or bytes (an encrypted file), served as is; empty for `HEAD` answers. */
  readonly body: string | Uint8Array
  /**
   * Set by a `DropResponse` fault: the request was processed, but the connection is cut before
   * the answer arrives. `httpClient` turns it into a transport error; a server would close the socket.
   */
  readonly dropConnection?: boolean | undefined
  /**
   * Set by a `DropBody` fault: the status, the headers and this many bytes of the body are sent,
   * then the connection is cut. `httpClient` makes the body's stream fail there; a server destroys
   * the socket.
   */
  readonly dropBodyAfter?: number | undefined
}

/**
 * What a contract may do: read the user's library (`"r"`) or push into it (`"w"`).
 *
 * @since 0.1.0
 * @category models
 */
export type AccessType = "r" | "w"

/**
 * A contract digi.me knows.
 *
 * @since 0.1.0
 * @category models
 */
export interface ContractOptions {
  readonly contractId: string
  /** Verifies its client assertions and `FileDescriptor`s, and receives file envelopes. SPKI or PKCS#1 PEM. */
  readonly publicKeyPem: string
  /** Default `"r"`: a read contract. */
  readonly accessType?: AccessType | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly applicationId: string
  /** The contracts digi.me knows, each with its public key and access type. */
  readonly contracts: ReadonlyArray<ContractOptions>
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
  /** How long a session key answers, from its issue. Default 30 minutes. */
  readonly sessionLifetime?: Duration.DurationInput | undefined
  /**
   * The number of `running` file-list answers of a session's sync before its final state
   * (`completed` or `partial`); files appear progressively across them. Default 2; 0 completes at
   * the first poll.
   */
  readonly syncPolls?: number | undefined
  /** Waits this long (on the caller's `Clock`) before answering each request. */
  readonly latency?: Duration.DurationInput | undefined
  /**
   * Answers every `nth` API request (the `nth`, `2 × nth`, …; counted over the known endpoints, JWKS
   * included, whatever their answer) with `status` and a `SimulatedFault` error body, without
   * processing it. `nth` is a positive integer, `status` 500 to 599.
   */
  readonly failEvery?: { readonly nth: number; readonly status: number } | undefined
  /**
   * Default `false`. With `true`, opening a consent page through `handle` (a `GET` of an onboarding
   * URL: `{onboardUrl}authorize?code=…`, `user-reauth`, `onboard`, `reauthorize` or a revoke
   * `location`) answers at once `302` with `Location` set to the callback URL, as Allow on the page
   * would (`consent(url)`): a headless client completes the journey by reading the redirect. An
   * unknown, used or expired code answers `400 InvalidConsentRequest`. Such a request is recorded
   * under the endpoint `consent`; it is not counted in `Stats` and no fault applies to it.
   */
  readonly autoConsent?: boolean | undefined
  /**
   * Default `false`. With `true`, every request `handle` answers is logged with `Effect.logInfo`,
   * by the fiber that handles it (so with its logger), e.g.
   * `POST /v1.7/oauth/token 406 ValidationErrors: assertion: the signature does not verify (PS512, 64-byte salt)`:
   * the method, the path (never the query; a session key cut to its first six characters), the
   * status and, for a refusal, digi.me's error code and the cause digi.me's answer does not give
   * (`RecordedRequest.problem`). The annotations `simulator.endpoint`, `simulator.status` and
   * `simulator.problem` carry the same. No token, code, verifier or client assertion is logged.
   */
  readonly log?: boolean | undefined
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
  /** `"consent"`: a consent page opened with `autoConsent`; `"unknown"`: no such path. */
  readonly endpoint: Endpoint | "consent" | "unknown"
  readonly method: string
  /** The URL's path, e.g. `/v1.7/oauth/token`. */
  readonly path: string
  /**
   * The decoded claims of the client assertion, when it could be decoded; the values of
   * `access_token`, `refresh_token`, `code` and `code_verifier` are replaced by `"<redacted>"`.
   */
  readonly claims: Readonly<Record<string, unknown>> | undefined
  readonly status: number
  /**
   * Why the request was refused, when it was (e.g. `"unexpected claim: iat"`, or `"assertion: the
   * signature does not verify (PS512, 64-byte salt)"` where digi.me only answers "Parameter
   * validation errors"). Never quotes a secret.
   */
  readonly problem?: string | undefined
}

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
 * Faults of file downloads, each taken by the next successful `file` answer (of `fileName`, when
 * given):
 *
 * - `CorruptEnvelope`: one byte flipped, the last of the block before the last ciphertext block (the
 *   IV's last byte when the content fits in one block), so that AES-CBC decryption always fails
 *   its PKCS#7 padding check.
 * - `TruncateEnvelope`: the envelope without its last 7 bytes (no longer a multiple of 16 bytes).
 * - `WrongKeyEnvelope`: the AES key is wrapped to another RSA key than the contract's.
 * - `DropBody`: the status, the headers and `after` bytes of the body (default half of it) are
 *   sent, then the connection is cut.
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
  Schema.TaggedStruct("Delay", { endpoint: Endpoint, delay: Faults.DelayInput }),
  Schema.TaggedStruct("CorruptEnvelope", { fileName: Schema.optional(Schema.String) }),
  Schema.TaggedStruct("TruncateEnvelope", { fileName: Schema.optional(Schema.String) }),
  Schema.TaggedStruct("WrongKeyEnvelope", { fileName: Schema.optional(Schema.String) }),
  Schema.TaggedStruct("DropBody", {
    fileName: Schema.optional(Schema.String),
    after: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
  }),
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
  /**
   * `"authorize"` for `{onboardUrl}authorize?code=…`, `"reauth"` for `{onboardUrl}user-reauth?code=…`,
   * `"onboard"` for `{onboardUrl}onboard?code=…` (a new service), `"reauthorize"` for
   * `{onboardUrl}reauthorize?code=…&accountRef=…` (one account), `"revoke"` for the `location` of a
   * revoke call (`{onboardUrl}revoke?code=…`).
   */
  readonly kind: "authorize" | "reauth" | "onboard" | "reauthorize" | "revoke"
  readonly applicationId: string
  readonly contractId: string
  /** The callback URL the browser is sent back to. */
  readonly redirectUri: string
  /** The account a `reauthorize` or `revoke` page is about. */
  readonly accountId?: string | undefined
}

/**
 * A file to put into a user's library (`Service.addFiles`).
 *
 * - `content` is served compressed with `compression` (`"gzip"`, with `CompressionStream`, or
 *   `"none"`, the default); a string is UTF-8.
 * - `compressed` is served as given, already compressed with `compression`: the way to serve
 *   brotli, which Node 20's `CompressionStream` cannot make.
 *
 * `metadata` defaults to mapped metadata `{objectCount: 1, objectType: "post", serviceGroup:
 * "social", serviceName: "simulated", schema: {standard: "digime", version: "1.0.0"}}`; `accountId`
 * to the user's first account. A name is 1 to 200 characters without `/`, `\`, `?`, `#`, `%` or
 * control characters. Adding a name again replaces the file and raises its `updatedDate`.
 *
 * @since 0.1.0
 * @category models
 */
export type FileInput =
  & {
    readonly name: string
    readonly metadata?: FileMetadata | undefined
    readonly accountId?: string | undefined
  }
  & (
    | { readonly content: Uint8Array | string; readonly compression?: "gzip" | "none" | undefined }
    | { readonly compressed: Uint8Array; readonly compression: "gzip" | "brotli" }
  )

/**
 * One of a user's accounts (sources), as the test sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccountInfo {
  readonly id: string
  readonly reference: string
  /** Its syncs end `partial` with `ServiceAuthorizationError` until it is reauthorized. */
  readonly reauthRequired: boolean
}

/**
 * Data pushed into a user's library (`POST permission-access/import`).
 *
 * @since 0.1.0
 * @category models
 */
export interface PushedFile {
  readonly contractId: string
  readonly digimeUserId: string
  /** The `metadata` of the `FileDescriptor`, as the application sent it. */
  readonly metadata: {
    readonly mimeType: string
    readonly accounts: ReadonlyArray<{ readonly accountId: string }>
    readonly reference?: ReadonlyArray<string> | undefined
    readonly tags?: ReadonlyArray<string> | undefined
  }
  readonly body: Uint8Array
  /** The name it is listed under in the library. */
  readonly fileName: string
}

/**
 * Data pushed to a provider (`POST permission-access/import/h:accountId/fhir/{version}`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ProviderPush {
  readonly contractId: string
  readonly digimeUserId: string
  readonly accountId: string
  readonly standard: "fhir"
  readonly version: "stu3" | "3.0.2"
  /** The JSON body, parsed. */
  readonly body: unknown
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
   * The user opens an onboard URL (`{onboardUrl}authorize?code=…`, `{onboardUrl}user-reauth?code=…`,
   * `{onboardUrl}onboard?code=…`, `{onboardUrl}reauthorize?code=…&accountRef=…` or a revoke
   * `location`) and clicks Allow (or Deny with `allow: false`). Returns the callback URL digi.me
   * redirects to: `success=true|false` (`result=success|failed` for a revoke), and what the kind of
   * page adds (see the module header).
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
   * `{applicationId}_{contractId}` are verified with this public key (SPKI or PKCS#1 PEM). A read
   * contract unless `accessType` says otherwise.
   */
  readonly registerContract: (
    contractId: string,
    publicKeyPem: string,
    options?: { readonly accessType?: AccessType | undefined }
  ) => Effect.Effect<void, SimulatorError>
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
   * no exchange. The lifetimes are the configured ones, from the `Clock`. With `digimeUserId`, the
   * token is of that existing user (a new family, no new account), as when an application links a
   * second contract to the same library.
   */
  readonly grant: (
    options: { readonly contractId: string; readonly digimeUserId?: string | undefined }
  ) => Effect.Effect<UserAccessToken, SimulatorError>
  /** Puts files into the user's library (see `FileInput`); fails on an unknown user or account, or a bad name. */
  readonly addFiles: (digimeUserId: string, files: ReadonlyArray<FileInput>) => Effect.Effect<void, SimulatorError>
  /** One more account (source) for the user, as onboarding a service makes. */
  readonly addAccount: (digimeUserId: string) => Effect.Effect<AccountInfo, SimulatorError>
  /** The user's accounts. */
  readonly accountsOf: (digimeUserId: string) => Effect.Effect<ReadonlyArray<AccountInfo>, SimulatorError>
  /**
   * Marks the account as needing the user's re-consent (or, with `required: false`, clears the
   * mark): its syncs end `partial` with `ServiceAuthorizationError` and it is listed with
   * `accessTokenStatus.authorized: false`.
   */
  readonly requireReauth: (
    digimeUserId: string,
    accountId: string,
    required?: boolean
  ) => Effect.Effect<void, SimulatorError>
  /** Every library push received, oldest first. */
  readonly pushed: Effect.Effect<ReadonlyArray<PushedFile>>
  /** Every provider push received, oldest first. */
  readonly providerPushes: Effect.Effect<ReadonlyArray<ProviderPush>>
}

/**
 * @since 0.1.0
 * @category services
 */
export class DigimeSimulator extends Context.Tag("@digime-effect/core/testing/DigimeSimulator")<
  DigimeSimulator,
  Service
>() {}

const misuse = <A>(effect: Effect.Effect<A, string>): Effect.Effect<A, SimulatorError> =>
  Effect.mapError(effect, (reason) => new SimulatorError({ reason }))

/**
 * Makes a simulator with its own signing key and empty state.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service> =>
  Effect.map(Setup.make(options, Endpoint.literals), (state): Service => ({
    baseUrl: state.config.baseUrl,
    onboardUrl: state.config.onboardUrl,
    jwksUrl: state.config.jwksUrl,
    applicationId: state.config.applicationId,
    handle: (request) => Handle.handle(state, request),
    consent: (onboardingUrl, consentOptions) => misuse(Consent.consent(state, onboardingUrl, consentOptions)),
    describeConsent: (onboardingUrl) => misuse(Consent.describeConsent(state, onboardingUrl)),
    registerContract: (contractId, publicKeyPem, contractOptions) =>
      misuse(Consent.registerContract(state, contractId, publicKeyPem, contractOptions?.accessType ?? "r")),
    stats: Handle.stats(state),
    requests: Handle.requests(state),
    revokeAccessToken: (accessToken) => State.revokeAccessToken(state, accessToken),
    revokeUser: (digimeUserId) => State.revokeUser(state, digimeUserId),
    rotateSigningKey: Signing.rotateSigningKey(state),
    injectFault: (fault) => Faults.injectFault(state, fault),
    grant: ({ contractId, digimeUserId }) => misuse(Consent.grant(state, contractId, digimeUserId)),
    addFiles: (digimeUserId, files) => misuse(Library.addFiles(state, digimeUserId, files)),
    addAccount: (digimeUserId) => misuse(Library.addAccountOf(state, digimeUserId)),
    accountsOf: (digimeUserId) => misuse(Library.accountsOf(state, digimeUserId)),
    requireReauth: (digimeUserId, accountId, required) =>
      misuse(Library.requireReauth(state, digimeUserId, accountId, required ?? true)),
    pushed: Library.pushed(state),
    providerPushes: Library.providerPushes(state)
  }))

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
