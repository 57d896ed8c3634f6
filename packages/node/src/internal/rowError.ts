/**
 * The failure to write or read one row of a SQL store: a value that does not encode, decode, seal
 * or open. Each operation turns it into a `TokenStoreError` for its key, with the message as
 * description.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

const descriptions = {
  TokenNotEncodable: "the token could not be encoded",
  TokenNotDecodable: "the stored token does not decode",
  NoVersionReturned: "the write returned no version",
  VersionNotInteger: "the stored version is not an integer",
  StateNotHashable: "the state could not be hashed",
  KeyInvalid: "the stored key is invalid",
  KindInvalid: "the stored kind is invalid",
  ExpiryInvalid: "the stored expiry is invalid",
  EncryptionFailed: "encryption failed",
  NoKeyConfigured: "the stored value is encrypted and no encryptionKey is configured",
  NotEncrypted: "the stored value is not encrypted",
  Malformed: "the stored ciphertext is malformed",
  OtherKey: "the stored value was encrypted with another encryption key",
  Unauthenticated: "the stored ciphertext does not authenticate (tampered with, or moved from another row)"
} as const

/**
 * A row that cannot be written or read. Its message names what is wrong, never a value of the row.
 *
 * @since 0.1.0
 * @category errors
 */
export class RowError extends Data.TaggedError("RowError")<{ readonly reason: keyof typeof descriptions }> {
  override get message(): string {
    return descriptions[this.reason]
  }
}
