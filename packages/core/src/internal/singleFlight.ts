/**
 * Single flight by key: of the fibers that need the same work at once, one starts it and the
 * others wait for its outcome. The work runs in a fiber of the given scope, not of the fiber that
 * started it, so that a caller interrupted while waiting does not cancel it. Registering a flight
 * and starting its fiber cannot be torn apart by an interruption: a registered flight that never
 * started would make every later caller wait forever.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** @internal */
export interface SingleFlight<A, E> {
  /** The outcome of the flight of `id` in progress, if there is one. */
  readonly join: (id: string) => Effect.Effect<A, E> | undefined
  /** Starts `work` as the flight of `id`, unless one is in progress already: then joins it. */
  readonly lead: (id: string, work: Effect.Effect<A, E>) => Effect.Effect<A, E>
}

/** @internal */
export const make = <A, E>(scope: Scope.Scope): SingleFlight<A, E> => {
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
