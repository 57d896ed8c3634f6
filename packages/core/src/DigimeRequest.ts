/**
 * A digi.me call before it is signed: what the request builders of `TokenProtocol` and
 * `DataProtocol` make, and what `DigimeClient.execute` signs, sends and hands to a response
 * processor.
 *
 * @since 0.1.0
 */
import type * as Headers from "@effect/platform/Headers"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { RequestError } from "./DigimeError.js"

/**
 * A call ready to be signed and sent.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  /** The protocol step, in digi.me's words (`refreshToken`, `readAccounts`, …): errors name it. */
  readonly operation: string
  /** The contract whose key signs the client assertion. */
  readonly contractId: string
  /** Method, path relative to the API base URL, headers and body. */
  readonly request: HttpClientRequest.HttpClientRequest
  /**
   * The step's own claims, already encoded with its wire schema; `client_id`, `nonce` and
   * `timestamp` are added to each attempt when it is signed.
   */
  readonly claims: Readonly<Record<string, unknown>>
  /**
   * Whether a transient failure (a network error, a timeout, 408, 429 or 5xx) may be repeated:
   * only for calls whose repeat is harmless.
   */
  readonly idempotent: boolean
  /**
   * Headers whose value is a JWT signed with the contract's key (PS512, header
   * `{"alg":"PS512","typ":"JWT"}`), by header name: the payload of each. A library push's
   * `FileDescriptor` is one.
   */
  readonly signedHeaders?: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined
}

/**
 * A success answer whose body is handed over as it arrives (a file download): its status, its
 * headers and its body, read once. A pause longer than the request timeout between two parts of
 * the body, or a connection cut in the middle, fails the body with `RequestError`.
 *
 * @since 0.2.0
 * @category models
 */
export interface StreamedResponse {
  readonly status: number
  readonly headers: Headers.Headers
  readonly body: Stream.Stream<Uint8Array, RequestError>
  /**
   * The body read in one go instead, without a stream, when the answer announces its length
   * (`Content-Length`, no content coding) and it is at most `limit` bytes; `Option.none()` when it
   * does not (read `body` then). Either this or `body` is read, once. Absent when the HTTP client
   * cannot say what it received on the wire (`fetch` may undo a coding and hide it).
   *
   * @since 0.4.0
   */
  readonly whole?: ((limit: number) => Effect.Effect<Option.Option<Uint8Array>, RequestError>) | undefined
}
