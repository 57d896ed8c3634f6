/**
 * Where user access tokens live, by `TokenKey`. Every stored token carries a version, so that
 * writing a refreshed token is compare-and-set and an older token can never overwrite a newer
 * one; a lock per key lets several processes sharing one store refresh a token once.
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
 * A stored token and its version. Versions grow with every write of the key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Versioned {
  readonly token: UserAccessToken
  readonly version: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The stored token and its version, if any. */
  readonly get: (key: TokenKey.TokenKey) => Effect.Effect<Option.Option<Versioned>, TokenStoreError>
  /** Stores a token unconditionally (a new authorization) and returns it with its new version. */
  readonly set: (key: TokenKey.TokenKey, token: UserAccessToken) => Effect.Effect<Versioned, TokenStoreError>
  /**
   * Stores `token` only if the stored version is still `expectedVersion`. Returns the new
   * version, or `None` when another writer got there first (the stored token is then newer).
   */
  readonly compareAndSet: (
    key: TokenKey.TokenKey,
    expectedVersion: number,
    token: UserAccessToken
  ) => Effect.Effect<Option.Option<Versioned>, TokenStoreError>
  /** Removes the token of the key, if any. */
  readonly delete: (key: TokenKey.TokenKey) => Effect.Effect<void, TokenStoreError>
  /**
   * Runs `effect` while holding the refresh lock of the key, so that one refresh at a time
   * happens for it among every process that shares the store.
   */
  readonly withLock: <A, E, R>(
    key: TokenKey.TokenKey,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | TokenStoreError, R>
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
  const locks = new Map<string, { readonly semaphore: Effect.Semaphore; holders: number }>()
  let clock = 0
  const write = (id: string, token: UserAccessToken): Versioned => {
    const versioned: Versioned = { token, version: ++clock }
    entries.set(id, versioned)
    return versioned
  }
  return {
    get: (key) => Effect.sync(() => Option.fromNullable(entries.get(TokenKey.toId(key)))),
    set: (key, token) => Effect.sync(() => write(TokenKey.toId(key), token)),
    compareAndSet: (key, expectedVersion, token) =>
      Effect.sync(() => {
        const id = TokenKey.toId(key)
        return entries.get(id)?.version === expectedVersion ? Option.some(write(id, token)) : Option.none()
      }),
    delete: (key) => Effect.sync(() => void entries.delete(TokenKey.toId(key))),
    withLock: (key, effect) => {
      const id = TokenKey.toId(key)
      return Effect.acquireUseRelease(
        Effect.sync(() => {
          let lock = locks.get(id)
          if (lock === undefined) {
            lock = { semaphore: Effect.unsafeMakeSemaphore(1), holders: 0 }
            locks.set(id, lock)
          }
          lock.holders++
          return lock
        }),
        (lock) => lock.semaphore.withPermits(1)(effect),
        (lock) =>
          Effect.sync(() => {
            if (--lock.holders === 0) locks.delete(id)
          })
      )
    }
  }
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<TokenStore> = Layer.effect(TokenStore, makeMemory)
