/**
 * Identifies one stored user access token: the application's own user id plus the digi.me
 * contract the token was granted for.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Hash from "effect/Hash"
import * as Schema from "effect/Schema"
import { InvalidOptions } from "./DigimeError.js"
import * as internal from "./internal/tokenKey.js"

/**
 * The user id and contract id of a stored token; a `Schema.Class`, so it is also its own schema.
 *
 * @since 0.1.0
 * @category models
 */
export const TokenKey: typeof internal.TokenKey = internal.TokenKey

/**
 * @since 0.1.0
 * @category models
 */
export type TokenKey = internal.TokenKey

/**
 * Builds a key from parts known to be valid; throws on an empty or padded part. For ids that come
 * from outside (a request, a database row), use `decode`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (userId: string, contractId: string): TokenKey => new TokenKey({ userId, contractId })

/**
 * Builds a key from untrusted parts, failing with `InvalidOptions` instead of throwing.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (userId: string, contractId: string): Effect.Effect<TokenKey, InvalidOptions> =>
  Schema.decodeUnknown(TokenKey)({ userId, contractId }).pipe(
    Effect.map((fields) => new TokenKey(fields)),
    Effect.mapError(() =>
      new InvalidOptions({
        operation: "TokenKey.decode",
        field: userId.trim() === "" || userId !== userId.trim() ? "userId" : "contractId",
        reason: "must be non-empty, without leading or trailing spaces"
      })
    )
  )

/**
 * A string that identifies the key in maps and database rows. Injective: the contract id and the
 * user id are joined with a separator that neither may contain unescaped.
 *
 * @since 0.1.0
 * @category models
 */
export const toId = (key: TokenKey): string => `${encodeURIComponent(key.contractId)}/${encodeURIComponent(key.userId)}`

/**
 * A short, non-reversible tag of the user id, for span attributes and logs where the id itself
 * should not appear.
 *
 * @since 0.1.0
 * @category models
 */
export const hash = (key: TokenKey): string => (Hash.string(toId(key)) >>> 0).toString(16).padStart(8, "0")
