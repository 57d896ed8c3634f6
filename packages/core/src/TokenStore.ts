/**
 * Where user access tokens live, by `TokenKey`. Every stored token carries a version, so that
 * writing a refreshed token is compare-and-set and an older token can never overwrite a newer
 * one.
 *
 * A refresh is announced in the store before it is sent: a **lease** on the token's version says
 * who refreshes it and until when. Every process sharing the store honours it, whether or not its
 * holder is still alive, and no database transaction is held while the refresh runs. The lease
 * ends with the compare-and-set write of the new token, in the same write. A lease that ended
 * without a new token either was released (the refresh token was not spent: anyone may refresh)
 * or was abandoned or outlived (the refresh token may have been spent: nobody may send it again).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { TokenStoreError } from "./DigimeError.js"
import * as TokenKey from "./TokenKey.js"
import type { UserAccessToken } from "./UserAccessToken.js"

/**
 * A refresh of one token version, announced in the store before it is sent.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  /** Who refreshes: an id of the `TokenManager` (one per process) that took the lease. */
  readonly holder: string
  /** The version of the token being refreshed. */
  readonly version: number
  /**
   * Until when the refresh may run (epoch milliseconds, by the holder's clock). After it, without a
   * newer token, the refresh token may have been spent; an abandoned lease has `until` 0.
   */
  readonly until: number
}

/**
 * A stored token and its version. Versions grow with every write of the key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Versioned {
  readonly token: UserAccessToken
  readonly version: number
  /** The lease on this version, when a refresh of it was started and has not been released. */
  readonly lease?: Lease | undefined
}

/**
 * How a lease ends without a new token: `Released` when the refresh token was not spent (the
 * request was not sent, or digi.me refused it), `Abandoned` when it may have been (the answer was
 * lost): the version can then never be refreshed again, only replaced by a new authorization.
 *
 * @since 0.1.0
 * @category models
 */
export type LeaseEnd = "Released" | "Abandoned"

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The stored token and its version, if any. */
  readonly get: (key: TokenKey.TokenKey) => Effect.Effect<Option.Option<Versioned>, TokenStoreError>
  /**
   * Stores a token unconditionally (a new authorization) and returns it with its new version; any
   * lease on the key ends.
   */
  readonly set: (key: TokenKey.TokenKey, token: UserAccessToken) => Effect.Effect<Versioned, TokenStoreError>
  /**
   * Stores `token` only if the stored version is still `expectedVersion`, ending the lease on it
   * in the same write. Returns the new version, or `None` when another writer got there first (the
   * stored token is then newer).
   */
  readonly compareAndSet: (
    key: TokenKey.TokenKey,
    expectedVersion: number,
    token: UserAccessToken
  ) => Effect.Effect<Option.Option<Versioned>, TokenStoreError>
  /** Removes the token of the key, if any. */
  readonly delete: (key: TokenKey.TokenKey) => Effect.Effect<void, TokenStoreError>
  /**
   * Takes `lease` on version `lease.version` of the key, if that is still the stored version and
   * no lease was taken on that version since it was written (or the last one was released); a
   * lease left on an older version (by a writer that does not know leases) does not count.
   * Atomic: of several processes, one takes it. Answers whether it did.
   */
  readonly acquireLease: (key: TokenKey.TokenKey, lease: Lease) => Effect.Effect<boolean, TokenStoreError>
  /**
   * Ends `lease` without a new token, if it is still the one on the key: same holder, version and
   * `until`. Another holder's lease is left, and so is an abandoned one (a `Released` never reopens
   * a version whose refresh token may have been spent).
   */
  readonly endLease: (key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd) => Effect.Effect<void, TokenStoreError>
}

/**
 * @since 0.1.0
 * @category services
 */
export class TokenStore extends Context.Tag("@digime-effect/core/TokenStore")<TokenStore, Service>() {}

/**
 * A store in the memory of this process. Tokens are lost when it ends, and it cannot be shared
 * with other processes: use it for tests, demos and single-process apps that accept a new
 * authorization after a restart.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Service> = Effect.sync(() => {
  const entries = new Map<string, Versioned>()
  // One counter for every key: a key deleted and set again never reuses a version.
  let clock = 0
  const write = (key: TokenKey.TokenKey, token: UserAccessToken): Versioned => {
    const versioned: Versioned = { token, version: ++clock }
    entries.set(TokenKey.toId(key), versioned)
    return versioned
  }
  return {
    get: (key) => Effect.sync(() => Option.fromNullable(entries.get(TokenKey.toId(key)))),
    set: (key, token) => Effect.sync(() => write(key, token)),
    compareAndSet: (key, expectedVersion, token) =>
      Effect.sync(() =>
        entries.get(TokenKey.toId(key))?.version === expectedVersion ? Option.some(write(key, token)) : Option.none()
      ),
    delete: (key) => Effect.sync(() => void entries.delete(TokenKey.toId(key))),
    acquireLease: (key, lease) =>
      Effect.sync(() => {
        const found = entries.get(TokenKey.toId(key))
        if (found === undefined || found.version !== lease.version) return false
        if (found.lease !== undefined && found.lease.version === found.version) return false
        entries.set(TokenKey.toId(key), { ...found, lease })
        return true
      }),
    endLease: (key, lease, end) =>
      Effect.sync(() => {
        const found = entries.get(TokenKey.toId(key))
        const held = found?.lease
        if (
          found === undefined || held?.holder !== lease.holder || held.version !== lease.version ||
          held.until !== lease.until
        ) return
        entries.set(
          TokenKey.toId(key),
          end === "Released"
            ? { token: found.token, version: found.version }
            : { ...found, lease: { ...held, until: 0 } }
        )
      })
  }
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<TokenStore> = Layer.effect(TokenStore, makeMemory)
