/**
 * Identifies one stored user access token: the application's own user id plus the digi.me
 * contract the token was granted for.
 *
 * @since 0.1.0
 */
import { hmac } from "@noble/hashes/hmac.js"
import { sha256 } from "@noble/hashes/sha2.js"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { InvalidConfig, InvalidOptions } from "./DigimeError.js"
import { encodeUtf8, randomBytes } from "./internal/encoding.js"
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
 * Builds a key from parts known to be valid; throws on a part that is empty, padded with spaces,
 * longer than 1024 characters or not well-formed Unicode (a lone surrogate). For ids that come
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
    Effect.mapError(() => {
      const userIdProblem = typeof userId === "string" ? internal.idProblem(userId) : "must be a string"
      return new InvalidOptions({
        operation: "TokenKey.decode",
        field: userIdProblem === undefined ? "contractId" : "userId",
        reason: userIdProblem ??
          (typeof contractId === "string" ? internal.idProblem(contractId) : undefined) ?? "must be a string"
      })
    })
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
 * Turns a key into the pseudonym logs and spans carry as `digime.key`.
 *
 * @since 0.2.0
 * @category models
 */
export interface Tagger {
  readonly tag: (key: TokenKey) => string
}

/**
 * The shortest tag secret accepted, in bytes of UTF-8.
 *
 * @since 0.2.0
 * @category models
 */
export const minTagSecretLength = 16

/**
 * A tagger keyed with `secret`: the first 64 bits of HMAC-SHA-256 of the key, in hex. Without the
 * secret, a tag cannot be linked back to a user id, even by trying every id of a small range.
 * The same secret gives the same tags in every process; fails with `InvalidConfig` on a secret
 * shorter than `minTagSecretLength` bytes.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeTagger = (secret: Redacted.Redacted<string | Uint8Array>): Effect.Effect<Tagger, InvalidConfig> => {
  const value = Redacted.value(secret)
  const bytes = typeof value === "string" ? encodeUtf8(value) : value
  return bytes.length < minTagSecretLength
    ? Effect.fail(
      new InvalidConfig({ field: "keyTagSecret", reason: `must be at least ${minTagSecretLength} bytes` })
    )
    : Effect.succeed(unsafeTagger(bytes))
}

// How many tags a tagger keeps: the same keys are tagged on every refresh and store call, and an
// HMAC in JavaScript costs tens of microseconds. Emptied when full.
const tagCacheCapacity = 10_000

const unsafeTagger = (secret: Uint8Array): Tagger => {
  // The keyed state after the secret, copied for each tag (two compressions saved per tag).
  const keyed = hmac.create(sha256, secret)
  const tags = new Map<string, string>()
  return {
    tag: (key) => {
      const id = toId(key)
      let tag = tags.get(id)
      if (tag === undefined) {
        tag = Encoding.encodeHex(keyed.clone().update(encodeUtf8(id)).digest().subarray(0, 8))
        if (tags.size >= tagCacheCapacity) tags.clear()
        tags.set(id, tag)
      }
      return tag
    }
  }
}

/**
 * The tagger of `tag`. Without one provided, a tagger keyed with 256 random bits drawn once per
 * process: tags never reveal an id, but differ from one process (or restart) to the next. Provide
 * `layerTagger` with a per-deployment secret (`Digime.layerConfig` reads `DIGIME_KEY_TAG_SECRET`)
 * to correlate the logs of several processes.
 *
 * @since 0.2.0
 * @category services
 */
export class KeyTagger extends Context.Reference<KeyTagger>()("@digime-effect/core/TokenKey/KeyTagger", {
  defaultValue: (): Tagger => unsafeTagger(randomBytes(32))
}) {}

/**
 * @since 0.2.0
 * @category layers
 */
export const layerTagger = (secret: Redacted.Redacted<string | Uint8Array>): Layer.Layer<KeyTagger, InvalidConfig> =>
  Layer.effectContext(Effect.map(makeTagger(secret), (tagger) => Context.make(KeyTagger, tagger)))

/**
 * The tagger keyed with a secret read from `Config` (default `DIGIME_KEY_TAG_SECRET`); when the
 * secret is not set, the per-process default stays.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerTaggerConfig = (
  config: Config.Config<Redacted.Redacted> = Config.redacted("DIGIME_KEY_TAG_SECRET")
): Layer.Layer<KeyTagger, ConfigError.ConfigError | InvalidConfig> =>
  Layer.unwrapEffect(
    Effect.map(
      Config.option(config),
      (secret) =>
        secret._tag === "Some"
          ? layerTagger(secret.value)
          : Layer.effectContext(Effect.map(KeyTagger, (tagger) => Context.make(KeyTagger, tagger)))
    )
  )

/**
 * The pseudonym of the key for logs and span attributes (`digime.key`): its contract's and user's
 * ids through the `KeyTagger` of the context, so that they never appear themselves.
 *
 * @since 0.2.0
 * @category models
 */
export const tag = (key: TokenKey): Effect.Effect<string> => Effect.map(KeyTagger, (tagger) => tagger.tag(key))
