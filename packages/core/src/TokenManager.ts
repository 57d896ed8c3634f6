/**
 * The life of stored tokens: loads a key's token from the `TokenStore`, refreshes it when it is
 * due (or when digi.me rejected it), stores the new token with compare-and-set before anyone uses
 * it, and refreshes each token once however many fibers (or processes sharing the store) ask.
 *
 * - **Hot path.** A token read from the store (or written to it) is served from this process's
 *   memory for `DigimeConfig.tokenCacheTtl`, so a valid token costs no store round trip. Every
 *   refresh decision re-reads the store under its lock.
 * - **Single flight.** Concurrent refreshes of a key in this process share one; the store's
 *   `withLock` extends that to every process sharing the store. The refresh runs in the layer's
 *   scope, so a caller interrupted while waiting does not cancel it.
 * - **Never a blind repeat.** A refresh is never retried: digi.me rotates the refresh token, so a
 *   lost answer means the token sent is spent already. A refreshed token whose write failed is
 *   kept in memory and stored by the next refresh of the key instead of spending the refresh
 *   token again.
 *
 * `AutoRefresh.withAutoRefresh` is the combinator over this service.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { DigimeClient } from "./DigimeClient.js"
import type * as Client from "./DigimeClient.js"
import { DigimeConfig } from "./DigimeConfig.js"
import { InvalidAccessToken, ReauthRequired, RefreshTokenExpired } from "./DigimeError.js"
import type { ApiError, TokenStoreError, VerificationError } from "./DigimeError.js"
import * as DigimeMetrics from "./DigimeMetrics.js"
import * as SingleFlight from "./internal/singleFlight.js"
import * as TokenKey from "./TokenKey.js"
import { TokenStore } from "./TokenStore.js"
import type { Versioned } from "./TokenStore.js"
import * as UserAccessToken from "./UserAccessToken.js"

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
  /** The stored token of the key, refreshed first when it expires within the lead time. */
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

interface Kept {
  readonly baseVersion: number
  readonly token: UserAccessToken.UserAccessToken
}

interface State {
  readonly config: Context.Tag.Service<DigimeConfig>
  readonly client: Client.Service
  readonly store: Context.Tag.Service<TokenStore>
  /** Filed by contract, then by user: a lookup encodes nothing, and two keys never share an entry. */
  readonly cache: Map<string, Map<string, { readonly versioned: Versioned; readonly readAt: number }>>
  readonly cacheTtl: number
  readonly lead: number
  /** Refreshed tokens whose write failed, by `TokenKey.toId`. */
  readonly kept: Map<string, Kept>
  readonly flights: SingleFlight.SingleFlight<Versioned, AutoRefreshError>
}

// Store writes: 5 attempts over about 1.5 s before the write is reported as failed.
const storeRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(4)))

const annotations = (key: TokenKey.TokenKey) => ({
  "digime.contract_id": key.contractId,
  "digime.key": TokenKey.hash(key)
})

const lookup = (state: State, key: TokenKey.TokenKey, now: number): Versioned | undefined => {
  const hit = state.cache.get(key.contractId)?.get(key.userId)
  return hit !== undefined && now - hit.readAt < state.cacheTtl ? hit.versioned : undefined
}

const usable = (state: State, versioned: Versioned, now: number): boolean =>
  DateTime.toEpochMillis(versioned.token.accessToken.expiresAt) - now > state.lead

const forget = (state: State, key: TokenKey.TokenKey): void => {
  const users = state.cache.get(key.contractId)
  if (users !== undefined && users.delete(key.userId) && users.size === 0) state.cache.delete(key.contractId)
}

const remember = (state: State, key: TokenKey.TokenKey, versioned: Versioned): Effect.Effect<Versioned> =>
  Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => {
    if (state.cacheTtl > 0) {
      let users = state.cache.get(key.contractId)
      if (users === undefined) state.cache.set(key.contractId, users = new Map())
      users.set(key.userId, { versioned, readAt: now })
    }
    return versioned
  })

const loadOrFail = (state: State, key: TokenKey.TokenKey): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  Metric.increment(DigimeMetrics.storeReads).pipe(
    Effect.zipRight(state.store.get(key)),
    Effect.flatMap(Option.match({
      onNone: () => {
        forget(state, key)
        return Effect.fail(new ReauthRequired({ key, reason: "Missing" }))
      },
      onSome: (versioned) => remember(state, key, versioned)
    }))
  )

// Kept in memory from before the write until the store's lock is released (the write is durable
// only then): `refreshLocked` forgets it once `withLock` has succeeded.
const persist = (
  state: State,
  key: TokenKey.TokenKey,
  baseVersion: number,
  token: UserAccessToken.UserAccessToken
): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  Effect.sync(() => state.kept.set(TokenKey.toId(key), { baseVersion, token })).pipe(
    Effect.zipRight(state.store.compareAndSet(key, baseVersion, token)),
    Effect.retry({ schedule: storeRetry }),
    Effect.tapError(() =>
      Effect.logError("A refreshed token could not be stored; it is kept in memory for the next try")
    ),
    Effect.flatMap(Option.match({
      onSome: (versioned) => remember(state, key, versioned),
      // Another writer stored a newer token (a new authorization) while this refresh ran.
      onNone: () => {
        state.kept.delete(TokenKey.toId(key))
        return Effect.logWarning("The store holds a newer token than the one refreshed; using the stored one").pipe(
          Effect.zipRight(loadOrFail(state, key))
        )
      }
    }))
  )

const countRefresh = (key: TokenKey.TokenKey, outcome: string) =>
  Metric.update(
    DigimeMetrics.refreshes.pipe(Metric.tagged("outcome", outcome), Metric.tagged("contract_id", key.contractId)),
    1
  )

const isRefused = (error: { readonly _tag: string }): error is ApiError =>
  error._tag === "ApiError" && (error as ApiError).status === 401 && (error as ApiError).code === "InvalidToken"

// digi.me answers an expired and an invalid refresh token alike (401 InvalidToken); only the
// message tells them apart, and digi.me's own documents disagree on it. Both lead to the same
// next step, so a wrong guess costs nothing.
const sendRefresh = (state: State, key: TokenKey.TokenKey, current: Versioned) =>
  state.client.refreshToken({ contractId: key.contractId, refreshToken: current.token.refreshToken.value }).pipe(
    Effect.catchIf(
      isRefused,
      (error): Effect.Effect<never, RefreshTokenExpired | ReauthRequired> =>
        /expired/i.test(error.description)
          ? Effect.fail(new RefreshTokenExpired({ key, detectedBy: "Server" }))
          : Effect.fail(new ReauthRequired({ key, reason: "RefreshTokenInvalid" }))
    ),
    // A stored refresh token that is blank cannot be sent: no request, the user must reauthorize.
    Effect.catchTag("InvalidOptions", () => Effect.fail(new ReauthRequired({ key, reason: "RefreshTokenInvalid" }))),
    Effect.tapBoth({
      onFailure: (error) => countRefresh(key, error._tag),
      onSuccess: () => countRefresh(key, "refreshed")
    })
  )

// Runs under the store's lock of the key: re-reads, and refreshes only if still needed.
const refreshLocked = (state: State, key: TokenKey.TokenKey, stale: number | undefined, force: boolean) =>
  Effect.gen(function*() {
    let current = yield* loadOrFail(state, key)
    const kept = state.kept.get(TokenKey.toId(key))
    if (kept !== undefined) {
      if (kept.baseVersion === current.version) {
        // A refreshed token that could not be stored before: store it, then decide as usual (it
        // may itself be due by now).
        current = yield* persist(state, key, current.version, kept.token)
        yield* Effect.logDebug("Stored the token kept from an earlier refresh")
      } else {
        // Superseded (a write of that refresh did land, or a new authorization did).
        state.kept.delete(TokenKey.toId(key))
      }
    }
    const now = yield* DateTime.now
    const due = force || current.version === stale ||
      UserAccessToken.accessTokenExpiresWithin(current.token, now, state.config.refreshLeadTime)
    if (!due) {
      yield* Effect.annotateCurrentSpan("digime.outcome", "reused")
      yield* Effect.logDebug("The store already holds a newer token: no refresh")
      return current
    }
    if (UserAccessToken.isRefreshTokenExpired(current.token, now)) {
      yield* Effect.logDebug("The refresh token has expired by the clock: no refresh sent")
      return yield* new RefreshTokenExpired({ key, detectedBy: "Clock" })
    }
    yield* Effect.logDebug("Refreshing the token")
    const stored = yield* persist(state, key, current.version, yield* sendRefresh(state, key, current))
    yield* Effect.annotateCurrentSpan("digime.outcome", "refreshed")
    yield* Effect.logDebug("Refreshed token stored").pipe(Effect.annotateLogs("digime.version", stored.version))
    return stored
  }).pipe(
    Effect.tapError((error) => Effect.annotateCurrentSpan("digime.outcome", error._tag)),
    (effect) => state.store.withLock(key, effect),
    // The lock is released and the write durable: the kept copy is no longer needed.
    Effect.tap((versioned) =>
      Effect.sync(() => {
        const kept = state.kept.get(TokenKey.toId(key))
        if (kept !== undefined && kept.baseVersion < versioned.version) state.kept.delete(TokenKey.toId(key))
      })
    ),
    Metric.trackDuration(DigimeMetrics.refreshDuration),
    Effect.annotateLogs(annotations(key)),
    Effect.withSpan("AutoRefresh.refresh", { attributes: annotations(key) })
  )

// Written without generators: in a burst, every waiting fiber runs this once.
const refresh = (
  state: State,
  key: TokenKey.TokenKey,
  stale: number | undefined,
  force: boolean
): Effect.Effect<Versioned, AutoRefreshError> =>
  Effect.suspend(() => {
    const id = TokenKey.toId(key)
    const work = refreshLocked(state, key, stale, force)
    const running = state.flights.join(id)
    if (running === undefined) return state.flights.lead(id, work)
    return Metric.increment(DigimeMetrics.coalescedWaiters).pipe(
      Effect.zipRight(running),
      // The flight we joined may have started before our token was found stale.
      Effect.flatMap((joined) =>
        !force && (stale === undefined || joined.version !== stale)
          ? Effect.succeed(joined)
          : state.flights.lead(id, work)
      )
    )
  })

const current = (state: State, key: TokenKey.TokenKey): Effect.Effect<Current, AutoRefreshError> =>
  Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    const decide = (found: Versioned): Effect.Effect<Current, AutoRefreshError> =>
      usable(state, found, now)
        ? Effect.succeed({ versioned: found, renewed: false })
        : Effect.map(
          refresh(state, key, found.version, false),
          (fresh) => ({ versioned: fresh, renewed: fresh.version !== found.version })
        )
    const hit = lookup(state, key, now)
    return hit !== undefined ? decide(hit) : Effect.flatMap(loadOrFail(state, key), decide)
  })

const store = (state: State, key: TokenKey.TokenKey, token: UserAccessToken.UserAccessToken) =>
  state.store.set(key, token).pipe(
    Effect.retry({ schedule: storeRetry }),
    Effect.flatMap((versioned) => {
      state.kept.delete(TokenKey.toId(key))
      return remember(state, key, versioned)
    })
  )

const getReauthorizeUrl = (state: State, options: Parameters<Service["getReauthorizeUrl"]>[0]) =>
  Effect.gen(function*() {
    const { key, ...rest } = options
    const stored = yield* state.store.get(key)
    if (Option.isNone(stored)) return yield* new ReauthRequired({ key, reason: "Missing" })
    return yield* state.client.getReauthorizeUrl({
      ...rest,
      contractId: key.contractId,
      accessToken: stored.value.token.accessToken.value
    }).pipe(Effect.catchIf(isRefused, () => Effect.fail(new InvalidAccessToken({ key }))))
  }).pipe(Effect.withSpan("TokenManager.getReauthorizeUrl", { attributes: annotations(options.key) }))

/**
 * Builds the manager. Refreshes run in fibers of the layer's scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Service, never, DigimeClient | TokenStore | DigimeConfig | Scope.Scope> = Effect
  .gen(function*() {
    const config = yield* DigimeConfig
    const state: State = {
      config,
      client: yield* DigimeClient,
      store: yield* TokenStore,
      cache: new Map(),
      cacheTtl: Duration.toMillis(config.tokenCacheTtl),
      lead: Duration.toMillis(config.refreshLeadTime),
      kept: new Map(),
      flights: SingleFlight.make(yield* Effect.scope)
    }
    return {
      cached: (key, now) => {
        const hit = lookup(state, key, now)
        return hit !== undefined && usable(state, hit, now) ? hit : undefined
      },
      usable: (versioned, now) => usable(state, versioned, now),
      current: (key) => current(state, key),
      get: (key) =>
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          const hit = lookup(state, key, now)
          return hit !== undefined && usable(state, hit, now)
            ? Effect.succeed(hit)
            : Effect.map(current(state, key), (found) => found.versioned)
        }),
      renew: (key, rejected) => refresh(state, key, rejected, false),
      refresh: (key) => refresh(state, key, undefined, true),
      store: (key, token) => store(state, key, token),
      exchangeCodeForToken: ({ code, codeVerifier, key }) =>
        state.client.exchangeCodeForToken({ contractId: key.contractId, code, codeVerifier }).pipe(
          // The code is spent: a token that cannot be stored can only be had again by a new consent.
          Effect.tap((token) => store(state, key, token)),
          Effect.withSpan("TokenManager.exchangeCodeForToken", { attributes: annotations(key) })
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
