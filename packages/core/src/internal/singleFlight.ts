/**
 * Single flight by key: of the fibers that need the same work at once, one starts it and the others
 * wait for its outcome. The work runs in a fiber of the given scope, not of the fiber that started
 * it, so that a caller interrupted while waiting does not cancel it. Registering a flight and
 * starting its fiber cannot be torn apart by an interruption: a registered flight that never
 * started would make every later caller wait forever.
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

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
