/**
 * A refresh of a stored token, from the decision to send one to the stored result: single flight
 * per key in this process, the lease in the store for every process, the refresh itself, and what
 * happens to an answer that cannot be used yet. `TokenManager` decides when to call it.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Client from "../DigimeClient.js"
import type { DigimeConfig } from "../DigimeConfig.js"
import { InvalidAccessToken, ReauthRequired, RefreshTokenExpired, TokenStoreError } from "../DigimeError.js"
import type { ApiError, InvalidOptions, VerificationError } from "../DigimeError.js"
import * as DigimeMetrics from "../DigimeMetrics.js"
import * as TokenEvents from "../TokenEvents.js"
import * as TokenKey from "../TokenKey.js"
import type { AutoRefreshError, RefreshFailure } from "../TokenManager.js"
import type { Lease, LeaseEnd, Reconnect, ReconnectReason, TokenStore, Versioned } from "../TokenStore.js"
import { expiryFields } from "../TokenStore.js"
import * as UserAccessToken from "../UserAccessToken.js"
import * as MetricKeys from "./metricKeys.js"
import type * as TokenCache from "./tokenCache.js"
import * as Tracing from "./tracing.js"
import { retryAfterFailure } from "./transport.js"

// ---------------------------------------------------------------------------------------------
// Single flight by key: of the fibers that need the same work at once, one starts it and the others
// wait for its outcome. The work runs in a fiber of the given scope, not of the fiber that started
// it, so that a caller interrupted while waiting does not cancel it. Registering a flight and
// starting its fiber cannot be torn apart by an interruption: a registered flight that never
// started would make every later caller wait forever.
// ---------------------------------------------------------------------------------------------

/** @internal */
export interface SingleFlight<A, E> {
  /** The outcome of the flight of `id` in progress, if there is one. */
  readonly join: (id: string) => Effect.Effect<A, E> | undefined
  /** Starts `work` as the flight of `id`, unless one is in progress already: then joins it. */
  readonly lead: (id: string, work: Effect.Effect<A, E>) => Effect.Effect<A, E>
  /** Starts `work` as the flight of `id`, unless one is in progress already, without waiting. */
  readonly start: (id: string, work: Effect.Effect<A, E>) => Effect.Effect<void>
}

// A flight's outcome, once its fiber ended, and the callbacks of the fibers waiting for it. (A
// `Deferred` would do, at the cost of one more object of a dozen fields per refresh.)
interface Flight<A, E> {
  exit: Exit.Exit<A, E> | undefined
  readonly waiters: Set<(exit: Exit.Exit<A, E>) => void>
}

// Waits for the flight's outcome; an interrupted waiter leaves the flight, which goes on.
const awaitFlight = <A, E>(flight: Flight<A, E>): Effect.Effect<A, E> =>
  Effect.async<A, E>((resume) => {
    if (flight.exit !== undefined) return resume(flight.exit)
    flight.waiters.add(resume)
    return Effect.sync(() => void flight.waiters.delete(resume))
  })

/** @internal */
export const makeSingleFlight = <A, E>(scope: Scope.Scope): SingleFlight<A, E> => {
  const flights = new Map<string, Flight<A, E>>()

  const start = (id: string, work: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      const flight: Flight<A, E> = { exit: undefined, waiters: new Set() }
      flights.set(id, flight)
      // The fiber itself is interruptible (time limits need that); only its start is protected.
      return Effect.interruptible(work).pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            flights.delete(id)
            flight.exit = exit
            for (const waiter of flight.waiters) waiter(exit)
            flight.waiters.clear()
          })
        ),
        Effect.forkIn(scope),
        Effect.as(flight)
      )
    })

  return {
    join: (id) => {
      const running = flights.get(id)
      return running === undefined ? undefined : awaitFlight(running)
    },
    lead: (id, work) =>
      Effect.uninterruptible(Effect.suspend(() => {
        const running = flights.get(id)
        return running === undefined ? start(id, work) : Effect.succeed(running)
      })).pipe(Effect.flatMap(awaitFlight)),
    start: (id, work) =>
      Effect.uninterruptible(Effect.suspend(() => flights.has(id) ? Effect.void : Effect.asVoid(start(id, work))))
  }
}

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
const whileSending = <A, E>(sending: Sending, self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
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

const sameLease = (a: Lease, b: Lease): boolean =>
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

// Forgets the lease once the store confirmed its end (a compare-and-set ends it too).
const forgetLease = (state: State, key: TokenKey.TokenKey, lease: Lease) =>
  Effect.sync(() => {
    const own = state.leases.get(TokenKey.toId(key))
    if (own !== undefined && sameLease(own.lease, lease)) state.leases.delete(TokenKey.toId(key))
  })

const markLease = (state: State, key: TokenKey.TokenKey, lease: Lease, releasable: boolean) =>
  Effect.sync(() => void state.leases.set(TokenKey.toId(key), { lease, releasable }))

// Ends the lease. A `Released` that fails leaves the lease known releasable (a later flight of this
// process releases it); an `Abandoned` that fails is written again in the background. Until the
// store confirms, the lease is remembered, and an unconfirmed abandoned lease is never released.
const endLease = (state: State, key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd): Effect.Effect<void> =>
  markLease(state, key, lease, end === "Released").pipe(
    Effect.zipRight(state.store.endLease(key, lease, end)),
    Effect.zipRight(forgetLease(state, key, lease)),
    Effect.catchAll(() =>
      Effect.zipRight(
        Effect.logWarning(`The end of a refresh's lease could not be written (${end}); it is tried again later`),
        endLeaseLater(state, key, lease, end)
      )
    )
  )

// In the background, until the store confirms (or the lease is no longer the key's). Each attempt
// asks the store anew: a store's effect may be one answer, decided when it was made.
const endLeaseLater = (state: State, key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd): Effect.Effect<void> =>
  Effect.suspend(() => state.store.endLease(key, lease, end)).pipe(
    Effect.zipRight(forgetLease(state, key, lease)),
    Effect.retry(Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("1 minute")))),
    Effect.ignore,
    Effect.forkIn(state.background),
    Effect.asVoid
  )

// Writes a new token over the version it replaces. A write that keeps failing leaves the token
// with this process, which writes it again later (never spending its predecessor again). The
// cache's generation is read by the caller right before the write.
const persist = (
  state: State,
  key: TokenKey.TokenKey,
  baseVersion: number,
  token: UserAccessToken.UserAccessToken,
  generation: number
): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  // The schedule is set up only after a first failure: setting one up costs every write otherwise.
  retryAfterFailure(Effect.suspend(() => state.store.compareAndSet(key, baseVersion, token)), {
    schedule: storeRetry,
    while: () => true
  }).pipe(
    Effect.tapError(() =>
      Effect.zipRight(
        Effect.sync(() => state.kept.set(TokenKey.toId(key), { key, baseVersion, token })),
        Effect.zipRight(
          Effect.logError("A refreshed token could not be stored; this process keeps it and stores it later"),
          keepSettling(state, key)
        )
      )
    ),
    Effect.flatMap(Option.match({
      onSome: (versioned) => {
        const id = TokenKey.toId(key)
        const kept = state.kept.get(id)
        if (kept?.baseVersion === baseVersion) state.kept.delete(id)
        // The write ended the lease on the version it replaced.
        if (state.leases.get(id)?.lease.version === baseVersion) state.leases.delete(id)
        return remember(state, key, versioned, generation)
      },
      // Another writer stored a newer token (a new authorization) while this refresh ran; its write
      // ended the lease too.
      onNone: () => {
        state.kept.delete(TokenKey.toId(key))
        if (state.leases.get(TokenKey.toId(key))?.lease.version === baseVersion) state.leases.delete(TokenKey.toId(key))
        return Effect.logWarning("The store holds a newer token than the one refreshed; using the stored one").pipe(
          Effect.zipRight(loadOrFail(state, key))
        )
      }
    }))
  )

// What this process still holds for the key's stored version: an answer to verify, a token to
// store. Answers the newest stored token, and the verification failure that still blocks, if any.
const settle = (
  state: State,
  key: TokenKey.TokenKey,
  current: Versioned
): Effect.Effect<
  { readonly current: Versioned; readonly blocked: VerificationError | undefined },
  ReauthRequired | TokenStoreError
> => {
  const id = TokenKey.toId(key)
  // Nothing held for the key: the usual case, answered without a generator.
  if (!state.unverified.has(id) && !state.kept.has(id)) return Effect.succeed({ current, blocked: undefined })
  return Effect.gen(function*() {
    const pending = state.unverified.get(id)
    let blocked: VerificationError | undefined
    if (pending !== undefined && pending.lease.version !== current.version) state.unverified.delete(id)
    else if (pending !== undefined) {
      const verified = yield* Effect.either(state.client.verifyTokenAnswer("refreshToken", pending.answer))
      if (Either.isRight(verified)) {
        state.unverified.delete(id)
        state.kept.set(id, { key, baseVersion: current.version, token: verified.right })
      } else if (verifiableLater(verified.left)) {
        blocked = verified.left
      } else {
        // Spent, and unusable: nobody may send that refresh token again.
        state.unverified.delete(id)
        yield* endLease(state, key, pending.lease, "Abandoned")
      }
    }
    const kept = state.kept.get(id)
    if (kept !== undefined && kept.baseVersion !== current.version) state.kept.delete(id)
    else if (kept !== undefined) {
      current = yield* persist(state, key, kept.baseVersion, kept.token, state.cache.generation())
      yield* Effect.logDebug("Stored the token kept from an earlier refresh")
    }
    return { current, blocked }
  })
}

// An answer that may verify later: the key set could not be had, or does not list the answer's key
// yet (a new key not everywhere yet). Kept under its lease rather than abandoned.
const verifiableLater = (error: VerificationError): boolean =>
  error.reason === "KeySetUnavailable" || error.reason === "UnknownKey"

// One fiber per key, in the background, until nothing is kept for the key any more.
const keepSettling = (state: State, key: TokenKey.TokenKey): Effect.Effect<void> =>
  Effect.suspend(() => {
    const id = TokenKey.toId(key)
    if (state.settling.has(id)) return Effect.void
    state.settling.add(id)
    const once = Effect.flatMap(loadOrFail(state, key), (current) => settle(state, key, current)).pipe(
      Effect.tapErrorTag("ReauthRequired", () =>
        // Deleted meanwhile: nothing to store a token over, nothing to verify it for.
        Effect.sync(() => {
          state.kept.delete(id)
          state.unverified.delete(id)
        }))
    )
    return once.pipe(
      Effect.flatMap(({ blocked }) => blocked === undefined ? Effect.void : Effect.fail(blocked)),
      Effect.retry({
        schedule: Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("1 minute"))),
        while: () => state.kept.has(id) || state.unverified.has(id)
      }),
      Effect.ignore,
      Effect.ensuring(Effect.sync(() => state.settling.delete(id))),
      Effect.forkIn(state.background),
      Effect.asVoid
    )
  })

/**
 * At shutdown: one last attempt to store each token still kept (within the request timeout), and a
 * log line for what is lost with the process (a token that could not be stored, an answer that
 * could not be verified: their users must authorize again).
 *
 * @internal
 */
export const flushKept = (state: State): Effect.Effect<void> =>
  Effect.forEach(
    [...state.kept.values()],
    ({ baseVersion, key, token }) =>
      state.store.compareAndSet(key, baseVersion, token).pipe(
        Effect.timeout(state.config.requestTimeout),
        Effect.tap(() => Effect.sync(() => state.kept.delete(TokenKey.toId(key)))),
        Effect.catchAll(() => Effect.logError("A refreshed token could not be stored before shutdown; it is lost")),
        withKey(key, "AutoRefresh.flushKept")
      ),
    { discard: true }
  ).pipe(
    Effect.zipRight(Effect.suspend(() =>
      state.unverified.size === 0
        ? Effect.void
        : Effect.logError(
          `${state.unverified.size} refresh answers could not be verified before shutdown; they are lost`
        )
    ))
  )

// The refresh counter of each outcome and contract, made once from a key that carries both tags: a
// metric tagged with `Metric.tagged` builds its tagged key (and hashes it) at every update.
// Outcomes are a few tags, contracts the configured ones.
const refreshCounters = new Map<string, Metric.Metric.Counter<number>>()
const countRefresh = (key: TokenKey.TokenKey, outcome: string) => {
  const id = `${outcome}\u0000${key.contractId}`
  let counter = refreshCounters.get(id)
  if (counter === undefined) {
    if (refreshCounters.size >= 1_000) refreshCounters.clear()
    // The tags in the order `Metric.tagged` gives them (outcome, then contract_id): the same state
    // as `DigimeMetrics.refreshes` tagged so.
    counter = Metric.fromMetricKey(
      MetricKey.taggedWithLabels(MetricKeys.refreshes, [
        MetricLabel.make("outcome", outcome),
        MetricLabel.make("contract_id", key.contractId)
      ])
    )
    refreshCounters.set(id, counter)
  }
  return Metric.increment(counter)
}

/** @internal */
export const isRefused = (error: { readonly _tag: string }): error is ApiError =>
  error._tag === "ApiError" && (error as ApiError).status === 401 && (error as ApiError).code === "InvalidToken"

// Whether a refresh that failed this way may have spent its refresh token: the answer was lost
// (the connection failed, no answer in time), a server error or a request timeout was answered
// (by digi.me after processing it, or by a gateway in front of it: an error body proves neither),
// or a success answer arrived but could not be read. Only a client error (4xx: refused, rate
// limited) and a request never sent (no connection, bad input) spent nothing.
const maybeSpent = (error: Client.RequestFailure | Client.TokenCallError): boolean =>
  error._tag === "RequestError"
    ? error.reason === "Transport" || error.reason === "Timeout"
    : error._tag === "ApiError"
    ? error.status >= 500 || error.status === 408 || error.status < 400
    : error._tag === "ResponseError"

// digi.me answers an expired and an invalid refresh token alike (401 InvalidToken); only the
// message tells them apart, and its documents disagree on it: both lead to the same next step. A
// stored refresh token that is blank cannot be sent: the user must reauthorize too.
const refusal = (
  key: TokenKey.TokenKey,
  error: Client.RequestFailure | InvalidOptions
): Client.RequestFailure | RefreshTokenExpired | ReauthRequired =>
  isRefused(error)
    ? /expired/i.test(error.description)
      ? new RefreshTokenExpired({ key, detectedBy: "Server" })
      : new ReauthRequired({ key, reason: "RefreshTokenInvalid" })
    : error._tag === "InvalidOptions"
    ? new ReauthRequired({ key, reason: "RefreshTokenInvalid" })
    : error

// From taking the lease until the new token is stored. It runs in a flight's fiber (a caller's
// interruption does not reach it) and is counted in `sending`: shutdown waits for it, and no
// lease is taken once shutdown has begun. `None` when another process took the lease first.
const leaseAndSend = (state: State, key: TokenKey.TokenKey, current: Versioned, lease: Lease) =>
  whileSending(
    state.sending,
    Effect.suspend(() => {
      // Shutdown has begun: the flight is about to be interrupted, no lease is taken any more.
      if (state.closing.value) return Effect.interrupt
      // Known releasable until the send: if the answer to taking it is lost, nothing was sent.
      state.leases.set(TokenKey.toId(key), { lease, releasable: true })
      return state.store.acquireLease(key, lease).pipe(
        Effect.tapError(() => endLeaseLater(state, key, lease, "Released")),
        Effect.flatMap((acquired) =>
          acquired
            ? Effect.map(sendUnderLease(state, key, current, lease), Option.some)
            : Effect.as(forgetLease(state, key, lease), Option.none())
        )
      )
    })
  )

// What the first look of a flight did: nothing (the loop reads), read the stored token without
// taking the lease, or took the lease and refreshed.
type FirstLook =
  | { readonly _tag: "Skipped" }
  | { readonly _tag: "Read"; readonly current: Versioned }
  | { readonly _tag: "Refreshed"; readonly stored: Versioned }

const skipped: Effect.Effect<FirstLook> = Effect.succeed({ _tag: "Skipped" })

// The first look of a flight, on a store that takes a lease and reads in one step
// (`acquireLeaseAndGet`), when the version to refresh is known (the one found due or rejected; the
// cached one when forced) and this process holds nothing for the key (no lease of its own left to
// end, nothing kept to store or verify): the lease and the re-read in one round trip. A lease is
// taken only on the stored version, not marked "needs reconnect", with no lease taken on it since
// it was written, where the loop below would take it too; the refresh token's expiry is checked
// under it. Refused, the row read in the same step goes to the loop. Like `leaseAndSend`, it is
// counted in `sending` from the lease to the stored token.
const firstLook = (
  state: State,
  key: TokenKey.TokenKey,
  reason: Reason,
  now: number,
  seen: { version: number; reported: boolean }
): Effect.Effect<FirstLook, AutoRefreshError> => {
  const acquireLeaseAndGet = state.store.acquireLeaseAndGet
  if (acquireLeaseAndGet === undefined) return skipped
  const id = TokenKey.toId(key)
  if (state.leases.has(id) || state.kept.has(id) || state.unverified.has(id)) return skipped
  const version = reason._tag === "Forced" ? state.cache.get(key, now)?.version : reason.version
  if (version === undefined) return skipped
  const lease: Lease = { holder: state.holder, version, until: Math.ceil(now + state.lease) }
  return whileSending(
    state.sending,
    Effect.suspend(() => {
      // Shutdown has begun: the flight is about to be interrupted, no lease is taken any more.
      if (state.closing.value) return Effect.interrupt
      // Known releasable until the send: if the answer to taking it is lost, nothing was sent.
      state.leases.set(id, { lease, releasable: true })
      seen.version = version
      const generation = state.cache.generation()
      return Metric.increment(DigimeMetrics.storeReads).pipe(
        Effect.zipRight(acquireLeaseAndGet(key, lease)),
        Effect.tapError(() => endLeaseLater(state, key, lease, "Released")),
        Effect.flatMap(({ acquired, current }): Effect.Effect<FirstLook, AutoRefreshError> => {
          const found = Option.getOrUndefined(current)
          // Taken by this step, or by the same step repeated after its answer was lost.
          const leased = found !== undefined && found.version === version &&
            (acquired || (found.lease !== undefined && sameLease(found.lease, lease)))
          if (!leased) {
            // A store that says it took the lease but shows another version: nothing was sent.
            const ended = acquired ? endLease(state, key, lease, "Released") : forgetLease(state, key, lease)
            if (found === undefined) {
              return Effect.zipRight(
                ended,
                Effect.suspend(() => {
                  state.cache.delete(key)
                  return Effect.fail(new ReauthRequired({ key, reason: "Missing" }))
                })
              )
            }
            return ended.pipe(
              Effect.zipRight(remember(state, key, found, generation)),
              Effect.as<FirstLook>({ _tag: "Read", current: found })
            )
          }
          return remember(state, key, found, generation).pipe(
            Effect.zipRight(Clock.currentTimeMillis),
            Effect.flatMap((at): Effect.Effect<FirstLook, AutoRefreshError> => {
              if (UserAccessToken.isRefreshTokenExpired(found.token, DateTime.unsafeMake(at))) {
                // Nothing was sent under it.
                return Effect.zipRight(
                  endLease(state, key, lease, "Released"),
                  Effect.fail(new RefreshTokenExpired({ key, detectedBy: "Clock" }))
                )
              }
              return Effect.logDebug("Refreshing the token").pipe(
                Effect.zipRight(sendUnderLease(state, key, found, lease)),
                Effect.map((stored): FirstLook => ({ _tag: "Refreshed", stored }))
              )
            })
          )
        })
      )
    })
  )
}

// digi.me's answer did not arrive, or refused the refresh token.
const sendFailed = (
  state: State,
  key: TokenKey.TokenKey,
  current: Versioned,
  lease: Lease,
  failure: Client.RequestFailure | InvalidOptions
): Effect.Effect<never, AutoRefreshError> => {
  const spent = maybeSpent(failure)
  const error = refusal(key, failure)
  return endLease(state, key, lease, spent ? "Abandoned" : "Released").pipe(
    Effect.zipRight(countRefresh(key, error._tag)),
    Effect.zipRight(spent ? reportAbandoned(state, key, current.version, error) : Effect.void),
    Effect.zipRight(Effect.fail(error))
  )
}

// An answer arrived (the refresh token is spent) but did not verify.
const unverified = (
  state: State,
  key: TokenKey.TokenKey,
  current: Versioned,
  lease: Lease,
  answer: Redacted.Redacted<string>,
  error: VerificationError
): Effect.Effect<never, VerificationError> =>
  countRefresh(key, error._tag).pipe(
    Effect.zipRight(
      verifiableLater(error)
        // Kept, unread, under its lease: verified (and stored) when the key set is back.
        ? Effect.suspend(() => {
          state.unverified.set(TokenKey.toId(key), { lease, answer })
          return keepSettling(state, key)
        })
        : Effect.zipRight(
          endLease(state, key, lease, "Abandoned"),
          reportAbandoned(state, key, current.version, error)
        )
    ),
    Effect.zipRight(Effect.fail(error))
  )

// The new token, verified: stored over the version it replaces, then announced.
const storeRefreshed = (
  state: State,
  key: TokenKey.TokenKey,
  current: Versioned,
  token: UserAccessToken.UserAccessToken
): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  countRefresh(key, "refreshed").pipe(
    Effect.zipRight(Tracing.annotate("digime.outcome", "refreshed")),
    Effect.zipRight(Effect.suspend(() => persist(state, key, current.version, token, state.cache.generation()))),
    Effect.tap((stored) =>
      logDebugWith("Refreshed token stored", { "digime.version": stored.version }).pipe(
        Effect.zipRight(checkLifetime(state, stored.token)),
        // Not when another writer's newer token was found instead of ours.
        Effect.zipRight(
          stored.token === token
            ? publish(
              state,
              (at) =>
                TokenEvents.TokenEvent.Refreshed({ key, at, version: stored.version, ...expiryFields(stored.token) })
            )
            : Effect.void
        )
      )
    )
  )

// A debug line with annotations, made only when debug lines are logged: annotating costs every
// refresh otherwise (`Effect.logDebug` alone returns at once below the minimum level).
const logDebugWith = (message: string, annotations: Record<string, unknown>): Effect.Effect<void> =>
  FiberRef.getWith(
    FiberRef.currentMinimumLogLevel,
    (minimum) =>
      LogLevel.greaterThan(minimum, LogLevel.Debug)
        ? Effect.void
        : Effect.annotateLogs(Effect.logDebug(message), annotations)
  )

// The version's refresh token may be spent and is never sent again: only the user can help now.
// That is reported at once (rather than when its access token expires), and the flight's own
// error is not reported a second time as a failure that may pass.
const reportAbandoned = (state: State, key: TokenKey.TokenKey, version: number, error: object) =>
  Effect.zipRight(
    Effect.sync(() => state.reported.add(error)),
    report(state, key, version, new ReauthRequired({ key, reason: "RefreshOutcomeUnknown" }))
  )

// Without a generator (every refresh runs it): the send, the verification, the write, each failure
// handled by its own function.
const sendUnderLease = (state: State, key: TokenKey.TokenKey, current: Versioned, lease: Lease) =>
  Effect.suspend(() => {
    // From here on the refresh token may be spent: the lease is released only on digi.me's refusal.
    state.leases.set(TokenKey.toId(key), { lease, releasable: false })
    return Effect.matchEffect(
      state.client.requestRefresh({ contractId: key.contractId, refreshToken: current.token.refreshToken.value }),
      {
        onFailure: (failure) => sendFailed(state, key, current, lease, failure),
        onSuccess: (answer) =>
          Effect.matchEffect(state.client.verifyTokenAnswer("refreshToken", answer), {
            onFailure: (error) => unverified(state, key, current, lease, answer, error),
            onSuccess: (token) => storeRefreshed(state, key, current, token)
          })
      }
    )
  }).pipe(
    // A defect or an interruption after the send: the refresh token may be spent.
    Effect.onExit((exit) =>
      Exit.isFailure(exit) && (Cause.isDie(exit.cause) || Cause.isInterrupted(exit.cause)) &&
        state.leases.get(TokenKey.toId(key))?.releasable === false
        ? endLease(state, key, lease, "Abandoned")
        : Effect.void
    )
  )

/**
 * Why a refresh is asked for: `Due` (the token of `version` expires within the lead time),
 * `Rejected` (digi.me refused the access token of `version`: it cannot be served any more), or
 * `Forced` (now, whatever the stored token).
 *
 * @internal
 */
export type Reason =
  | { readonly _tag: "Due"; readonly version: number }
  | { readonly _tag: "Rejected"; readonly version: number }
  | { readonly _tag: "Forced" }

// Re-reads the store and decides: reuse a newer token, serve the stored one under another's lease,
// wait for that lease's outcome, fail when it was abandoned, or take the lease and refresh.
const refreshFlight = (
  state: State,
  key: TokenKey.TokenKey,
  reason: Reason
): Effect.Effect<Versioned, AutoRefreshError> => {
  // The version the flight last looked at, and whether its failure was reported already.
  const seen = { version: 0, reported: false }
  return Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    let refused = 0
    const first = state.store.acquireLeaseAndGet === undefined
      ? { _tag: "Skipped" } as const
      : yield* firstLook(state, key, reason, started, seen)
    if (first._tag === "Refreshed") return first.stored
    // The row the first look read, if it did: the first turn of the loop decides on it.
    let read = first._tag === "Read" ? first.current : undefined
    for (let polls = 0;; polls++) {
      const found = read
      read = undefined
      const settled = yield* Effect.flatMap(
        found === undefined ? loadOrFail(state, key) : Effect.succeed(found),
        (versioned) => settle(state, key, versioned)
      )
      const current = settled.current
      seen.version = current.version
      const now = yield* Clock.currentTimeMillis
      const asked = reason._tag !== "Forced" && current.version === reason.version
      if (reason._tag !== "Forced" && !asked && usable(state, current, now)) {
        yield* Tracing.annotate("digime.outcome", "reused")
        yield* Effect.logDebug("The store holds a token that needs no refresh")
        return current
      }
      const mark = markOf(current)
      if (UserAccessToken.isRefreshTokenExpired(current.token, DateTime.unsafeMake(now))) {
        seen.reported = mark !== undefined
        return yield* new RefreshTokenExpired({ key, detectedBy: "Clock" })
      }
      const servable = reason._tag !== "Forced" && !(reason._tag === "Rejected" && asked) &&
        DateTime.toEpochMillis(current.token.accessToken.expiresAt) > now
      if (mark !== undefined) {
        // Found before: its refresh token is never sent again, its event is not published again.
        if (servable) return current
        seen.reported = true
        return yield* Effect.fail(markError(key, mark))
      }
      const held = current.lease
      if (held !== undefined && held.version === current.version) {
        if (settled.blocked !== undefined) return servable ? current : yield* Effect.fail(settled.blocked)
        if (held.holder === state.holder) {
          const own = state.leases.get(TokenKey.toId(key))
          if (own !== undefined && own.releasable && sameLease(own.lease, held)) {
            // Ours, and nothing was sent under it (the answer to taking it was lost) or digi.me
            // refused what was: release it, then look again. A store that refuses is an error.
            yield* state.store.endLease(key, held, "Released")
            yield* forgetLease(state, key, held)
            continue
          }
          // Ours, and its refresh token may be spent (its end could not be written yet, or this
          // process lost track of it): never sent again. Served while valid, like another's.
          if (own === undefined || !own.releasable) yield* endLeaseLater(state, key, held, "Abandoned")
          if (servable) return current
          return yield* new ReauthRequired({ key, reason: "RefreshOutcomeUnknown" })
        }
        if (servable) {
          yield* Tracing.annotate("digime.outcome", "served under lease")
          return current
        }
        if (held.until <= now) return yield* new ReauthRequired({ key, reason: "RefreshOutcomeUnknown" })
        // Another process refreshes: wait for its outcome, never beyond its lease.
        yield* Effect.sleep(Math.min(held.until - now, 50 * 2 ** Math.min(polls, 5)))
        continue
      }
      const lease: Lease = { holder: state.holder, version: current.version, until: Math.ceil(now + state.lease) }
      yield* Effect.logDebug("Refreshing the token")
      const sent = yield* leaseAndSend(state, key, current, lease)
      if (Option.isSome(sent)) return sent.value
      // Refused, and the next read shows why (another's lease, a newer token). A store that keeps
      // refusing without showing a lease must not make this loop spin: back off, and give up.
      refused++
      if (now - started > state.lease) {
        return yield* new TokenStoreError({
          operation: "acquireLease",
          key,
          description: "the store keeps refusing the lease without showing one"
        })
      }
      if (refused > 1) yield* Effect.sleep(Math.min(50 * 2 ** Math.min(refused - 2, 5), 1000))
    }
  }).pipe(
    Effect.tapError((error) =>
      Effect.zipRight(
        Tracing.annotate("digime.outcome", error._tag),
        seen.reported || seen.version === 0 || state.reported.has(error)
          ? Effect.void
          : report(state, key, seen.version, error)
      )
    ),
    Metric.trackDuration(DigimeMetrics.refreshDuration),
    // The work of a flight's fiber (see `refresh` and `ahead`), which ends with it.
    withKeyForFiber(key, "AutoRefresh.refresh")
  )
}

// The mark "needs reconnect" on the stored version, if any (one on an older version does not count).
const markOf = (versioned: Versioned): Reconnect | undefined =>
  versioned.reconnect !== undefined && versioned.reconnect.version === versioned.version
    ? versioned.reconnect
    : undefined

const markError = (
  key: TokenKey.TokenKey,
  mark: Reconnect
): RefreshTokenExpired | ReauthRequired | InvalidAccessToken =>
  mark.reason === "RefreshTokenExpired"
    ? new RefreshTokenExpired({ key, detectedBy: "Server" })
    : mark.reason === "InvalidAccessToken"
    ? new InvalidAccessToken({ key })
    : new ReauthRequired({ key, reason: mark.reason })

/** @internal */
export const publish = (state: State, event: (at: number) => TokenEvents.TokenEvent): Effect.Effect<void> =>
  Effect.clockWith((clock) => state.events.publish(event(clock.unsafeCurrentTimeMillis())))

// What the user must do, if only the user can fix it.
const reconnectReason = (error: AutoRefreshError | InvalidAccessToken): ReconnectReason | undefined =>
  error._tag === "RefreshTokenExpired"
    ? "RefreshTokenExpired"
    : error._tag === "InvalidAccessToken"
    ? "InvalidAccessToken"
    : error._tag === "ReauthRequired"
    ? (error.reason === "Missing" ? undefined : error.reason)
    : undefined

/**
 * A refresh of version `version` failed: the user must connect again (the version is marked so in
 * the store, and `ReauthorizationRequired` published), or it may pass (`RefreshFailed`). Nothing is
 * reported when nothing is stored. A store that cannot write the mark is logged; the event is
 * published all the same.
 *
 * @internal
 */
export const report = (
  state: State,
  key: TokenKey.TokenKey,
  version: number,
  error: AutoRefreshError | InvalidAccessToken
): Effect.Effect<void> => {
  if (error._tag === "ReauthRequired" && error.reason === "Missing") return Effect.void
  const reason = reconnectReason(error)
  if (reason === undefined) {
    return publish(state, (at) => TokenEvents.TokenEvent.RefreshFailed({ key, at, error: error as RefreshFailure }))
  }
  return Effect.clockWith((clock) => {
    const at = clock.unsafeCurrentTimeMillis()
    return state.store.markReconnect(key, { reason, version, at }).pipe(
      Effect.tap((marked) => marked ? Effect.sync(() => state.cache.invalidate(key)) : Effect.void),
      Effect.catchAll(() => Effect.as(Effect.logWarning("The mark \"needs reconnect\" could not be stored"), true)),
      Effect.flatMap((marked) =>
        marked ? state.events.publish(TokenEvents.TokenEvent.ReauthorizationRequired({ key, at, reason })) : Effect.void
      )
    )
  })
}

// How long a refresh ahead that did not renew the token waits before it is tried again: the token
// is still valid, and the caller that finds it within the wait margin refreshes it in any case.
const aheadRetry = 5_000
const aheadFailedCapacity = 10_000

/**
 * Within the lead time, still valid past the wait margin: one refresh in the background, unless
 * one is in flight already or the last one for this version did not renew it a moment ago. Its
 * failure reaches the events (and the store's "needs reconnect" mark), never the caller.
 *
 * @internal
 */
export const ahead = (state: State, key: TokenKey.TokenKey, found: Versioned, now: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    const id = TokenKey.toId(key)
    const failed = state.aheadFailed.get(id)
    if (failed !== undefined && failed.version === found.version && now < failed.retryAt) return Effect.void
    if (state.flights.join(id) !== undefined) return Effect.void
    const backOff = Effect.clockWith((clock) =>
      Effect.sync(() => {
        if (state.aheadFailed.size >= aheadFailedCapacity) state.aheadFailed.clear()
        state.aheadFailed.set(id, { version: found.version, retryAt: clock.unsafeCurrentTimeMillis() + aheadRetry })
      })
    )
    return state.flights.start(
      id,
      refreshFlight(state, key, { _tag: "Due", version: found.version }).pipe(
        Effect.tap((fresh) =>
          fresh.version === found.version ? backOff : Effect.sync(() => state.aheadFailed.delete(id))
        ),
        Effect.tapError(() => backOff)
      )
    )
  })

// Written without generators: in a burst, every waiting fiber runs this once.
/** @internal */
export const refresh = (
  state: State,
  key: TokenKey.TokenKey,
  reason: Reason
): Effect.Effect<Versioned, AutoRefreshError> =>
  Effect.suspend(() => {
    const id = TokenKey.toId(key)
    const work = refreshFlight(state, key, reason)
    const running = state.flights.join(id)
    if (running === undefined) return state.flights.lead(id, work)
    return Metric.increment(DigimeMetrics.coalescedWaiters).pipe(
      Effect.zipRight(running),
      // The flight we joined may have started before our token was found due or rejected.
      Effect.flatMap((joined) =>
        reason._tag === "Due" || (reason._tag === "Rejected" && joined.version !== reason.version)
          ? Effect.succeed(joined)
          : state.flights.lead(id, work)
      )
    )
  })
