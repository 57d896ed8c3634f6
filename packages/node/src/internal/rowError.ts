/**
 * The failure to write or read one row of a SQL store: a value that does not encode, decode, seal
 * or open, or a column that holds what the store never writes. Each operation turns it into a
 * `TokenStoreError` for its key, with the message as description.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

const descriptions = {
  TokenNotEncodable: "the token could not be encoded",
  TokenNotDecodable: "the stored token does not decode",
  VersionNotInteger: "the stored version is not an integer from 1 to 2^53 - 2",
  Contended: "the row kept changing under the write; try again",
  LeaseInvalid: "the stored lease is invalid",
  ReconnectInvalid: "the stored mark \"needs reconnect\" is invalid",
  StateNotHashable: "the state could not be hashed",
  KeyInvalid: "the stored key is invalid",
  KindInvalid: "the stored kind is invalid",
  CallbackUrlInvalid: "the stored callback URL is invalid",
  ExpiryInvalid: "the stored expiry is invalid",
  UsedInvalid: "the stored used flag is invalid",
  ValueNotText: "the stored value is not text",
  EncryptionFailed: "encryption failed",
  NoKeyConfigured: "the stored value is encrypted and no encryptionKey is configured",
  NotEncrypted: "the stored value is not encrypted",
  Malformed: "the stored ciphertext is malformed",
  UnknownFormat: "the stored value is in a format of a newer version of this library",
  OtherKey: "the stored value was encrypted with another encryption key",
  Unauthenticated:
    "the stored ciphertext does not authenticate (tampered with, moved from another row, or older than the row)"
} as const

/**
 * What is wrong with a row.
 *
 * @since 0.1.0
 * @category models
 */
export type Reason = keyof typeof descriptions

/**
 * A row that cannot be written or read. Its message names what is wrong, never a value of the row.
 *
 * @since 0.1.0
 * @category errors
 */
export class RowError extends Data.TaggedError("RowError")<{ readonly reason: Reason }> {
  override get message(): string {
    return descriptions[this.reason]
  }
}
