/**
 * The token manager's state, shared by the parts of a refresh (`refresh.ts`, `settle.ts`,
 * `leases.ts`, `refreshReport.ts`) and by `TokenManager`: what it holds per key, and the small
 * steps they all take (reading the store into the cache, spans and log annotations by key, events).
 */
import type * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Client from "../DigimeClient.js"
import type { DigimeConfig } from "../DigimeConfig.js"
import type { TokenStoreError } from "../DigimeError.js"
import { ReauthRequired } from "../DigimeError.js"
import * as DigimeMetrics from "../DigimeMetrics.js"
import type * as TokenEvents from "../TokenEvents.js"
import * as TokenKey from "../TokenKey.js"
import type { AutoRefreshError } from "../TokenManager.js"
import type { Lease, TokenStore, Versioned } from "../TokenStore.js"
import type * as UserAccessToken from "../UserAccessToken.js"
import type { SingleFlight } from "./singleFlight.js"
import type * as TokenCache from "./tokenCache.js"
import * as Tracing from "./tracing.js"

/** @internal */
export interface State {
  readonly config: Context.Tag.Service<DigimeConfig>
  readonly client: Client.Service
  readonly store: Context.Tag.Service<TokenStore>
  /** This manager's id in the leases it takes. */
  readonly holder: string
  readonly cache: TokenCache.TokenCache
  readonly lead: number
  /** Callers wait for a refresh only within this time of the access token's expiry. */
  readonly margin: number
  readonly lease: number
  /** New tokens whose write failed, by `TokenKey.toId`, with the version they replace. */
  readonly kept: Map<string, Kept>
  /** Answers that arrived but could not be verified yet, with the lease they were sent under. */
  readonly unverified: Map<string, { readonly lease: Lease; readonly answer: Redacted.Redacted<string> }>
  /** Keys with a fiber that keeps trying to verify or store what is kept. */
  readonly settling: Set<string>
  /**
   * The leases this manager took (or tried to take) that the store has not yet confirmed ended, by
   * `TokenKey.toId`: only one known `releasable` (nothing was sent under it, or digi.me refused
   * what was) may be released. A lease of ours the store shows without such an entry may have
   * spent its refresh token: it is never released, so its refresh token is never sent again.
   */
  readonly leases: Map<string, OwnLease>
  /** Set when the layer's scope starts closing: no lease is taken after that. */
  readonly closing: { value: boolean }
  readonly flights: SingleFlight<Versioned, AutoRefreshError>
  /** The refreshes being sent: shutdown waits until there is none. */
  readonly sending: Sending
  readonly background: Scope.Scope
  readonly events: TokenEvents.Service
  /** Errors of flights whose outcome was reported already (a refresh abandoned under its lease). */
  readonly reported: WeakSet<object>
  /** Set once the warning of an access token that lives no longer than the lead time was logged. */
  readonly leadWarned: { value: boolean }
  /** Refreshes ahead that failed, by `TokenKey.toId`: the version, and when to try again. */
  readonly aheadFailed: Map<string, { readonly version: number; readonly retryAt: number }>
}

/**
 * A count of the refreshes being sent (from taking the lease to the stored token) and a latch open
 * while there is none: what shutdown waits for. A counter rather than a semaphore of permits: every
 * refresh takes and returns one, and a semaphore's take is an asynchronous step.
 *
 * @internal
 */
export interface Sending {
  count: number
  readonly idle: Effect.Latch
}

/** @internal */
export const makeSending = (): Sending => ({ count: 0, idle: Effect.unsafeMakeLatch(true) })

// Runs `self` counted in `sending`: the count is taken and returned uninterruptibly.
/** @internal */
export const whileSending = <A, E>(sending: Sending, self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.uninterruptibleMask((restore) => {
    if (sending.count++ === 0) sending.idle.unsafeClose()
    return Effect.ensuring(
      restore(self),
      Effect.sync(() => {
        if (--sending.count === 0) sending.idle.unsafeOpen()
      })
    )
  })

/** @internal */
export interface Kept {
  readonly key: TokenKey.TokenKey
  readonly baseVersion: number
  readonly token: UserAccessToken.UserAccessToken
}

/** @internal */
export interface OwnLease {
  readonly lease: Lease
  readonly releasable: boolean
}

/** @internal */
export const sameLease = (a: Lease, b: Lease): boolean =>
  a.holder === b.holder && a.version === b.version && a.until === b.until

// Store writes: 5 attempts over about 1.5 s before the write is reported as failed.
/** @internal */
export const storeRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(4)))

/**
 * Runs `self` in a span named `name` whose attributes, like the annotations of its logs, name the
 * key by its contract id and its keyed tag (`TokenKey.tag`), never by the user id.
 */
/** @internal */
export const withKey =
  (key: TokenKey.TokenKey, name: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(TokenKey.tag(key), (tag) => {
      const attributes = { "digime.contract_id": key.contractId, "digime.key": tag }
      return self.pipe(Effect.annotateLogs(attributes), Tracing.withSpan(name, { attributes }))
    })

/**
 * `withKey` for an effect that is the rest of its fiber's life: a flight's work, which its fiber
 * runs and ends with. The log annotations are set on that fiber rather than around the effect:
 * `Effect.annotateLogs` acquires and releases the fiber's annotations (a dozen steps) on every
 * refresh.
 *
 * @internal
 */
export const withKeyForFiber =
  (key: TokenKey.TokenKey, name: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(TokenKey.tag(key), (tag) =>
      Effect.zipRight(
        FiberRef.update(
          FiberRef.currentLogAnnotations,
          (annotations) =>
            HashMap.set(HashMap.set(annotations, "digime.contract_id", key.contractId), "digime.key", tag)
        ),
        Tracing.withSpan(name, { attributes: { "digime.contract_id": key.contractId, "digime.key": tag } })(self)
      ))

/**
 * Logs once per manager when a token's access token lives no longer than the lead time: every call
 * would then refresh it (or wait for a refresh, within the wait margin).
 *
 * @internal
 */
export const checkLifetime = (state: State, token: UserAccessToken.UserAccessToken): Effect.Effect<void> =>
  state.leadWarned.value ? Effect.void : Effect.clockWith((clock) => {
    const lifetime = DateTime.toEpochMillis(token.accessToken.expiresAt) - clock.unsafeCurrentTimeMillis()
    if (lifetime > state.lead) return Effect.void
    state.leadWarned.value = true
    return Effect.logWarning(
      `An access token lives ${Math.round(lifetime / 1000)} s, no longer than refreshLeadTime ` +
        `(${Math.round(state.lead / 1000)} s): every call will refresh it. Set refreshLeadTime (and ` +
        `refreshWaitMargin) well below the access tokens' lifetime`
    )
  })

/** @internal */
export const usable = (state: State, versioned: Versioned, now: number): boolean =>
  DateTime.toEpochMillis(versioned.token.accessToken.expiresAt) - now > state.lead

/**
 * Caches what a store call returned, unless the key was deleted since `generation` was read (before
 * that call): a deleted token never comes back from the cache.
 *
 * @internal
 */
export const remember = (
  state: State,
  key: TokenKey.TokenKey,
  versioned: Versioned,
  generation: number
): Effect.Effect<Versioned> =>
  // The callback runs when the effect does: one step, no `Effect.sync` inside.
  Effect.clockWith((clock) => {
    state.cache.set(key, versioned, clock.unsafeCurrentTimeMillis(), generation)
    return Effect.succeed(versioned)
  })

/** @internal */
export const loadOrFail = (
  state: State,
  key: TokenKey.TokenKey
): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  Effect.suspend(() => {
    const generation = state.cache.generation()
    return Metric.increment(DigimeMetrics.storeReads).pipe(
      Effect.zipRight(state.store.get(key)),
      Effect.flatMap(Option.match({
        onNone: () => {
          state.cache.delete(key)
          return Effect.fail(new ReauthRequired({ key, reason: "Missing" }))
        },
        onSome: (versioned) => remember(state, key, versioned, generation)
      }))
    )
  })

/** @internal */
export const publish = (state: State, event: (at: number) => TokenEvents.TokenEvent): Effect.Effect<void> =>
  Effect.clockWith((clock) => state.events.publish(event(clock.unsafeCurrentTimeMillis())))
