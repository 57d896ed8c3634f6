/**
 * A refresh of a stored token, from the decision to send one to the stored result: single flight
 * per key in this process, the lease in the store for every process, the refresh itself, and what
 * happens to an answer that cannot be used yet. `TokenManager` decides when to call it.
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Client from "../DigimeClient.js"
import type { DigimeConfig } from "../DigimeConfig.js"
import { ReauthRequired, RefreshTokenExpired } from "../DigimeError.js"
import type { ApiError, InvalidOptions, TokenStoreError, VerificationError } from "../DigimeError.js"
import * as DigimeMetrics from "../DigimeMetrics.js"
import * as TokenKey from "../TokenKey.js"
import type { AutoRefreshError } from "../TokenManager.js"
import type { Lease, LeaseEnd, TokenStore, Versioned } from "../TokenStore.js"
import * as UserAccessToken from "../UserAccessToken.js"
import type * as TokenCache from "./tokenCache.js"

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
}

/** @internal */
export const makeSingleFlight = <A, E>(scope: Scope.Scope): SingleFlight<A, E> => {
  const flights = new Map<string, Deferred.Deferred<A, E>>()

  const start = (id: string, work: Effect.Effect<A, E>) =>
    Effect.flatMap(Deferred.make<A, E>(), (deferred) => {
      flights.set(id, deferred)
      // The fiber itself is interruptible (time limits need that); only its start is protected.
      return Effect.interruptible(work).pipe(
        Effect.onExit((exit) => Effect.zipRight(Effect.sync(() => flights.delete(id)), Deferred.done(deferred, exit))),
        Effect.forkIn(scope),
        Effect.as(deferred)
      )
    })

  return {
    join: (id) => {
      const running = flights.get(id)
      return running === undefined ? undefined : Deferred.await(running)
    },
    lead: (id, work) =>
      Effect.uninterruptible(Effect.suspend(() => {
        const running = flights.get(id)
        return running === undefined ? start(id, work) : Effect.succeed(running)
      })).pipe(Effect.flatMap(Deferred.await))
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
  readonly lease: number
  /** New tokens whose write failed, by `TokenKey.toId`, with the version they replace. */
  readonly kept: Map<string, { readonly baseVersion: number; readonly token: UserAccessToken.UserAccessToken }>
  /** Answers that arrived but could not be verified yet, with the lease they were sent under. */
  readonly unverified: Map<string, { readonly lease: Lease; readonly answer: Redacted.Redacted<string> }>
  /** Keys with a fiber that keeps trying to verify or store what is kept. */
  readonly settling: Set<string>
  readonly flights: SingleFlight<Versioned, AutoRefreshError>
  /** One permit per refresh being sent: shutdown takes them all, so it waits for those. */
  readonly sending: Effect.Semaphore
  readonly background: Scope.Scope
}

/** @internal */
export const maxSending = Number.MAX_SAFE_INTEGER

// Store writes: 5 attempts over about 1.5 s before the write is reported as failed.
/** @internal */
export const storeRetry = Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(4)))

/** @internal */
export const annotations = (key: TokenKey.TokenKey) => ({
  "digime.contract_id": key.contractId,
  "digime.key": TokenKey.hash(key)
})

/** @internal */
export const usable = (state: State, versioned: Versioned, now: number): boolean =>
  DateTime.toEpochMillis(versioned.token.accessToken.expiresAt) - now > state.lead

/** @internal */
export const remember = (state: State, key: TokenKey.TokenKey, versioned: Versioned): Effect.Effect<Versioned> =>
  Effect.clockWith((clock) =>
    Effect.sync(() => {
      state.cache.set(key, versioned, clock.unsafeCurrentTimeMillis())
      return versioned
    })
  )

/** @internal */
export const loadOrFail = (
  state: State,
  key: TokenKey.TokenKey
): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  Metric.increment(DigimeMetrics.storeReads).pipe(
    Effect.zipRight(state.store.get(key)),
    Effect.flatMap(Option.match({
      onNone: () => {
        state.cache.delete(key)
        return Effect.fail(new ReauthRequired({ key, reason: "Missing" }))
      },
      onSome: (versioned) => remember(state, key, versioned)
    }))
  )

const endLease = (state: State, key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd) =>
  // When the store is down, the lease ends by itself when it expires (and counts as abandoned).
  Effect.ignore(state.store.endLease(key, lease, end))

// Writes a new token over the version it replaces. A write that keeps failing leaves the token
// with this process, which writes it again later (never spending its predecessor again).
const persist = (
  state: State,
  key: TokenKey.TokenKey,
  baseVersion: number,
  token: UserAccessToken.UserAccessToken
): Effect.Effect<Versioned, ReauthRequired | TokenStoreError> =>
  state.store.compareAndSet(key, baseVersion, token).pipe(
    Effect.retry({ schedule: storeRetry }),
    Effect.tapError(() =>
      Effect.zipRight(
        Effect.sync(() => state.kept.set(TokenKey.toId(key), { baseVersion, token })),
        Effect.zipRight(
          Effect.logError("A refreshed token could not be stored; this process keeps it and stores it later"),
          keepSettling(state, key)
        )
      )
    ),
    Effect.flatMap(Option.match({
      onSome: (versioned) => {
        const kept = state.kept.get(TokenKey.toId(key))
        if (kept?.baseVersion === baseVersion) state.kept.delete(TokenKey.toId(key))
        return remember(state, key, versioned)
      },
      // Another writer stored a newer token (a new authorization) while this refresh ran.
      onNone: () => {
        state.kept.delete(TokenKey.toId(key))
        return Effect.logWarning("The store holds a newer token than the one refreshed; using the stored one").pipe(
          Effect.zipRight(loadOrFail(state, key))
        )
      }
    }))
  )

// What this process still holds for the key's stored version: an answer to verify, a token to
// store. Answers the newest stored token, and the verification failure that still blocks, if any.
const settle = (state: State, key: TokenKey.TokenKey, current: Versioned) =>
  Effect.gen(function*() {
    const id = TokenKey.toId(key)
    const pending = state.unverified.get(id)
    let blocked: VerificationError | undefined
    if (pending !== undefined && pending.lease.version !== current.version) state.unverified.delete(id)
    else if (pending !== undefined) {
      const verified = yield* Effect.either(state.client.verifyTokenAnswer("refreshToken", pending.answer))
      if (Either.isRight(verified)) {
        state.unverified.delete(id)
        state.kept.set(id, { baseVersion: current.version, token: verified.right })
      } else if (verified.left.reason === "KeySetUnavailable") {
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
      current = yield* persist(state, key, kept.baseVersion, kept.token)
      yield* Effect.logDebug("Stored the token kept from an earlier refresh")
    }
    return { current, blocked }
  })

// One fiber per key, in the background, until nothing is kept for the key any more.
const keepSettling = (state: State, key: TokenKey.TokenKey): Effect.Effect<void> =>
  Effect.suspend(() => {
    const id = TokenKey.toId(key)
    if (state.settling.has(id)) return Effect.void
    state.settling.add(id)
    const once = Effect.flatMap(loadOrFail(state, key), (current) => settle(state, key, current))
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

const countRefresh = (key: TokenKey.TokenKey, outcome: string) =>
  Metric.update(
    DigimeMetrics.refreshes.pipe(Metric.tagged("outcome", outcome), Metric.tagged("contract_id", key.contractId)),
    1
  )

/** @internal */
export const isRefused = (error: { readonly _tag: string }): error is ApiError =>
  error._tag === "ApiError" && (error as ApiError).status === 401 && (error as ApiError).code === "InvalidToken"

// Statuses a gateway answers when the request may have reached digi.me and been processed.
const gatewayUnknown: ReadonlySet<number> = new Set([500, 502, 504, 520, 524])

// Whether a refresh that failed this way may have spent its refresh token: the answer was lost
// (the connection failed, no answer in time, or a gateway answered), or a success answer arrived
// but could not be read. An answer of digi.me's own (an error body) and a request never sent
// (no connection, bad input) spent nothing.
const maybeSpent = (error: Client.RequestFailure | Client.TokenCallError): boolean =>
  error._tag === "RequestError"
    ? error.reason === "Transport" || error.reason === "Timeout"
    : error._tag === "ApiError"
    ? error.code === "Unknown" && gatewayUnknown.has(error.status)
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
// interruption does not reach it) and holds a permit of `sending`: shutdown waits for it, and no
// lease is taken once shutdown has begun. `None` when another process took the lease first.
const leaseAndSend = (state: State, key: TokenKey.TokenKey, current: Versioned, lease: Lease) =>
  state.sending.withPermits(1)(
    Effect.flatMap(
      state.store.acquireLease(key, lease),
      (acquired) => acquired ? Effect.map(sendUnderLease(state, key, current, lease), Option.some) : Effect.succeedNone
    )
  )

const sendUnderLease = (state: State, key: TokenKey.TokenKey, current: Versioned, lease: Lease) =>
  Effect.gen(function*() {
    const sent = yield* Effect.either(state.client.requestRefresh({
      contractId: key.contractId,
      refreshToken: current.token.refreshToken.value
    }))
    if (Either.isLeft(sent)) {
      yield* endLease(state, key, lease, maybeSpent(sent.left) ? "Abandoned" : "Released")
      const error = refusal(key, sent.left)
      yield* countRefresh(key, error._tag)
      return yield* Effect.fail(error)
    }
    const verified = yield* Effect.either(state.client.verifyTokenAnswer("refreshToken", sent.right))
    if (Either.isLeft(verified)) {
      yield* countRefresh(key, verified.left._tag)
      if (verified.left.reason === "KeySetUnavailable") {
        // Kept, unread, under its lease: verified (and stored) when the key set is back.
        state.unverified.set(TokenKey.toId(key), { lease, answer: sent.right })
        yield* keepSettling(state, key)
      } else {
        yield* endLease(state, key, lease, "Abandoned")
      }
      return yield* Effect.fail(verified.left)
    }
    yield* countRefresh(key, "refreshed")
    yield* Effect.annotateCurrentSpan("digime.outcome", "refreshed")
    const stored = yield* persist(state, key, current.version, verified.right)
    yield* Effect.logDebug("Refreshed token stored").pipe(Effect.annotateLogs("digime.version", stored.version))
    return stored
  })

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
): Effect.Effect<Versioned, AutoRefreshError> =>
  Effect.gen(function*() {
    for (let polls = 0;; polls++) {
      const settled = yield* Effect.flatMap(loadOrFail(state, key), (found) => settle(state, key, found))
      const current = settled.current
      const now = yield* Clock.currentTimeMillis
      const asked = reason._tag !== "Forced" && current.version === reason.version
      if (reason._tag !== "Forced" && !asked && usable(state, current, now)) {
        yield* Effect.annotateCurrentSpan("digime.outcome", "reused")
        yield* Effect.logDebug("The store holds a token that needs no refresh")
        return current
      }
      if (UserAccessToken.isRefreshTokenExpired(current.token, DateTime.unsafeMake(now))) {
        return yield* new RefreshTokenExpired({ key, detectedBy: "Clock" })
      }
      const servable = reason._tag !== "Forced" && !(reason._tag === "Rejected" && asked) &&
        DateTime.toEpochMillis(current.token.accessToken.expiresAt) > now
      const held = current.lease
      if (held !== undefined && held.version === current.version) {
        if (settled.blocked !== undefined) return servable ? current : yield* Effect.fail(settled.blocked)
        if (held.holder === state.holder && held.until > now) {
          // Ours, yet no send of ours is behind it (this flight is the key's only one, and nothing
          // is kept for it): the answer to taking it was lost. Nothing was sent: release it.
          yield* endLease(state, key, held, "Released")
          continue
        }
        if (servable) {
          yield* Effect.annotateCurrentSpan("digime.outcome", "served under lease")
          return current
        }
        if (held.until <= now) return yield* new ReauthRequired({ key, reason: "RefreshOutcomeUnknown" })
        // Another process refreshes: wait for its outcome, never beyond its lease.
        yield* Effect.sleep(Math.min(held.until - now, 50 * 2 ** Math.min(polls, 5)))
        continue
      }
      const lease: Lease = { holder: state.holder, version: current.version, until: now + state.lease }
      yield* Effect.logDebug("Refreshing the token")
      const sent = yield* leaseAndSend(state, key, current, lease)
      if (Option.isSome(sent)) return sent.value
    }
  }).pipe(
    Effect.tapError((error) => Effect.annotateCurrentSpan("digime.outcome", error._tag)),
    Metric.trackDuration(DigimeMetrics.refreshDuration),
    Effect.annotateLogs(annotations(key)),
    Effect.withSpan("AutoRefresh.refresh", { attributes: annotations(key) })
  )

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
