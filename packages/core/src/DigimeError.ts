/**
 * Every expected failure of digime-effect, as `Schema.TaggedError` classes. Fields hold what helps
 * the caller act (contract id, key, HTTP status, digi.me code and reference), never a token, a
 * private key, a client assertion or an authorization code.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { TokenKey } from "./internal/tokenKey.js"

/**
 * @since 0.1.0
 * @category models
 */
export const TypeId: unique symbol = Symbol.for("@digime-effect/core/DigimeError")

/**
 * @since 0.1.0
 * @category models
 */
export type TypeId = typeof TypeId

const Key = TokenKey

// A message names the contract of a key, never its user: the key itself is in the error's fields.
const describeKey = (key: TokenKey): string => `a user of contract ${printable(key.contractId)}`

// Controls (C0, DEL, C1), line and paragraph separators, bidirectional overrides and lone
// surrogates: what could forge a log line or hide text, in what digi.me or a token sent.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const unprintable = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\p{Cs}]/gu

/**
 * `text` as it may appear in a message: every control character escaped as `\uXXXX`, and cut
 * after 500 characters. Messages interpolate through it every string that comes from outside.
 *
 * @since 0.2.0
 * @category utils
 */
export const printable = (text: string): string => {
  const escaped = text.replace(unprintable, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
  return escaped.length > 500 ? `${escaped.slice(0, 500)}…` : escaped
}

/**
 * The configuration given to a layer is unusable (empty application id, malformed URL, ...).
 * Raised when the layer is built, before any request.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>("@digime-effect/core/InvalidConfig")(
  "InvalidConfig",
  { field: Schema.String, reason: Schema.String }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Invalid digi.me configuration: ${printable(this.field)} ${printable(this.reason)}`
  }
}

/**
 * An option passed to an operation is unusable (empty code, bad callback URL, ...). Raised before
 * any request is sent.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>("@digime-effect/core/InvalidOptions")(
  "InvalidOptions",
  { operation: Schema.String, field: Schema.String, reason: Schema.String }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Invalid options for ${printable(this.operation)}: ${printable(this.field)} ${printable(this.reason)}`
  }
}

/**
 * No contract with this id was configured in `DigimeConfig`.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownContract extends Schema.TaggedError<UnknownContract>("@digime-effect/core/UnknownContract")(
  "UnknownContract",
  { contractId: Schema.String }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `No contract ${printable(this.contractId)} is configured`
  }
}

/**
 * The private key of a contract cannot be used to sign client assertions. Names the contract,
 * never the key.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidContractKey
  extends Schema.TaggedError<InvalidContractKey>("@digime-effect/core/InvalidContractKey")("InvalidContractKey", {
    contractId: Schema.String,
    reason: Schema.Literal("Unreadable", "NotRsa", "TooShort", "SigningFailed")
  })
{
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const what = this.reason === "Unreadable"
      ? "is not a readable PEM private key"
      : this.reason === "NotRsa"
      ? "is not an RSA key"
      : this.reason === "TooShort"
      ? "is shorter than 2048 bits"
      : "could not produce a signature"
    return `The private key of contract ${printable(this.contractId)} ${what}`
  }
}

/**
 * The request never got an HTTP answer: no connection could be made (`Connect`: nothing was sent),
 * the connection failed or the answer was lost (`Transport`: the request may have been processed),
 * no answer in time (`Timeout`: likewise), or the request could not be encoded (`Encode`).
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestError extends Schema.TaggedError<RequestError>("@digime-effect/core/RequestError")(
  "RequestError",
  {
    operation: Schema.String,
    reason: Schema.Literal("Connect", "Transport", "Timeout", "Encode"),
    description: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `${printable(this.operation)} failed (${printable(this.reason)}): ${printable(this.description)}`
  }
}

/**
 * digi.me answered with an error body (`{"error":{"code","message","reference"}}`) or an error
 * status. Keeps digi.me's code, message and reference and the HTTP status.
 *
 * @since 0.1.0
 * @category errors
 */
export class ApiError extends Schema.TaggedError<ApiError>("@digime-effect/core/ApiError")("ApiError", {
  operation: Schema.String,
  status: Schema.Number,
  code: Schema.String,
  description: Schema.String,
  reference: Schema.optional(Schema.String)
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const reference = this.reference === undefined ? "" : ` [reference ${printable(this.reference)}]`
    return `digi.me rejected ${printable(this.operation)} with ${this.status} ${printable(this.code)}: ${
      printable(this.description)
    }${reference}`
  }
}

/**
 * digi.me's answer could not be understood: a body that does not match the protocol, or a
 * success status where none was expected. A fault on the server side, not the caller's.
 *
 * @since 0.1.0
 * @category errors
 */
export class ResponseError extends Schema.TaggedError<ResponseError>("@digime-effect/core/ResponseError")(
  "ResponseError",
  { operation: Schema.String, status: Schema.Number, description: Schema.String }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Unexpected answer to ${printable(this.operation)} (HTTP ${this.status}): ${printable(this.description)}`
  }
}

/**
 * A token signed by digi.me failed verification. Nothing from it was used or stored.
 *
 * @since 0.1.0
 * @category errors
 */
export class VerificationError extends Schema.TaggedError<VerificationError>("@digime-effect/core/VerificationError")(
  "VerificationError",
  {
    operation: Schema.String,
    reason: Schema.Literal(
      "Malformed",
      "UnsupportedAlgorithm",
      "UntrustedKeySet",
      "KeySetUnavailable",
      "UnknownKey",
      "InvalidSignature",
      "Expired",
      "InvalidClaims"
    ),
    description: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `The token in the answer to ${printable(this.operation)} failed verification (${printable(this.reason)}): ${
      printable(this.description)
    }`
  }
}

/**
 * digi.me's key set (the JWKS a token names in `jku`) could not be had: unreachable, too slow, an
 * error or redirect status, a body over the size limit, or a document without a `keys` array.
 * `KeySet.verify` reports it as `VerificationError` (`KeySetUnavailable`).
 *
 * @since 0.1.0
 * @category errors
 */
export class KeySetError extends Schema.TaggedError<KeySetError>("@digime-effect/core/KeySetError")("KeySetError", {
  url: Schema.String,
  reason: Schema.Literal("Transport", "Timeout", "Status", "Redirect", "TooLarge", "Malformed"),
  status: Schema.optional(Schema.Number),
  description: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `The key set at ${printable(this.url)} is unavailable (${printable(this.reason)}): ${
      printable(this.description)
    }`
  }
}

/**
 * digi.me refused the access token of a data call (`401 InvalidToken`). `withAutoRefresh`
 * handles it; it never escapes from there.
 *
 * @since 0.1.0
 * @category errors
 */
export class AccessTokenRejected
  extends Schema.TaggedError<AccessTokenRejected>("@digime-effect/core/AccessTokenRejected")("AccessTokenRejected", {
    operation: Schema.String,
    contractId: Schema.String,
    status: Schema.Number,
    code: Schema.String,
    reference: Schema.optional(Schema.String)
  })
{
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const detail = `${this.status} ${printable(this.code)}`
    return `digi.me rejected the access token of contract ${printable(this.contractId)} for ${
      printable(this.operation)
    } (${detail})`
  }
}

/**
 * The access token was rejected again right after a refresh: the grant is gone and only a new
 * authorization from scratch helps (reauthorization needs a valid access token).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidAccessToken
  extends Schema.TaggedError<InvalidAccessToken>("@digime-effect/core/InvalidAccessToken")("InvalidAccessToken", {
    key: Key
  })
{
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `The access token of ${describeKey(this.key)} is invalid: authorize the user again from scratch`
  }
}

/**
 * The refresh token has expired (by the Clock, before any request, or as digi.me answered). The
 * stored token is kept: its access token is what reauthorization needs.
 *
 * @since 0.1.0
 * @category errors
 */
export class RefreshTokenExpired
  extends Schema.TaggedError<RefreshTokenExpired>("@digime-effect/core/RefreshTokenExpired")("RefreshTokenExpired", {
    key: Key,
    detectedBy: Schema.Literal("Clock", "Server")
  })
{
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `The refresh token of ${describeKey(this.key)} has expired: reauthorize the user`
  }
}

/**
 * The user must go through digi.me again: nothing is stored for the key (`Missing`), digi.me
 * refused the refresh token as invalid (revoked, or rotated away: `RefreshTokenInvalid`), or a
 * refresh of the stored token may have spent its refresh token without its answer ever being
 * stored (`RefreshOutcomeUnknown`: sending it again could be a replay, which revokes the grant).
 *
 * @since 0.1.0
 * @category errors
 */
export class ReauthRequired extends Schema.TaggedError<ReauthRequired>("@digime-effect/core/ReauthRequired")(
  "ReauthRequired",
  { key: Key, reason: Schema.Literal("Missing", "RefreshTokenInvalid", "RefreshOutcomeUnknown") }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    switch (this.reason) {
      case "Missing":
        return `No token is stored for ${describeKey(this.key)}: authorize the user`
      case "RefreshTokenInvalid":
        return `digi.me refused the refresh token of ${describeKey(this.key)}: reauthorize the user`
      case "RefreshOutcomeUnknown":
        return `A refresh of the token of ${describeKey(this.key)} may have spent its refresh token without ` +
          "its answer being stored: reauthorize the user"
    }
  }
}

/**
 * The token store failed. A refreshed token that could not be stored is reported this way rather
 * than used.
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenStoreError extends Schema.TaggedError<TokenStoreError>("@digime-effect/core/TokenStoreError")(
  "TokenStoreError",
  {
    operation: Schema.String,
    key: Schema.optional(Key),
    description: Schema.String
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const of = this.key === undefined ? "" : ` for ${describeKey(this.key)}`
    return `Token store ${printable(this.operation)} failed${of}: ${printable(this.description)}`
  }
}

/**
 * The query digi.me sent to the callback URL is not a usable answer: a state that does not match
 * (or matches no authorization in progress, an expired one or one already completed), a missing
 * code, or a refusal (`success=false&errorCode=...`).
 *
 * @since 0.1.0
 * @category errors
 */
export class CallbackError extends Schema.TaggedError<CallbackError>("@digime-effect/core/CallbackError")(
  "CallbackError",
  {
    reason: Schema.Literal(
      "StateMismatch",
      "MissingState",
      "MissingCode",
      "Denied",
      "Malformed",
      "UnknownState",
      "ExpiredState",
      "ReusedState",
      "UnexpectedKey"
    ),
    errorCode: Schema.optional(Schema.String)
  }
) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    switch (this.reason) {
      case "StateMismatch":
        return "The callback's state does not match the expected one"
      case "MissingState":
        return "The callback has no state"
      case "MissingCode":
        return "The callback reports success but has no code"
      case "Denied":
        return `digi.me reported a failed authorization (errorCode ${
          this.errorCode === undefined ? "absent" : printable(this.errorCode)
        })`
      case "Malformed":
        return "The callback query is not a digi.me answer"
      case "UnknownState":
        return "The callback's state matches no authorization in progress. Most often the authorization was " +
          "started with another PendingAuthorizations store: a memory store built anew for each request (provide " +
          "the layer once, for the whole server), or one not shared between the instances behind a load balancer " +
          "(use SqlPendingAuthorizations)"
      case "ExpiredState":
        return "The authorization of this callback has expired: start again"
      case "ReusedState":
        return "The authorization of this callback was already completed (a replayed callback)"
      case "UnexpectedKey":
        return "The callback completes an authorization started for another user: nothing was stored"
    }
  }
}

/**
 * A file from digi.me cannot be turned back into its content: a body whose length cannot be an
 * envelope (`InvalidSize`: under 288 bytes, or not a multiple of 16), a data key the contract's
 * private key does not unwrap (`KeyUnwrap`: another contract's file, or a corrupted key slot), a
 * ciphertext whose padding is wrong (`InvalidPadding`: truncated or corrupted), content that does
 * not decompress (`Decompression`) or a compression this library does not know
 * (`UnsupportedCompression`). The message names the file, never a key.
 *
 * @since 0.2.0
 * @category errors
 */
export class FileDecryptionError
  extends Schema.TaggedError<FileDecryptionError>("@digime-effect/core/FileDecryptionError")("FileDecryptionError", {
    fileName: Schema.String,
    reason: Schema.Literal("InvalidSize", "KeyUnwrap", "InvalidPadding", "Decompression", "UnsupportedCompression"),
    description: Schema.String
  })
{
  /** @since 0.2.0 */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `The file ${printable(this.fileName)} cannot be decrypted (${this.reason}): ${printable(this.description)}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export type DigimeError =
  | InvalidConfig
  | InvalidOptions
  | UnknownContract
  | InvalidContractKey
  | RequestError
  | ApiError
  | ResponseError
  | VerificationError
  | KeySetError
  | AccessTokenRejected
  | InvalidAccessToken
  | RefreshTokenExpired
  | ReauthRequired
  | TokenStoreError
  | CallbackError
  | FileDecryptionError

/**
 * @since 0.1.0
 * @category guards
 */
export const isDigimeError = (u: unknown): u is DigimeError => Predicate.hasProperty(u, TypeId)

/**
 * @since 0.1.0
 * @category guards
 */
export const isAccessTokenRejected = (u: unknown): u is AccessTokenRejected =>
  isDigimeError(u) && u._tag === "AccessTokenRejected"
