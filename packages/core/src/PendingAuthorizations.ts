/**
 * Authorizations in progress: between sending a user to digi.me and digi.me calling back, the
 * PKCE verifier and the key the token is for wait here, under the unguessable `state` of the
 * request. Each entry can be consumed once, until it expires.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type { TokenStoreError } from "./DigimeError.js"
import type { TokenKey } from "./TokenKey.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Pending {
  readonly key: TokenKey
  readonly kind: "authorize" | "reauthorize"
  readonly codeVerifier: Redacted.Redacted<string>
  readonly callbackUrl: string
  readonly expiresAt: DateTime.Utc
}

/**
 * What consuming a state found.
 *
 * @since 0.1.0
 * @category models
 */
export type Consumed =
  | { readonly _tag: "Found"; readonly pending: Pending }
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Expired" }
  | { readonly _tag: "AlreadyUsed" }

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Records an authorization in progress under its state. */
  readonly put: (state: string, pending: Pending) => Effect.Effect<void, TokenStoreError>
  /**
   * Marks the entry of `state` used and returns it, atomically: of two callbacks with the same
   * state, only one finds it. Expired and used entries are told apart from unknown ones until
   * they are purged.
   */
  readonly consume: (state: string, now: DateTime.Utc) => Effect.Effect<Consumed, TokenStoreError>
}

/**
 * @since 0.1.0
 * @category services
 */
export class PendingAuthorizations
  extends Context.Tag("@digime-effect/core/PendingAuthorizations")<PendingAuthorizations, Service>()
{}

/**
 * An in-memory store. Entries are purged an hour after they expire; a process restart forgets
 * them, so users in the middle of an authorization must start again.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Service> = Effect.sync(() => {
  const entries = new Map<string, { readonly pending: Pending; used: boolean }>()
  const purgeAfterMillis = 60 * 60 * 1000
  const purge = (now: DateTime.Utc) => {
    const limit = DateTime.toEpochMillis(now) - purgeAfterMillis
    for (const [state, entry] of entries) {
      if (DateTime.toEpochMillis(entry.pending.expiresAt) < limit) entries.delete(state)
    }
  }
  return {
    put: (state, pending) => Effect.sync(() => void entries.set(state, { pending, used: false })),
    consume: (state, now) =>
      Effect.sync((): Consumed => {
        purge(now)
        const entry = entries.get(state)
        if (entry === undefined) return { _tag: "Unknown" }
        if (entry.used) return { _tag: "AlreadyUsed" }
        if (DateTime.lessThanOrEqualTo(entry.pending.expiresAt, now)) return { _tag: "Expired" }
        entry.used = true
        return { _tag: "Found", pending: entry.pending }
      })
  }
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<PendingAuthorizations> = Layer.effect(PendingAuthorizations, makeMemory)
