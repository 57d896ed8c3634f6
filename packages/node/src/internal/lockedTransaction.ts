/**
 * A transaction that holds a lock, on one reserved connection, in the shape of @effect/sql's
 * `makeWithTransaction`: written once, with the dialect's steps (open a transaction and take the
 * lock; take it in a transaction already open; how a busy lock is retried) given as options.
 *
 * Unlike `SqlClient.withTransaction`, the transaction commits when the effect ends, whether it
 * succeeded, failed or was interrupted, so that what the effect wrote is kept. A transaction that
 * failed to begin or to take the lock is rolled back. The failures of the lock are handed to the
 * caller's `onFailure` before the effect runs (or after it, for the commit), so they are never
 * confused with the effect's own.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"

/**
 * Another connection holds the lock, and it was not waited for: `begin` is tried again as the
 * `retryBusy` schedule says, with the connection released in between.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockBusy extends Data.TaggedError("LockBusy")<{}> {}

/**
 * The lock was not acquired within the lock timeout.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockTimeout extends Data.TaggedError("LockTimeout")<{ readonly timeout: Duration.Duration }> {
  override get message(): string {
    return `the lock was not acquired within ${Duration.format(this.timeout)}`
  }
}

/**
 * The effect succeeded but the transaction holding the lock could not be committed: what it wrote
 * is lost.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommitFailed extends Data.TaggedError("CommitFailed")<{}> {
  override get message(): string {
    return "the transaction holding the lock could not be committed"
  }
}

/**
 * What `onFailure` receives.
 *
 * @since 0.1.0
 * @category errors
 */
export type LockFailure = SqlError | LockTimeout | CommitFailed

/**
 * The steps of a dialect. `begin` and `lock` run on the transaction's connection: statements of
 * the `SqlClient` inside them use it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** A connection of the client's own, for the time of the transaction. */
  readonly reserve: Effect.Effect<Connection, SqlError, Scope.Scope>
  /** Opens a transaction and takes the lock of `id` in it; `LockBusy` when it would have to wait. */
  readonly begin: (id: string) => Effect.Effect<void, SqlError | LockTimeout | LockBusy>
  /** Takes the lock of `id` in the transaction already open (a nested lock, or the caller's). */
  readonly lock: (id: string) => Effect.Effect<void, SqlError | LockTimeout>
  /** How a `LockBusy` failure of `begin` is retried; when it stops, the lock has timed out. */
  readonly retryBusy: Schedule.Schedule<unknown, unknown>
  readonly lockTimeout: Duration.Duration
  readonly commit: (conn: Connection) => Effect.Effect<void, SqlError>
  readonly rollback: (conn: Connection) => Effect.Effect<void, SqlError>
}

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

const onConnection = <A, E, R>(conn: Connection, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, SqlClient.TransactionConnection, [conn, 0] as const)

/**
 * Runs `effect` inside a transaction that holds the lock of `id`, on one connection; inside an
 * open transaction, takes the lock in it until that transaction ends. The lock's failures go
 * through `onFailure`; the effect's own are passed through untouched.
 *
 * @since 0.1.0
 * @category models
 */
export interface WithLock {
  <A, E, R, F>(
    id: string,
    effect: Effect.Effect<A, E, R>,
    onFailure: (failure: LockFailure) => F
  ): Effect.Effect<A, E | F, R>
}

/**
 * The `WithLock` of a dialect's steps.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): WithLock => {
  // One try: a reserved connection with the transaction begun and the lock held, or nothing held.
  // Runs in the caller's uninterruptible region: only `begin` is interruptible (`restore`), and it is
  // rolled back unless it succeeded.
  const attempt = (id: string, restore: Restore) =>
    Effect.flatMap(Scope.make(), (scope) =>
      Scope.extend(options.reserve, scope).pipe(
        Effect.tap((conn) =>
          restore(onConnection(conn, options.begin(id))).pipe(
            Effect.onError(() => Effect.ignore(options.rollback(conn)))
          )
        ),
        Effect.map((conn) => [scope, conn] as const),
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
      ))

  // Tries again while the lock is busy, sleeping (interruptibly) as `retryBusy` says.
  const acquire = (id: string, restore: Restore) =>
    Effect.flatMap(Schedule.driver(options.retryBusy), (driver) => {
      const loop: Effect.Effect<readonly [Scope.CloseableScope, Connection], SqlError | LockTimeout> = attempt(
        id,
        restore
      ).pipe(
        Effect.catchTag("LockBusy", (busy) =>
          restore(driver.next(busy)).pipe(
            Effect.matchEffect({
              onFailure: () => Effect.fail(new LockTimeout({ timeout: options.lockTimeout })),
              onSuccess: () => loop
            })
          ))
      )
      return loop
    })

  // Commits even when the effect failed or was interrupted. A failed COMMIT is rolled back; answers
  // whether that lost the writes of an effect that succeeded (a failure is reported as it is).
  const commit = (conn: Connection, exit: Exit.Exit<unknown, unknown>): Effect.Effect<boolean> =>
    options.commit(conn).pipe(
      Effect.as(false),
      Effect.catchAll(() => Effect.as(Effect.ignore(options.rollback(conn)), Exit.isSuccess(exit)))
    )

  return <A, E, R, F>(
    id: string,
    effect: Effect.Effect<A, E, R>,
    onFailure: (failure: LockFailure) => F
  ): Effect.Effect<A, E | F, R> =>
    Effect.flatMap(
      Effect.serviceOption(SqlClient.TransactionConnection),
      Option.match({
        onSome: () => Effect.zipRight(Effect.mapError(options.lock(id), onFailure), effect),
        onNone: () =>
          Effect.uninterruptibleMask((restore) =>
            acquire(id, restore).pipe(
              Effect.mapError(onFailure),
              Effect.flatMap(([scope, conn]) =>
                Effect.exit(restore(onConnection(conn, effect))).pipe(
                  Effect.flatMap((exit) =>
                    commit(conn, exit).pipe(
                      Effect.ensuring(Scope.close(scope, exit)),
                      Effect.flatMap((lost): Effect.Effect<A, E | F> =>
                        lost ? Effect.fail(onFailure(new CommitFailed())) : exit
                      )
                    )
                  )
                )
              )
            )
          )
      })
    )
}
