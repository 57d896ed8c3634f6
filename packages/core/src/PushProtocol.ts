/**
 * Pushing data: into the user's digi.me library (bytes or a stream, described by a
 * `FileDescriptor` signed with the contract's key) and to the provider behind one of the user's
 * accounts (MedMij). Each call as a request builder and a response processor, made with the
 * user's access token (`DataProtocol.Credentials`), never repeated by the client.
 *
 * @since 0.2.0
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { Credentials } from "./DataProtocol.js"
import { InvalidOptions } from "./DigimeError.js"
import type { AccessTokenRejected, ApiError } from "./DigimeError.js"
import type { Request } from "./DigimeRequest.js"
import * as Calls from "./internal/calls.js"
import * as Protocol from "./internal/protocol.js"

// ---------------------------------------------------------------------------------------------
// Pushing data (data protocol §5)
// ---------------------------------------------------------------------------------------------

// The body of a provider push: any JSON object (built once, its encoder compiled once).
const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * What a library push says of its data: its MIME type and the account(s) of the user it belongs
 * to, with optional references and tags. Sent signed with the contract's key.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileDescriptor {
  readonly mimeType: string
  readonly accounts: readonly [{ readonly accountId: string }, ...Array<{ readonly accountId: string }>]
  readonly reference?: ReadonlyArray<string> | undefined
  readonly tags?: ReadonlyArray<string> | undefined
}

/**
 * `POST permission-access/import`: pushes bytes into the user's digi.me library, described by a
 * `FileDescriptor` (a JWT signed with the contract's key, in a header). The body is sent as it is
 * (digi.me's protocol does not encrypt it; TLS protects it), as bytes or as a stream. Never
 * repeated by the client: a repeat could push twice.
 *
 * @since 0.2.0
 * @category constructors
 */
export const pushRequest = (
  options: Credentials & {
    readonly fileDescriptor: FileDescriptor
    readonly data: Uint8Array | Stream.Stream<Uint8Array, unknown>
  }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const descriptor = yield* Effect.mapError(
      Schema.encode(Protocol.FileDescriptor, { errors: "all" })({
        metadata: Calls.withoutUndefined({
          mimeType: options.fileDescriptor.mimeType,
          accounts: options.fileDescriptor.accounts,
          reference: options.fileDescriptor.reference,
          tags: options.fileDescriptor.tags
        })
      }),
      (error) =>
        new InvalidOptions({
          operation: "pushData",
          field: "fileDescriptor",
          reason: Protocol.describeParseError(error)
        })
    )
    const url = "permission-access/import"
    const request = options.data instanceof Uint8Array
      ? HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUint8Array(options.data, "application/octet-stream"))
      : HttpClientRequest.post(url).pipe(
        HttpClientRequest.bodyStream(options.data, { contentType: "application/octet-stream" })
      )
    const built = yield* Calls.userRequest("pushData", options, request, false)
    return { ...built, signedHeaders: { FileDescriptor: descriptor } }
  })

/**
 * Reads the answer to `pushRequest` (or `pushProviderRequest`): any 2xx, whatever its body.
 *
 * @since 0.2.0
 * @category constructors
 */
export const processPushResponse = (
  response: HttpClientResponse.HttpClientResponse,
  request: Request
): Effect.Effect<void, ApiError | AccessTokenRejected> =>
  response.status >= 200 && response.status < 300 ? Effect.void : Calls.failure(request, response, true)

/**
 * `POST permission-access/import/h:accountId/fhir/{version}`: pushes a FHIR document to the
 * provider behind one of the user's accounts (MedMij only; it cannot be read back). The account id
 * travels in the `accountId` header. Never repeated by the client.
 *
 * @since 0.2.0
 * @category constructors
 */
export const pushProviderRequest = (
  options: Credentials & {
    readonly accountId: string
    readonly version: "stu3" | "3.0.2"
    readonly data: Readonly<Record<string, unknown>>
  }
): Effect.Effect<Request, InvalidOptions> =>
  Effect.gen(function*() {
    const operation = "pushToProvider"
    yield* Calls.headerValue(operation, "accountId", options.accountId)
    if (options.version !== "stu3" && options.version !== "3.0.2") {
      return yield* new InvalidOptions({ operation, field: "version", reason: "must be \"stu3\" or \"3.0.2\"" })
    }
    if (typeof options.data !== "object" || options.data === null || Array.isArray(options.data)) {
      return yield* new InvalidOptions({ operation, field: "data", reason: "must be a JSON object" })
    }
    const request = yield* Calls.withJsonBody(
      operation,
      "data",
      HttpClientRequest.post(`permission-access/import/h:accountId/fhir/${options.version}`).pipe(
        HttpClientRequest.setHeader("accountId", options.accountId)
      ),
      JsonObject,
      options.data
    )
    return yield* Calls.userRequest(operation, options, request, false)
  })
