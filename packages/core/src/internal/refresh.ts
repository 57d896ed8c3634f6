/**
 * A refresh of a stored token, from the decision to send one to the stored result: single flight
 * per key in this process (`singleFlight.ts`), the lease in the store for every process, the
 * refresh itself; what happens to an answer that cannot be used yet is in `settle.ts`, the
 * reports of its outcome in `refreshReport.ts`. `TokenManager` decides when to call it.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Client from "../DigimeClient.js"
import { ReauthRequired, RefreshTokenExpired, TokenStoreError } from "../DigimeError.js"
import type { ApiError, InvalidOptions, VerificationError } from "../DigimeError.js"
import * as DigimeMetrics from "../DigimeMetrics.js"
import * as TokenEvents from "../TokenEvents.js"
import * as TokenKey from "../TokenKey.js"
import type { AutoRefreshError } from "../TokenManager.js"
import type { Lease, Versioned } from "../TokenStore.js"
import { expiryFields } from "../TokenStore.js"
import * as UserAccessToken from "../UserAccessToken.js"
import { endLease, endLeaseLater, forgetLease } from "./leases.js"
import {
  checkLifetime,
  loadOrFail,
  publish,
  remember,
  sameLease,
  type State,
  usable,
  whileSending,
  withKeyForFiber
} from "./managerState.js"
import { countRefresh, markError, markOf, report, reportAbandoned } from "./refreshReport.js"
import { keepSettling, persist, settle, verifiableLater } from "./settle.js"
import * as Tracing from "./tracing.js"

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
