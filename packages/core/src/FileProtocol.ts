/**
 * Reading a read session's files: the file list (the sync's state, each account's part, the files
 * ready), a file (its `x-metadata` header and its body as it arrives, still encrypted: `FileCipher`
 * decrypts it) and a file's metadata alone. Each call as a request builder and a response
 * processor, made with the user's access token (`DataProtocol.Credentials`).
 *
 * @since 0.2.0
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { Credentials } from "./DataProtocol.js"
import { ResponseError } from "./DigimeError.js"
import type { AccessTokenRejected, ApiError, InvalidOptions, RequestError } from "./DigimeError.js"
import type { Request, StreamedResponse } from "./DigimeRequest.js"
import * as Calls from "./internal/calls.js"
import { decodeUtf8, fromBase64url } from "./internal/encoding.js"
import * as Protocol from "./internal/protocol.js"

// ---------------------------------------------------------------------------------------------
// The file list (data protocol §3)
// ---------------------------------------------------------------------------------------------

/**
 * The state of a read session's sync: `pending` (no permission yet), `running` (files may already
 * be listed, more may come), `partial` (over, at least one account failed) or `completed` (over,
 * the list is final).
 *
 * @since 0.2.0
 * @category schemas
 */
export const SyncState = Schema.Literal("pending", "running", "partial", "completed")

/**
 * @since 0.2.0
 * @category models
 */
export type SyncState = typeof SyncState.Type

/**
 * Whether a sync state is final: the file list will not change any more.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isFinal = (state: SyncState): boolean => state === "partial" || state === "completed"

/**
 * Why an account's sync did not complete. digi.me's material shows three shapes of it; each is
 * read into this one. `reauth`: the user must reauthorize this account (`ServiceAuthorizationError`,
 * status 511), which `AccountsProtocol`'s account reauthorization starts.
 *
 * @since 0.2.0
 * @category models
 */
export interface AccountError {
  readonly code: string
  readonly statusCode: number | undefined
  readonly message: string | undefined
  readonly reauth: boolean
  /** Seconds, as digi.me sends it. */
  readonly retryAfter: number | undefined
  readonly objectTypeErrors: ReadonlyArray<{
    readonly objectType: number
    readonly code: string
    readonly statusCode: number | undefined
    readonly message: string | undefined
  }>
}

/**
 * One account's part of a sync. Its `state` is one of `SyncState` as far as digi.me documents it;
 * any other value is passed on as sent rather than refused.
 *
 * @since 0.2.0
 * @category models
 */
export interface AccountSync {
  readonly state: SyncState | (string & {})
  readonly error: AccountError | undefined
}

/**
 * One file of a read session, as the file list names it. `updatedDate` is in milliseconds since
 * the epoch; a file listed again with a later one has changed.
 *
 * @since 0.2.0
 * @category schemas
 */
export const FileInfo = Schema.Struct({
  name: Schema.NonEmptyString,
  updatedDate: Schema.Number,
  schema: Schema.optional(Schema.Struct({
    standard: Schema.String,
    version: Schema.String,
    id: Schema.optional(Schema.String)
  })),
  objectCount: Schema.optional(Schema.Number),
  objectType: Schema.optional(Schema.String),
  objectVersion: Schema.optional(Schema.String),
  serviceGroup: Schema.optional(Schema.String),
  serviceName: Schema.optional(Schema.String)
})

/**
 * @since 0.2.0
 * @category models
 */
export type FileInfo = typeof FileInfo.Type

/**
 * A read session's file list: the sync's state, each account's part of it, and the files ready.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileList {
  readonly state: SyncState
  readonly accounts: Readonly<Record<string, AccountSync>>
  readonly files: ReadonlyArray<FileInfo>
}

const WirePartialError = Schema.Struct({
  code: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Union(Schema.String, Schema.Number)),
  statusCode: Schema.optional(Schema.Number),
  message: Schema.optional(Schema.String),
  reauth: Schema.optional(Schema.Boolean),
  retryAfter: Schema.optional(Schema.Number),
  error: Schema.optional(Schema.Struct({
    code: Schema.optional(Schema.String),
    message: Schema.optional(Schema.String),
    reauth: Schema.optional(Schema.Boolean)
  })),
  objectTypeErrors: Schema.optional(Schema.Array(Schema.Struct({
    objectType: Schema.Number,
    error: Schema.Struct({
      code: Schema.String,
      message: Schema.optional(Schema.String),
      statusCode: Schema.optional(Schema.Number)
    })
  })))
})

const WireFileList = Schema.Struct({
  status: Schema.Struct({
    state: SyncState,
    details: Schema.optional(Schema.Record({
      key: Schema.String,
      value: Schema.Struct({ state: Schema.String, error: Schema.optional(WirePartialError) })
    }))
  }),
  fileList: Schema.optional(Schema.NullOr(Schema.Array(FileInfo)))
})

const accountErrorOf = (wire: typeof WirePartialError.Type): AccountError => {
  const code = wire.code ?? wire.error?.code ?? (wire.status === undefined ? "Unknown" : String(wire.status))
  return {
    code,
    statusCode: wire.statusCode,
    message: wire.message ?? wire.error?.message,
    reauth: wire.reauth ?? wire.error?.reauth ?? (code === "ServiceAuthorizationError" || wire.statusCode === 511),
    retryAfter: wire.retryAfter,
    objectTypeErrors: (wire.objectTypeErrors ?? []).map((entry) => ({
      objectType: entry.objectType,
      code: entry.error.code,
      statusCode: entry.error.statusCode,
      message: entry.error.message
    }))
  }
}

const sessionKeyOf = (operation: string, sessionKey: string) => Calls.pathSegment(operation, "sessionKey", sessionKey)

/**
 * `GET permission-access/query/{sessionKey}`: the state of the session's sync and the files ready
 * so far. Repeatable.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fileListRequest = (
  options: Credentials & { readonly sessionKey: string }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.flatMap(
    sessionKeyOf("readFileList", options.sessionKey),
    (session) =>
      Calls.userRequest("readFileList", options, HttpClientRequest.get(`permission-access/query/${session}`), true)
  )

/**
 * Reads the answer to `fileListRequest`. An account's error is read whatever its shape, and a
 * missing file list is an empty one.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processFileListResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<FileList, ApiError | AccessTokenRejected | ResponseError> =>
  Effect.map(Calls.decodeSuccess(request, response, WireFileList, true), (wire) => {
    const accounts: Record<string, AccountSync> = {}
    for (const [id, entry] of Object.entries(wire.status.details ?? {})) {
      accounts[id] = { state: entry.state, error: entry.error === undefined ? undefined : accountErrorOf(entry.error) }
    }
    return { state: wire.status.state, accounts, files: wire.fileList ?? [] }
  })

// ---------------------------------------------------------------------------------------------
// Files (data protocol §4)
// ---------------------------------------------------------------------------------------------

/**
 * The metadata of a file synced from a service (mapped data).
 *
 * @since 0.2.0
 * @category schemas
 */
export const MappedFileMetadata = Schema.Struct({
  objectCount: Schema.Number,
  objectType: Schema.String,
  serviceGroup: Schema.String,
  serviceName: Schema.String,
  schema: Schema.Struct({ standard: Schema.String, version: Schema.String, id: Schema.optional(Schema.String) })
})

/**
 * The metadata of a file an application pushed (raw data). digi.me writes its keys in lower case
 * (`mimetype`, `accountid`), unlike the push's `FileDescriptor`; other keys are kept.
 *
 * @since 0.2.0
 * @category schemas
 */
export const RawFileMetadata = Schema.Struct(
  {
    mimetype: Schema.String,
    accounts: Schema.Array(Schema.Struct({ accountid: Schema.String })),
    appid: Schema.optional(Schema.String),
    contractid: Schema.optional(Schema.String),
    partnerid: Schema.optional(Schema.String),
    created: Schema.optional(Schema.Number),
    objecttypes: Schema.optional(Schema.Array(Schema.Struct({
      name: Schema.String,
      references: Schema.optional(Schema.Array(Schema.String))
    }))),
    reference: Schema.optional(Schema.Array(Schema.String)),
    tags: Schema.optional(Schema.Array(Schema.String)),
    servicegroups: Schema.optional(Schema.Array(Schema.Number))
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)

/**
 * @since 0.2.0
 * @category schemas
 */
export const FileMetadata = Schema.Union(MappedFileMetadata, RawFileMetadata)

/**
 * @since 0.2.0
 * @category models
 */
export type FileMetadata = typeof FileMetadata.Type

const XMetadata = Schema.Struct({ metadata: FileMetadata, compression: Schema.optional(Schema.String) })

/**
 * What the headers of a file's answer say of it.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileHeaders {
  readonly fileName: string
  readonly metadata: FileMetadata
  /** As sent in `x-metadata`: `gzip`, `brotli`, or absent when the content is not compressed. */
  readonly compression: string | undefined
  /** The `last-modified` header as sent, when there is one. */
  readonly lastModified: string | undefined
}

/**
 * A file's answer: its headers, and its body still encrypted, as it arrives.
 *
 * @since 0.2.0
 * @category models
 */
export interface EncryptedFile extends FileHeaders {
  readonly body: Stream.Stream<Uint8Array, RequestError>
  /** The body in one go instead of `body`, when the client can: see `StreamedResponse.whole`. */
  readonly whole?: StreamedResponse["whole"]
}

// `x-metadata`: base64url JSON, padded or not (standard base64 read too).
const readXMetadata = (value: string | undefined): Either.Either<typeof XMetadata.Type, string> => {
  if (value === undefined || value.trim() === "") return Either.left("the x-metadata header is missing")
  const bytes = fromBase64url(value.trim().replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_"))
  const text = bytes === undefined ? undefined : decodeUtf8(bytes)
  if (text === undefined) return Either.left("the x-metadata header is not base64url UTF-8")
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return Either.left("the x-metadata header is not JSON")
  }
  return Either.mapLeft(
    Schema.decodeUnknownEither(XMetadata)(json),
    (error) => `x-metadata: ${Protocol.describeParseError(error)}`
  )
}

const fileHeadersOf = (
  request: Request,
  status: number,
  headers: Readonly<Record<string, string>>,
  fileName: string
): Effect.Effect<FileHeaders, ResponseError> =>
  Either.match(readXMetadata(headers["x-metadata"]), {
    onLeft: (description) => Effect.fail(new ResponseError({ operation: request.operation, status, description })),
    onRight: (header) =>
      Effect.succeed({
        fileName,
        metadata: header.metadata,
        compression: header.compression,
        lastModified: headers["last-modified"]
      })
  })

const fileRequestOf = (
  operation: string,
  method: "GET" | "HEAD",
  options: Credentials & { readonly sessionKey: string; readonly fileName: string },
  accept: string
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const session = yield* sessionKeyOf(operation, options.sessionKey)
    const file = yield* Calls.pathSegment(operation, "fileName", options.fileName)
    const url = `permission-access/query/${session}/${file}`
    return yield* Calls.userRequest(
      operation,
      options,
      (method === "GET" ? HttpClientRequest.get(url) : HttpClientRequest.head(url)).pipe(
        HttpClientRequest.setHeader("accept", accept)
      ),
      true
    )
  })

/**
 * `GET permission-access/query/{sessionKey}/{fileName}`: one file, encrypted. Repeatable. Its
 * answer is streamed: see `DigimeClient.executeStreamed` and `processFileResponse`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fileRequest = (
  options: Credentials & { readonly sessionKey: string; readonly fileName: string }
): Effect.Effect<Request, InvalidOptions> => fileRequestOf("readFile", "GET", options, "application/octet-stream")

/**
 * Reads the success answer to `fileRequest`: the `x-metadata` header (required) and the body as
 * it arrives, still encrypted (`FileCipher` decrypts it).
 *
 * @since 0.2.0
 * @category constructors
 */
export const processFileResponse = (
  response: StreamedResponse,
  request: Request,
  fileName: string
): Effect.Effect<EncryptedFile, ResponseError> =>
  Effect.map(
    fileHeadersOf(request, response.status, response.headers, fileName),
    (headers) =>
      response.whole === undefined
        ? { ...headers, body: response.body }
        : { ...headers, body: response.body, whole: response.whole }
  )

/**
 * `HEAD` on a file's URL: its metadata without its content. Repeatable.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fileMetadataRequest = (
  options: Credentials & { readonly sessionKey: string; readonly fileName: string }
): Effect.Effect<Request, InvalidOptions> => fileRequestOf("readFileMetadata", "HEAD", options, "application/json")

/**
 * Reads the answer to `fileMetadataRequest`. An answer to `HEAD` has no body, so a refusal cannot
 * say why: a 401 is `AccessTokenRejected` only when its `WWW-Authenticate` header says
 * `error="invalid_token"`, and `ApiError` otherwise (code `Unknown`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const processFileMetadataResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request,
  fileName: string
): Effect.Effect<FileHeaders, ApiError | AccessTokenRejected | ResponseError> =>
  response.status >= 200 && response.status < 300
    ? fileHeadersOf(request, response.status, response.headers, fileName)
    : Calls.failure(request, response, true)
