/**
 * The end of this manager's leases: written to the store, remembered until the store confirms it,
 * and written again in the background when it could not be. An abandoned lease (its refresh token
 * may be spent) is never released.
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as TokenKey from "../TokenKey.js"
import type { Lease, LeaseEnd } from "../TokenStore.js"
import { sameLease, type State } from "./managerState.js"

// Forgets the lease once the store confirmed its end (a compare-and-set ends it too).
/** @internal */
export const forgetLease = (state: State, key: TokenKey.TokenKey, lease: Lease) =>
  Effect.sync(() => {
    const own = state.leases.get(TokenKey.toId(key))
    if (own !== undefined && sameLease(own.lease, lease)) state.leases.delete(TokenKey.toId(key))
  })

const markLease = (state: State, key: TokenKey.TokenKey, lease: Lease, releasable: boolean) =>
  Effect.sync(() => void state.leases.set(TokenKey.toId(key), { lease, releasable }))

// Ends the lease. A `Released` that fails leaves the lease known releasable (a later flight of this
// process releases it); an `Abandoned` that fails is written again in the background. Until the
// store confirms, the lease is remembered, and an unconfirmed abandoned lease is never released.
/** @internal */
export const endLease = (state: State, key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd): Effect.Effect<void> =>
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
/** @internal */
export const endLeaseLater = (state: State, key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd): Effect.Effect<void> =>
  Effect.suspend(() => state.store.endLease(key, lease, end)).pipe(
    Effect.zipRight(forgetLease(state, key, lease)),
    Effect.retry(Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("1 minute")))),
    Effect.ignore,
    Effect.forkIn(state.background),
    Effect.asVoid
  )
