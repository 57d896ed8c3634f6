/**
 * What a refresh leaves to do when its new token cannot be stored, or its answer verified, at once:
 * kept by this process, stored or verified later (in the background, at the next flight, at
 * shutdown), never sending the spent refresh token again.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type { ReauthRequired, TokenStoreError } from "../DigimeError.js"
import type { VerificationError } from "../DigimeError.js"
import * as TokenKey from "../TokenKey.js"
import type { Versioned } from "../TokenStore.js"
import type * as UserAccessToken from "../UserAccessToken.js"
import { endLease } from "./leases.js"
import { loadOrFail, remember, type State, storeRetry, withKey } from "./managerState.js"
import { retryAfterFailure } from "./transport.js"

// Writes a new token over the version it replaces. A write that keeps failing leaves the token
// with this process, which writes it again later (never spending its predecessor again). The
// cache's generation is read by the caller right before the write.
/** @internal */
export const persist = (
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
/** @internal */
export const settle = (
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
/** @internal */
export const verifiableLater = (error: VerificationError): boolean =>
  error.reason === "KeySetUnavailable" || error.reason === "UnknownKey"

// One fiber per key, in the background, until nothing is kept for the key any more.
/** @internal */
export const keepSettling = (state: State, key: TokenKey.TokenKey): Effect.Effect<void> =>
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
