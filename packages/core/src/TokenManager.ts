/**
 * The life of stored tokens: loads a key's token from the `TokenStore`, refreshes it when it is
 * due (or when digi.me rejected it), stores the new token with compare-and-set before anyone uses
 * it, and never sends a spent refresh token twice, however many fibers or processes ask.
 *
 * - **Hot path.** A token read from the store (or written to it) is served from this process's
 *   memory for `DigimeConfig.tokenCacheTtl`, for at most `DigimeConfig.tokenCacheCapacity` keys
 *   (the token read longest ago makes room); older copies leave memory. Every refresh decision
 *   re-reads the store.
 * - **Deleting.** `delete` removes the token from the store and from this process's memory at
 *   once; nothing read before it is cached after it.
 * - **Leases.** Before a refresh is sent, its lease is committed in the store (who, which version,
 *   until when: `DigimeConfig.refreshLeaseTime`). Every process honours a live lease, whether or
 *   not its holder is alive: it serves the stored access token while it is valid, or waits for the
 *   lease's outcome. No database transaction is held while the refresh runs. The lease ends with
 *   the compare-and-set write of the new token.
 * - **A refresh whose outcome is unknown is never repeated.** digi.me rotates the refresh token on
 *   every refresh: when the answer is lost, the token sent may be spent, and a second use revokes
 *   the user's grant. The lease is then abandoned; the stored access token is served while it is
 *   valid, and after that the key fails with `ReauthRequired` (`RefreshOutcomeUnknown`).
 * - **An answer that arrived is not thrown away.** One that cannot be verified yet (key set
 *   unreachable) is kept, unread, and verified when the key set is back; a new token whose write
 *   failed is kept and written again, by this process, until it is stored.
 * - **Single flight; shutdown waits.** Concurrent refreshes of a key in this process share one;
 *   from the moment a refresh is sent until its token is stored it is not interrupted, by a caller
 *   or by the layer's shutdown, which waits for it up to `refreshLeaseTime`.
 *
 * `AutoRefresh.withAutoRefresh` is the combinator over this service.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { DigimeClient } from "./DigimeClient.js"
import type * as Client from "./DigimeClient.js"
import { DigimeConfig } from "./DigimeConfig.js"
import { InvalidAccessToken, ReauthRequired } from "./DigimeError.js"
import type { RefreshTokenExpired, TokenStoreError, VerificationError } from "./DigimeError.js"
import { base64url, randomBytes } from "./internal/encoding.js"
import * as ManagerState from "./internal/managerState.js"
import * as Refresh from "./internal/refresh.js"
import * as RefreshReport from "./internal/refreshReport.js"
import * as Settle from "./internal/settle.js"
import * as SingleFlight from "./internal/singleFlight.js"
import * as TokenCache from "./internal/tokenCache.js"
import * as TokenEvents from "./TokenEvents.js"
import * as TokenKey from "./TokenKey.js"
import { TokenStore } from "./TokenStore.js"
import type { Versioned } from "./TokenStore.js"
import type * as UserAccessToken from "./UserAccessToken.js"

/**
 * What a refresh of a stored token can fail with, besides the three token-state errors.
 *
 * @since 0.1.0
 * @category errors
 */
export type RefreshFailure = Client.RequestFailure | VerificationError | TokenStoreError

/**
 * The errors of a stored token's life: the three token-state errors (what only the user can fix)
 * and the failures of a refresh.
 *
 * @since 0.1.0
 * @category errors
 */
export type AutoRefreshError = InvalidAccessToken | RefreshTokenExpired | ReauthRequired | RefreshFailure

/**
 * The token to use now, and whether it was renewed by this call (rather than found).
 *
 * @since 0.1.0
 * @category models
 */
export interface Current {
  readonly versioned: Versioned
  readonly renewed: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * A token of the key held in this process's memory that needs no refresh at `now` (epoch
   * milliseconds), if any: the hot path, with no store read.
   */
  readonly cached: (key: TokenKey.TokenKey, now: number) => Versioned | undefined
  /** Whether the token needs no refresh at `now` (epoch ms): it expires after the lead time. */
  readonly usable: (versioned: Versioned, now: number) => boolean
  /**
   * The stored token of the key. Within the lead time it is served at once while one refresh runs
   * in the background; within `refreshWaitMargin` of its expiry (or after it), it is refreshed first.
   */
  readonly current: (key: TokenKey.TokenKey) => Effect.Effect<Current, AutoRefreshError>
  /** As `current`, the token alone. */
  readonly get: (key: TokenKey.TokenKey) => Effect.Effect<Versioned, AutoRefreshError>
  /**
   * After digi.me rejected the access token of version `rejected`: the stored token if it is
   * newer (another fiber or process refreshed), otherwise a refresh.
   */
  readonly renew: (key: TokenKey.TokenKey, rejected: number) => Effect.Effect<Versioned, AutoRefreshError>
  /** Refreshes the stored token now, even ahead of the lead time, under the same rules. */
  readonly refresh: (key: TokenKey.TokenKey) => Effect.Effect<Versioned, AutoRefreshError>
  /**
   * Refreshes version `version` of the key's token now, even ahead of the lead time, unless the
   * store holds a newer one (then that one) or another process is refreshing it (then the stored
   * one while its access token is valid): one refresh per version, whoever asks. What upkeep calls.
   */
  readonly refreshVersion: (key: TokenKey.TokenKey, version: number) => Effect.Effect<Versioned, AutoRefreshError>
  /**
   * digi.me refused the access token of version `version` although it was valid (right after a
   * refresh): only a new authorization helps. Marks the version "needs reconnect" in the store and
   * publishes `ReauthorizationRequired` (once per version). `withAutoRefresh` calls it.
   */
  readonly reportInvalidAccessToken: (key: TokenKey.TokenKey, version: number) => Effect.Effect<void>
  /**
   * Deletes the key's token (the user disconnected): from the store, and from this process's
   * memory at once, so that the next call for the key fails with `ReauthRequired` (`Missing`)
   * without waiting for `tokenCacheTtl`. Deleting a key that has no token is not an error.
   *
   * A refresh in flight for the key is not interrupted (its refresh token may be spent already),
   * but it cannot bring the token back: its compare-and-set finds nothing stored, and no copy read
   * or written before the delete is cached after it. Other processes sharing the store may serve
   * their own copy for up to their `tokenCacheTtl`, never refresh it, and drop it at once when
   * they call `delete` for the key too.
   */
  readonly delete: (key: TokenKey.TokenKey) => Effect.Effect<void, TokenStoreError>
  /** How many tokens this process holds in memory now: at most `DigimeConfig.tokenCacheCapacity`. */
  readonly cacheSize: Effect.Effect<number>
  /** Stores a token obtained by an authorization under the key, replacing what was stored. */
  readonly store: (key: TokenKey.TokenKey, token: UserAccessToken.UserAccessToken) => Effect.Effect<
    Versioned,
    TokenStoreError
  >
  /** Exchanges a callback's code for a token and stores it under the key. */
  readonly exchangeCodeForToken: (options: {
    readonly key: TokenKey.TokenKey
    readonly code: Parameters<Client.Service["exchangeCodeForToken"]>[0]["code"]
    readonly codeVerifier: Parameters<Client.Service["exchangeCodeForToken"]>[0]["codeVerifier"]
  }) => Effect.Effect<UserAccessToken.UserAccessToken, Client.TokenCallError | TokenStoreError>
  /**
   * Starts a reauthorization with the key's stored access token: `ReauthRequired` (`Missing`)
   * when nothing is stored, `InvalidAccessToken` when digi.me refuses that access token.
   */
  readonly getReauthorizeUrl: (
    options: Omit<Client.ReauthorizeOptions, "contractId" | "accessToken"> & { readonly key: TokenKey.TokenKey }
  ) => Effect.Effect<
    Client.AuthorizeUrl,
    Client.TokenCallError | InvalidAccessToken | ReauthRequired | TokenStoreError
  >
}

/**
 * @since 0.1.0
 * @category services
 */
export class TokenManager extends Context.Tag("@digime-effect/core/TokenManager")<TokenManager, Service>() {}

const current = (state: ManagerState.State, key: TokenKey.TokenKey): Effect.Effect<Current, AutoRefreshError> =>
  Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    const decide = (found: Versioned): Effect.Effect<Current, AutoRefreshError> => {
      const left = DateTime.toEpochMillis(found.token.accessToken.expiresAt) - now
      if (left > state.lead) return Effect.succeed({ versioned: found, renewed: false })
      if (left > state.margin) {
        return Effect.as(Refresh.ahead(state, key, found, now), { versioned: found, renewed: false })
      }
      return Effect.map(
        Refresh.refresh(state, key, { _tag: "Due", version: found.version }),
        (fresh) => ({ versioned: fresh, renewed: fresh.version !== found.version })
      )
    }
    const hit = state.cache.get(key, now)
    return hit !== undefined ? decide(hit) : Effect.flatMap(ManagerState.loadOrFail(state, key), decide)
  })

const store = (state: ManagerState.State, key: TokenKey.TokenKey, token: UserAccessToken.UserAccessToken) =>
  Effect.suspend(() => {
    const generation = state.cache.generation()
    return Effect.suspend(() => state.store.set(key, token)).pipe(
      Effect.retry({ schedule: ManagerState.storeRetry }),
      Effect.flatMap((versioned) => {
        state.kept.delete(TokenKey.toId(key))
        state.unverified.delete(TokenKey.toId(key))
        state.aheadFailed.delete(TokenKey.toId(key))
        return ManagerState.remember(state, key, versioned, generation)
      }),
      Effect.tap((versioned) =>
        Effect.zipRight(
          ManagerState.checkLifetime(state, versioned.token),
          ManagerState.publish(state, (at) => TokenEvents.TokenEvent.Stored({ key, at, version: versioned.version }))
        )
      )
    )
  })

const remove = (state: ManagerState.State, key: TokenKey.TokenKey): Effect.Effect<void, TokenStoreError> => {
  const forget = Effect.sync(() => {
    state.cache.invalidate(key)
    state.kept.delete(TokenKey.toId(key))
    state.unverified.delete(TokenKey.toId(key))
  })
  return forget.pipe(
    Effect.zipRight(Effect.retry(Effect.suspend(() => state.store.delete(key)), { schedule: ManagerState.storeRetry })),
    Effect.zipRight(ManagerState.publish(state, (at) => TokenEvents.TokenEvent.Deleted({ key, at }))),
    // Once more when the store is done: a copy read while the delete ran is not cached either.
    Effect.ensuring(forget),
    ManagerState.withKey(key, "TokenManager.delete")
  )
}

const getReauthorizeUrl = (state: ManagerState.State, options: Parameters<Service["getReauthorizeUrl"]>[0]) =>
  Effect.gen(function*() {
    const { key, ...rest } = options
    const stored = yield* state.store.get(key)
    if (Option.isNone(stored)) return yield* new ReauthRequired({ key, reason: "Missing" })
    return yield* state.client.getReauthorizeUrl({
      ...rest,
      contractId: key.contractId,
      accessToken: stored.value.token.accessToken.value
    }).pipe(
      Effect.catchIf(Refresh.isRefused, () => {
        const error = new InvalidAccessToken({ key })
        return Effect.zipRight(RefreshReport.report(state, key, stored.value.version, error), Effect.fail(error))
      })
    )
  }).pipe(ManagerState.withKey(options.key, "TokenManager.getReauthorizeUrl"))

/**
 * Builds the manager. Refreshes run in fibers of the layer's scope; when it closes, refreshes in
 * flight are waited for, up to `refreshLeaseTime`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Service, never, DigimeClient | TokenStore | DigimeConfig | Scope.Scope> = Effect
  .gen(function*() {
    const config = yield* DigimeConfig
    const scope = yield* Effect.scope
    const flightScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const background = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const sending = ManagerState.makeSending()
    const closing = { value: false }
    // Shutdown: no lease is taken any more, refreshes being sent finish (up to their lease), the
    // flights are interrupted, and what is kept gets one last chance to be stored.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closing.value = true
      }).pipe(
        Effect.zipRight(
          // Finalizers are uninterruptible: the wait must be interruptible for its time limit to work.
          Effect.interruptible(sending.idle.await).pipe(
            Effect.timeoutOption(config.refreshLeaseTime)
          )
        ),
        Effect.zipRight(Scope.close(flightScope, Exit.void)),
        Effect.zipRight(Effect.suspend(() => Settle.flushKept(state)))
      )
    )
    // Open while the token cache holds something.
    const filled = Effect.unsafeMakeLatch(false)
    const state: ManagerState.State = {
      config,
      client: yield* DigimeClient,
      store: yield* TokenStore,
      holder: base64url(randomBytes(12)),
      cache: TokenCache.make(
        Duration.toMillis(config.tokenCacheTtl),
        config.tokenCacheCapacity,
        () => filled.unsafeOpen()
      ),
      lead: Duration.toMillis(config.refreshLeadTime),
      margin: Duration.toMillis(config.refreshWaitMargin),
      lease: Duration.toMillis(config.refreshLeaseTime),
      kept: new Map(),
      unverified: new Map(),
      settling: new Set(),
      leases: new Map(),
      closing,
      flights: SingleFlight.makeSingleFlight(flightScope),
      sending,
      background,
      events: yield* TokenEvents.TokenEvents,
      leadWarned: { value: false },
      reported: new WeakSet(),
      aheadFailed: new Map()
    }
    if (Duration.toMillis(config.tokenCacheTtl) > 0 && config.tokenCacheCapacity > 0) {
      // Writes drop the cache's outdated entries; this drops them in an idle process too. It sleeps
      // only while the cache holds something: a clock that jumps far ahead wakes it once or twice.
      yield* filled.await.pipe(
        Effect.zipRight(Effect.sleep(Duration.max(config.tokenCacheTtl, Duration.seconds(1)))),
        Effect.zipRight(Clock.currentTimeMillis),
        Effect.map((now) => {
          state.cache.purge(now)
          if (state.cache.size() === 0) filled.unsafeClose()
        }),
        Effect.forever,
        Effect.interruptible,
        Effect.forkIn(background)
      )
    }
    return {
      cached: (key, now) => {
        const hit = state.cache.get(key, now)
        return hit !== undefined && ManagerState.usable(state, hit, now) ? hit : undefined
      },
      usable: (versioned, now) => ManagerState.usable(state, versioned, now),
      current: (key) => current(state, key),
      get: (key) =>
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          const hit = state.cache.get(key, now)
          return hit !== undefined && ManagerState.usable(state, hit, now)
            ? Effect.succeed(hit)
            : Effect.map(current(state, key), (found) => found.versioned)
        }),
      renew: (key, rejected) => Refresh.refresh(state, key, { _tag: "Rejected", version: rejected }),
      refresh: (key) => Refresh.refresh(state, key, { _tag: "Forced" }),
      refreshVersion: (key, version) => Refresh.refresh(state, key, { _tag: "Due", version }),
      reportInvalidAccessToken: (key, version) =>
        RefreshReport.report(state, key, version, new InvalidAccessToken({ key })).pipe(
          ManagerState.withKey(key, "TokenManager.reportInvalidAccessToken")
        ),
      delete: (key) => remove(state, key),
      cacheSize: Effect.sync(() => state.cache.size()),
      store: (key, token) => store(state, key, token),
      exchangeCodeForToken: ({ code, codeVerifier, key }) =>
        state.client.exchangeCodeForToken({ contractId: key.contractId, code, codeVerifier }).pipe(
          // The code is spent: a token that cannot be stored can only be had again by a new consent.
          Effect.tap((token) => store(state, key, token)),
          ManagerState.withKey(key, "TokenManager.exchangeCodeForToken")
        ),
      getReauthorizeUrl: (options) => getReauthorizeUrl(state, options)
    } satisfies Service
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<TokenManager, never, DigimeClient | TokenStore | DigimeConfig> = Layer.scoped(
  TokenManager,
  make
)
