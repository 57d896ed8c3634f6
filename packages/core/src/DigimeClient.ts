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
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as AccountsProtocol from "./AccountsProtocol.js"
import * as DataProtocol from "./DataProtocol.js"
import { DigimeConfig } from "./DigimeConfig.js"
import { ResponseError } from "./DigimeError.js"
import type { RequestError } from "./DigimeError.js"
import type {
  AccessTokenRejected,
  ApiError,
  FileDecryptionError,
  InvalidContractKey,
  InvalidOptions,
  UnknownContract,
  VerificationError
} from "./DigimeError.js"
import type { Request, StreamedResponse } from "./DigimeRequest.js"
import * as DiscoveryProtocol from "./DiscoveryProtocol.js"
import { compressionOf, FileCipher } from "./FileCipher.js"
import * as FileProtocol from "./FileProtocol.js"
import * as Calls from "./internal/calls.js"
import { base64url, randomBytes, sha256 } from "./internal/encoding.js"
import * as Exchange from "./internal/exchange.js"
import * as Tracing from "./internal/tracing.js"
import { collectCapped } from "./internal/transport.js"
import * as KeySet from "./KeySet.js"
import * as PushProtocol from "./PushProtocol.js"
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
 * A file of the user's library: what its headers say, and its content decrypted as it arrives.
 * `data` can be run once; a cut connection or a pause longer than the request timeout fails it
 * with `RequestError`, a file that cannot be decrypted with `FileDecryptionError`.
 *
 * @since 0.2.0
 * @category models
 */
export interface File extends FileProtocol.FileHeaders {
  readonly data: Stream.Stream<Uint8Array, RequestError | FileDecryptionError | InvalidContractKey>
}

/**
 * @since 0.2.0
 * @category models
 */
export interface FileOptions extends DataProtocol.Credentials {
  readonly sessionKey: string
  readonly fileName: string
}

/**
 * A file of the user's library, read whole: what its headers say, and its content decrypted.
 *
 * @since 0.4.0
 * @category models
 */
export interface FileContent extends FileProtocol.FileHeaders {
  readonly data: Uint8Array
}

/**
 * @since 0.4.0
 * @category models
 */
export interface FileContentOptions extends FileOptions {
  /** The most content to hold (64 MiB by default): a longer file fails with `ResponseError`. */
  readonly maxBytes?: number | undefined
}

/**
 * Failures of reading a file whole: those of the call, and those of its content.
 *
 * @since 0.4.0
 * @category errors
 */
export type FileContentError = DataCallError | RequestError | FileDecryptionError | InvalidContractKey

/**
 * Where to send the user's browser to onboard another service, or to reauthorize one account,
 * and the read session that comes with it.
 *
 * @since 0.2.0
 * @category models
 */
export interface AccountUrl {
  readonly url: string
  readonly session: DataProtocol.Session | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface OnboardServiceOptions
  extends
    DataProtocol.Credentials,
    AccountsProtocol.OnboardOptions,
    Omit<AccountsProtocol.OnboardUrlOptions, "sourcesScope">
{
  /** Any JSON: which sources the user may pick (sent double-encoded, as digi.me reads it). */
  readonly sourcesScope?: unknown
}

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
  /** The state of a read session's sync and its files so far (`GET permission-access/query/{sessionKey}`). */
  readonly readFileList: (
    options: DataProtocol.Credentials & { readonly sessionKey: string }
  ) => Effect.Effect<FileProtocol.FileList, DataCallError>
  /**
   * One file, decrypted with the contract's key as it streams: memory does not grow with its size.
   * The call succeeds once digi.me has answered with the file's headers; its `data` follows.
   */
  readonly readFile: (options: FileOptions) => Effect.Effect<File, DataCallError>
  /**
   * One file, downloaded and decrypted whole, its content in memory (at most `maxBytes`). A file
   * that announces a length of at most 4 MiB is read in one go and decrypted without a stream,
   * which costs less per file than `readFile`; a longer one streams as with `readFile`.
   */
  readonly readFileBytes: (options: FileContentOptions) => Effect.Effect<FileContent, FileContentError>
  /** A file's metadata without its content (`HEAD`). */
  readonly readFileMetadata: (options: FileOptions) => Effect.Effect<FileProtocol.FileHeaders, DataCallError>
  /**
   * Pushes bytes, or a stream of them, into the user's library. A stream is run once per attempt
   * (a second attempt follows a refused access token inside `withAutoRefresh`): give one that can
   * run again, such as a file read. Its own failure is the push's failure, as it is.
   */
  readonly pushData: <E = never>(
    options: DataProtocol.Credentials & {
      readonly fileDescriptor: PushProtocol.FileDescriptor
      readonly data: Uint8Array | Stream.Stream<Uint8Array, E>
    }
  ) => Effect.Effect<void, DataCallError | E>
  /** Pushes a FHIR document to the provider behind one of the user's accounts (MedMij). */
  readonly pushToProvider: (
    options: DataProtocol.Credentials & {
      readonly accountId: string
      readonly version: "stu3" | "3.0.2"
      readonly data: Readonly<Record<string, unknown>>
    }
  ) => Effect.Effect<void, DataCallError>
  /**
   * Onboards another service into the user's library: the URL to send the browser to. digi.me
   * then calls `callbackUrl` with `success` and `errorCode`.
   */
  readonly getOnboardServiceUrl: (
    options: OnboardServiceOptions
  ) => Effect.Effect<AccountUrl, TokenCallError | AccessTokenRejected>
  /**
   * Reauthorizes one account of the user (one whose sync ended with `reauth`, see
   * `Files.Progress.needsReauthorization`): the URL to send the browser to.
   */
  readonly getReauthorizeAccountUrl: (
    options: DataProtocol.Credentials & {
      readonly accountId: string
      readonly callbackUrl: string
      readonly locale?: string | undefined
    }
  ) => Effect.Effect<AccountUrl, TokenCallError | AccessTokenRejected>
  /** Where to send the browser to revoke an account's permission (MedMij); it comes back to `redirectUri`. */
  readonly getRevokeAccountPermissionUrl: (
    options: DataProtocol.Credentials & { readonly accountId: string; readonly redirectUri: string }
  ) => Effect.Effect<string, DataCallError>
  /** Deletes one account (source) from the user's library. */
  readonly deleteAccount: (
    options: DataProtocol.Credentials & { readonly accountId: string }
  ) => Effect.Effect<void, DataCallError>
  /** The sources a user can onboard (approved pull sources unless the query says otherwise). */
  readonly querySources: (
    options: DiscoveryProtocol.ContractOptions & DiscoveryProtocol.SourcesQuery
  ) => Effect.Effect<DiscoveryProtocol.SourcesPage, RequestFailure | InvalidOptions>
  readonly queryCountries: (
    options: DiscoveryProtocol.CatalogueOptions
  ) => Effect.Effect<ReadonlyArray<DiscoveryProtocol.Country>, RequestFailure | InvalidOptions>
  readonly queryPlatforms: (
    options: DiscoveryProtocol.CatalogueOptions
  ) => Effect.Effect<ReadonlyArray<DiscoveryProtocol.Platform>, RequestFailure | InvalidOptions>
  readonly queryCategories: (
    options: DiscoveryProtocol.CatalogueOptions
  ) => Effect.Effect<ReadonlyArray<DiscoveryProtocol.Category>, RequestFailure | InvalidOptions>
  /** The sample datasets of a source, by id (for `sampleDataSetId` of an onboarding). */
  readonly getServiceSampleDataSets: (
    options: DiscoveryProtocol.ContractOptions & { readonly sourceId: number | string }
  ) => Effect.Effect<DiscoveryProtocol.SampleDataSets, RequestFailure | InvalidOptions>
  /** The contract as digi.me knows it. */
  readonly getContractDetails: (
    options: DiscoveryProtocol.ContractOptions
  ) => Effect.Effect<DiscoveryProtocol.ContractDetails, RequestFailure | InvalidOptions>
  /** The user's portability report (MedMij, XML text). */
  readonly getPortabilityReport: (
    options: DataProtocol.Credentials & {
      readonly from?: number | undefined
      readonly to?: number | undefined
    }
  ) => Effect.Effect<string, DataCallError>
  /**
   * Signs and sends a request built by a request builder and hands the answer to `process` (its
   * response processor): the one way every call above is made, open to calls this library does
   * not wrap yet.
   */
  readonly execute: <A, E, R>(
    request: Request,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | RequestFailure, Exclude<R, KeySet.KeySet>>
  /**
   * Like `execute`, for an answer whose body is handed over as it arrives (a file): a success
   * answer goes to `process` with its body unread; any other answer is read (within
   * `maxResponseBytes`) and fails with `ApiError`, or `AccessTokenRejected` for `401 InvalidToken`.
   */
  readonly executeStreamed: <A, E, R>(
    request: Request,
    process: (response: StreamedResponse, request: Request) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | RequestFailure | AccessTokenRejected, R>
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

const defaultMaxFileBytes = 64 * 1024 * 1024

// The longest body `readFileBytes` reads in one go: a longer one streams, so that the encrypted
// body and its content are not both in memory whole.
const inOneGoBytes = 4 * 1024 * 1024

// The most an envelope adds to its content: the wrapped key, the IV and a block of padding.
const envelopeBytes = 256 + 16 + 16

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
  DigimeConfig | Signer | KeySet.KeySet | FileCipher | HttpClient.HttpClient
> = Effect.gen(function*() {
  const config = yield* DigimeConfig
  const signer = yield* Signer
  const cipher = yield* FileCipher
  yield* Effect.forEach(config.contracts.values(), signer.prepare, { discard: true })
  const keySet = yield* KeySet.KeySet
  const exchange = Exchange.make(config, signer, yield* HttpClient.HttpClient)

  const execute = <A, E, R>(
    request: Request,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | RequestFailure, Exclude<R, KeySet.KeySet>> =>
    exchange(request, false).pipe(
      Effect.flatMap((answer) => process(answer.response as HttpClientResponse.HttpClientResponse, request)),
      Effect.provideService(KeySet.KeySet, keySet)
    ) as Effect.Effect<A, E | RequestFailure, Exclude<R, KeySet.KeySet>>

  const executeStreamed = <A, E, R>(
    request: Request,
    process: (response: StreamedResponse, request: Request) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | RequestFailure | AccessTokenRejected, R> =>
    Effect.flatMap(
      exchange(request, true),
      (answer): Effect.Effect<A, E | ApiError | AccessTokenRejected, R> =>
        answer._tag === "Streamed" ? process(answer.response, request) : Calls.failure(request, answer.response, true)
    )

  const readFile = (options: FileOptions): Effect.Effect<File, DataCallError> =>
    Effect.gen(function*() {
      const request = yield* FileProtocol.fileRequest(options)
      const contract = yield* config.contract(options.contractId)
      const file = yield* executeStreamed(
        request,
        (response, request) => FileProtocol.processFileResponse(response, request, options.fileName)
      )
      const { body, ...headers } = file
      return {
        ...headers,
        data: body.pipe(cipher.decrypt({ contract, fileName: options.fileName, compression: file.compression }))
      }
    }).pipe(Tracing.withSpan("DigimeClient.readFile", spanOf(options.contractId)))

  const readFileBytes = (options: FileContentOptions): Effect.Effect<FileContent, FileContentError> =>
    Effect.gen(function*() {
      const request = yield* FileProtocol.fileRequest(options)
      const contract = yield* config.contract(options.contractId)
      const limit = options.maxBytes ?? defaultMaxFileBytes
      const file = yield* executeStreamed(
        request,
        (response, request) => FileProtocol.processFileResponse(response, request, options.fileName)
      )
      const { body, whole, ...headers } = file
      const decryptOptions = { contract, fileName: options.fileName, compression: file.compression }
      // Without compression, a body longer than the envelope of `limit` bytes of content cannot fit:
      // it streams, and fails as soon as the limit is passed.
      const inOneGo = whole === undefined ? Option.none() : yield* whole(
        Option.getOrUndefined(compressionOf(file.compression)) === "none"
          ? Math.min(inOneGoBytes, limit + envelopeBytes)
          : inOneGoBytes
      )
      const tooLarge = () =>
        Effect.fail(
          new ResponseError({
            operation: request.operation,
            status: 200,
            description: `the file ${options.fileName} is longer than ${limit} bytes: read it as a stream (readFile)`
          })
        )
      const data = yield* (Option.isSome(inOneGo)
        ? Effect.catchTag(
          cipher.decryptBytes({ ...decryptOptions, maxBytes: limit })(inOneGo.value),
          "ContentTooLarge",
          tooLarge
        )
        : Effect.catchTag(collectCapped(body.pipe(cipher.decrypt(decryptOptions)), limit), "BodyTooLarge", tooLarge))
      return { ...headers, data }
    }).pipe(Tracing.withSpan("DigimeClient.readFileBytes", spanOf(options.contractId)))

  // A pushed stream's own failure is the push's failure, as it is (the platform would only see a
  // body that could not be sent).
  const pushData = <E>(
    options: DataProtocol.Credentials & {
      readonly fileDescriptor: PushProtocol.FileDescriptor
      readonly data: Uint8Array | Stream.Stream<Uint8Array, E>
    }
  ): Effect.Effect<void, DataCallError | E> =>
    Effect.suspend(() => {
      let failed = Option.none<E>()
      const data = options.data instanceof Uint8Array ? options.data : options.data.pipe(
        Stream.tapError((error) =>
          Effect.sync(() => {
            failed = Option.some(error)
          })
        )
      )
      return PushProtocol.pushRequest({ ...options, data }).pipe(
        Effect.flatMap((request) => execute(request, PushProtocol.processPushResponse)),
        Effect.catchAll((error): Effect.Effect<never, DataCallError | E> =>
          Option.match(failed, { onNone: () => Effect.fail(error), onSome: Effect.fail })
        ),
        Tracing.withSpan("DigimeClient.pushData", spanOf(options.contractId))
      )
    })

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
    }).pipe(Tracing.withSpan("DigimeClient.getAuthorizeUrl", spanOf(options.contractId)))

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
    }).pipe(Tracing.withSpan("DigimeClient.getReauthorizeUrl", spanOf(options.contractId)))

  // A call whose answer is read without the key set (every data call): no service to provide, which
  // would cost every call a context of its own.
  const call = <O, A, E>(
    name: string,
    build: (options: O) => Effect.Effect<Request, InvalidOptions>,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E>
  ) => {
    const spanName = `DigimeClient.${name}`
    return (options: O & { readonly contractId: string }) =>
      build(options).pipe(
        Effect.flatMap((request) =>
          Effect.flatMap(
            exchange(request, false),
            (answer) => process(answer.response as HttpClientResponse.HttpClientResponse, request)
          )
        ),
        Tracing.withSpan(spanName, spanOf(options.contractId))
      )
  }

  // A call whose answer digi.me signs: its processor reads it with the client's key set.
  const verifiedCall = <O, A, E>(
    name: string,
    build: (options: O) => Effect.Effect<Request, InvalidOptions>,
    process: (response: HttpClientResponse.HttpClientResponse, request: Request) => Effect.Effect<A, E, KeySet.KeySet>
  ) =>
    call(name, build, (response, request) => Effect.provideService(process(response, request), KeySet.KeySet, keySet))

  return {
    getAuthorizeUrl,
    exchangeCodeForToken: verifiedCall(
      "exchangeCodeForToken",
      TokenProtocol.exchangeCodeRequest,
      TokenProtocol.processTokenResponse
    ),
    refreshToken: verifiedCall("refreshToken", TokenProtocol.refreshTokenRequest, TokenProtocol.processTokenResponse),
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
    readFileList: call("readFileList", FileProtocol.fileListRequest, FileProtocol.processFileListResponse),
    readFile,
    readFileBytes,
    readFileMetadata: (options: FileOptions) =>
      call(
        "readFileMetadata",
        FileProtocol.fileMetadataRequest,
        (response, request) => FileProtocol.processFileMetadataResponse(response, request, options.fileName)
      )(options),
    pushData,
    pushToProvider: call("pushToProvider", PushProtocol.pushProviderRequest, PushProtocol.processPushResponse),
    getPortabilityReport: call(
      "getPortabilityReport",
      DataProtocol.portabilityReportRequest,
      DataProtocol.processPortabilityReportResponse
    ),
    getOnboardServiceUrl: (options: OnboardServiceOptions) =>
      Effect.gen(function*() {
        const request = yield* AccountsProtocol.onboardRequest(options, config.sdkAgent)
        const sourcesScope = options.sourcesScope === undefined
          ? undefined
          : yield* Calls.encodeJson(request.operation, "sourcesScope", options.sourcesScope)
        const answer = yield* execute(request, AccountsProtocol.processOnboardResponse)
        return {
          url: AccountsProtocol.onboardUrl(config.onboardUrl, answer.code, { ...options, sourcesScope }),
          session: answer.session
        }
      }).pipe(Tracing.withSpan("DigimeClient.getOnboardServiceUrl", spanOf(options.contractId))),
    getReauthorizeAccountUrl: (options) =>
      Effect.gen(function*() {
        const reference = yield* AccountsProtocol.accountReferenceRequest(options)
        const request = yield* AccountsProtocol.reauthorizeAccountRequest(options, config.sdkAgent)
        const answer = yield* execute(request, AccountsProtocol.processReauthorizeAccountResponse)
        const accountRef = yield* execute(reference, AccountsProtocol.processAccountReferenceResponse)
        return {
          url: AccountsProtocol.reauthorizeAccountUrl(config.onboardUrl, answer.code, accountRef, options.locale),
          session: answer.session
        }
      }).pipe(Tracing.withSpan("DigimeClient.getReauthorizeAccountUrl", spanOf(options.contractId))),
    getRevokeAccountPermissionUrl: call(
      "getRevokeAccountPermissionUrl",
      AccountsProtocol.revokeAccountPermissionRequest,
      AccountsProtocol.processRevokeAccountPermissionResponse
    ),
    deleteAccount: call(
      "deleteAccount",
      AccountsProtocol.deleteAccountRequest,
      AccountsProtocol.processDeleteAccountResponse
    ),
    querySources: call("querySources", DiscoveryProtocol.sourcesRequest, DiscoveryProtocol.processSourcesResponse),
    queryCountries: call(
      "queryCountries",
      DiscoveryProtocol.countriesRequest,
      DiscoveryProtocol.processCountriesResponse
    ),
    queryPlatforms: call(
      "queryPlatforms",
      DiscoveryProtocol.platformsRequest,
      DiscoveryProtocol.processPlatformsResponse
    ),
    queryCategories: call(
      "queryCategories",
      DiscoveryProtocol.categoriesRequest,
      DiscoveryProtocol.processCategoriesResponse
    ),
    getServiceSampleDataSets: call(
      "getServiceSampleDataSets",
      DiscoveryProtocol.sampleDataSetsRequest,
      DiscoveryProtocol.processSampleDataSetsResponse
    ),
    getContractDetails: call(
      "getContractDetails",
      DiscoveryProtocol.contractDetailsRequest,
      DiscoveryProtocol.processContractDetailsResponse
    ),
    execute,
    executeStreamed
  } satisfies Service
})

// A function: the options are made only when a span is (see `Tracing.withSpan`).
const spanOf = (contractId: string) => () => ({ attributes: { "digime.contract_id": contractId } })

/**
 * The client with its `KeySet` (on the same `HttpClient` and `DigimeConfig`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  DigimeClient,
  InvalidContractKey,
  DigimeConfig | Signer | FileCipher | HttpClient.HttpClient
> = Layer.effect(DigimeClient, make).pipe(Layer.provide(KeySet.layer))
