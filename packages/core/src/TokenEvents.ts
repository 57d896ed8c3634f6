/**
 * What happens to stored tokens, as events: refreshed, a refresh that failed and may succeed
 * later, a user who must connect again, a refresh token about to expire, a token stored by an
 * authorization, a token deleted. The `TokenManager` and `TokenUpkeep` publish them, whoever asked
 * for the refresh (a caller, a refresh ahead in the background, the upkeep daemon); read them as a
 * `Stream` (`stream`) or hand them to a callback (`layerCallback`), to send a webhook, an email or
 * a metric.
 *
 * Publishing never waits for a reader: each subscriber has a buffer of `capacity` events (1,024
 * by default) and a reader that falls behind loses the oldest ones. Events carry the key (user id
 * and contract id: they are meant for the application) and never a token value.
 *
 * Without `TokenEvents.layer` (which `Digime.layer` includes) events go nowhere.
 *
 * @example
 * import { TokenEvents } from "@digime-effect/core"
 * import { Effect, Layer } from "effect"
 *
 * // Logs every user who must connect again.
 * const ReconnectAlerts = TokenEvents.layerCallback((event) =>
 *   event._tag === "ReauthorizationRequired"
 *     ? Effect.logWarning(`user ${event.key.userId} must reconnect (${event.reason})`)
 *     : Effect.void
 * )
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { InvalidOptions } from "./DigimeError.js"
import type * as TokenKey from "./TokenKey.js"
import type { RefreshFailure } from "./TokenManager.js"
import type { ReconnectReason } from "./TokenStore.js"

/**
 * An event of a stored token. Every event has the key it is about and `at`, when it happened
 * (epoch milliseconds, by the `Clock`).
 *
 * - `Refreshed`: a refresh stored a new token (`version`, with its two expiries).
 * - `RefreshFailed`: a refresh failed in a way that may pass (digi.me or the store unreachable, an
 *   answer that could not be verified yet); the stored token is unchanged.
 * - `ReauthorizationRequired`: the user must connect again (`reason`); the key is marked "needs
 *   reconnect" in the store, where `TokenStore.streamReconnect` lists it.
 * - `RefreshTokenExpiring`: the refresh token expires at `expiresAt` and upkeep does not keep
 *   this grant alive (or could not yet).
 * - `Stored`: an authorization stored a token (`version`).
 * - `Deleted`: the key's token was deleted.
 *
 * @since 0.3.0
 * @category models
 */
export type TokenEvent = Data.TaggedEnum<{
  Refreshed: {
    readonly key: TokenKey.TokenKey
    readonly at: number
    readonly version: number
    readonly accessExpiresAt: number
    readonly refreshExpiresAt: number
  }
  RefreshFailed: { readonly key: TokenKey.TokenKey; readonly at: number; readonly error: RefreshFailure }
  ReauthorizationRequired: { readonly key: TokenKey.TokenKey; readonly at: number; readonly reason: ReconnectReason }
  RefreshTokenExpiring: { readonly key: TokenKey.TokenKey; readonly at: number; readonly expiresAt: number }
  Stored: { readonly key: TokenKey.TokenKey; readonly at: number; readonly version: number }
  Deleted: { readonly key: TokenKey.TokenKey; readonly at: number }
}>

/**
 * Constructors and matchers of `TokenEvent`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const TokenEvent = Data.taggedEnum<TokenEvent>()

/**
 * @since 0.3.0
 * @category models
 */
export interface Service {
  /** Hands the event to every subscriber; never waits. */
  readonly publish: (event: TokenEvent) => Effect.Effect<void>
  /** A subscription for the scope: every event published after it is made is in the queue. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<TokenEvent>, never, Scope.Scope>
}

const discard: Service = {
  publish: () => Effect.void,
  subscribe: Queue.bounded<TokenEvent>(1)
}

/**
 * Where events go. Its default (without `layer`) discards them.
 *
 * @since 0.3.0
 * @category services
 */
export class TokenEvents extends Context.Reference<TokenEvents>()("@digime-effect/core/TokenEvents", {
  defaultValue: (): Service => discard
}) {}

/**
 * Events to subscribers, each with a buffer of `capacity` events (default 1,024) that drops the
 * oldest when its reader falls behind. A `capacity` that is not a positive integer fails with
 * `InvalidOptions`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: { readonly capacity?: number | undefined } = {}
): Effect.Effect<Service, InvalidOptions, Scope.Scope> =>
  Effect.gen(function*() {
    const capacity = options.capacity ?? 1024
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      return yield* new InvalidOptions({
        operation: "TokenEvents.make",
        field: "capacity",
        reason: "must be a positive integer"
      })
    }
    const hub = yield* Effect.acquireRelease(PubSub.sliding<TokenEvent>(capacity), PubSub.shutdown)
    return {
      publish: (event) => Effect.asVoid(PubSub.publish(hub, event)),
      subscribe: PubSub.subscribe(hub)
    }
  })

/**
 * @since 0.3.0
 * @category layers
 */
export const layer: Layer.Layer<TokenEvents> = Layer.scoped(TokenEvents, Effect.orDie(make()))

/**
 * The events published from the moment the stream starts, for as long as it runs.
 *
 * @since 0.3.0
 * @category accessors
 */
export const stream: Stream.Stream<TokenEvent> = Stream.unwrapScoped(
  Effect.map(Effect.flatMap(TokenEvents, (events) => events.subscribe), (queue) => Stream.fromQueue(queue))
)

/**
 * Hands every event to `callback`, one at a time and in order, for the life of the layer. The
 * subscription is made when the layer is built, so no event published after that is missed. A
 * callback that fails or dies is logged, and the next event is handed over all the same.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerCallback = <R>(callback: (event: TokenEvent) => Effect.Effect<void, unknown, R>): Layer.Layer<
  never,
  never,
  R
> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const events = yield* TokenEvents
    const queue = yield* events.subscribe
    yield* Queue.take(queue).pipe(
      Effect.flatMap((event) =>
        Effect.catchAllCause(
          callback(event),
          (cause) => Effect.logWarning("A token event callback failed", cause)
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )
  }))
