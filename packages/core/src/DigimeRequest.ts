/**
 * A digi.me call before it is signed: what the request builders of `TokenProtocol` and
 * `DataProtocol` make, and what `DigimeClient.execute` signs, sends and hands to a response
 * processor.
 *
 * @since 0.1.0
 */
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"

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
}
