/**
 * Keeps every stored token fresh in the background, across instances: a daemon that claims due
 * keys from the `TokenStore` in batches and refreshes each through the `TokenManager`.
 *
 * - **Refresh ahead.** A key whose access token expires within the lead time (plus one interval,
 *   so that callers rarely find it due) is refreshed before anyone asks (`refreshAhead`).
 * - **Idle grants kept alive.** A key whose refresh token expires within `keepAliveWithin` (1 day
 *   by default) is refreshed, so that a user who does not come back keeps a working grant; when
 *   that refresh fails in a way that may pass, `RefreshTokenExpiring` is published (and the key is
 *   tried again when its claim ends). With `keepAlive: "warn"` the event is published and nothing
 *   is refreshed.
 * - **One refresh per token version.** Each key is refreshed as the version it was claimed at
 *   (`TokenManager.refreshVersion`): a caller (or another instance) that refreshed it meanwhile
 *   wins, and single flight and the store's leases do the rest.
 * - **Several instances, no coordinator.** A claim moves the key's due time to the end of the claim
 *   (`claimTime`) in one atomic write (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so instances split
 *   the due keys among them; a key whose refresh failed is due again when its claim ends. SQLite
 *   and the memory store serve one instance.
 * - **No bursts.** At most `concurrency` refreshes at once per instance, batches of `batchSize`,
 *   and between rounds that find little to do, a sleep of `interval` with ±20% jitter.
 * - **Users told.** Outcomes reach `TokenEvents` (published by the token manager): `Refreshed`,
 *   `RefreshFailed`, `ReauthorizationRequired` (the key is then marked "needs reconnect" in the
 *   store, where `TokenStore.streamReconnect` lists it, and is never claimed again until the user
 *   connects again).
 *
 * @example
 * import { TokenUpkeep } from "@digime-effect/core"
 *
 * // Provide it next to the library's layer; it runs for the life of the layer.
 * const UpkeepLive = TokenUpkeep.layer({ keepAliveWithin: "2 days", concurrency: 8 })
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import { DigimeConfig } from "./DigimeConfig.js"
import { InvalidConfig } from "./DigimeError.js"
import type { TokenStoreError } from "./DigimeError.js"
import * as TokenEvents from "./TokenEvents.js"
import { TokenManager } from "./TokenManager.js"
import { TokenStore } from "./TokenStore.js"
import type { Due, Expiry } from "./TokenStore.js"

/**
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** The sleep between rounds that claimed less than a full batch; default 30 seconds, ±20% jitter. */
  readonly interval?: Duration.DurationInput | undefined
  /** Keys claimed per round and per expiry (access token, refresh token); default 100, at most 10,000. */
  readonly batchSize?: number | undefined
  /** Refreshes at once; default 4. */
  readonly concurrency?: number | undefined
  /**
   * How long a claimed key is kept from other instances; a key whose refresh failed is tried again
   * when its claim ends. Default: twice `DigimeConfig.refreshLeaseTime`; at least that lease.
   */
  readonly claimTime?: Duration.DurationInput | undefined
  /** Whether access tokens are refreshed before callers find them due; default `true`. */
  readonly refreshAhead?: boolean | undefined
  /**
   * What happens when a refresh token expires within `keepAliveWithin`: `"refresh"` (default)
   * refreshes the token, which renews its refresh token too; `"warn"` only publishes
   * `RefreshTokenExpiring` (once per `keepAliveWithin`).
   */
  readonly keepAlive?: "refresh" | "warn" | undefined
  /** Default 1 day. */
  readonly keepAliveWithin?: Duration.DurationInput | undefined
}

/**
 * What one round did: keys claimed, refreshed (by this round or, meanwhile, by someone else),
 * failed with a refresh failure that may pass (tried again when the claim ends), found to need
 * reconnecting, and refresh tokens reported expiring.
 *
 * @since 0.3.0
 * @category models
 */
export interface Round {
  readonly claimed: number
  readonly refreshed: number
  readonly failed: number
  readonly reconnect: number
  readonly expiring: number
}

/**
 * @since 0.3.0
 * @category models
 */
export interface Service {
  /** One round now: claims due keys (up to a batch of each expiry) and handles them. */
  readonly runOnce: Effect.Effect<Round, TokenStoreError>
  /** The totals of every round so far. */
  readonly totals: Effect.Effect<Round>
}

/**
 * @since 0.3.0
 * @category services
 */
export class TokenUpkeep extends Context.Tag("@digime-effect/core/TokenUpkeep")<TokenUpkeep, Service>() {}

interface Settings {
  readonly interval: number
  readonly batchSize: number
  readonly concurrency: number
  readonly claimTime: number
  readonly refreshAhead: boolean
  readonly keepAlive: "refresh" | "warn"
  readonly keepAliveWithin: number
}

const durationOf = (
  field: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.Duration
): Effect.Effect<number, InvalidConfig> => {
  if (input === undefined) return Effect.succeed(Math.ceil(Duration.toMillis(fallback)))
  const decoded = Duration.decodeUnknown(input)
  if (decoded._tag === "None" || !Duration.isFinite(decoded.value) || Duration.toMillis(decoded.value) <= 0) {
    return Effect.fail(new InvalidConfig({ field, reason: "must be a finite, positive duration" }))
  }
  // Whole milliseconds: the stores keep epoch milliseconds as integers.
  return Effect.succeed(Math.ceil(Duration.toMillis(decoded.value)))
}

const integerOf = (field: string, input: number | undefined, fallback: number, max: number) =>
  input === undefined
    ? Effect.succeed(fallback)
    : Number.isSafeInteger(input) && input >= 1 && input <= max
    ? Effect.succeed(input)
    : Effect.fail(new InvalidConfig({ field, reason: `must be an integer from 1 to ${max}` }))

const settingsOf = (options: Options): Effect.Effect<Settings, InvalidConfig, DigimeConfig> =>
  Effect.gen(function*() {
    const config = yield* DigimeConfig
    const lease = Duration.toMillis(config.refreshLeaseTime)
    const claimTime = yield* durationOf("claimTime", options.claimTime, Duration.times(config.refreshLeaseTime, 2))
    if (claimTime < lease) {
      return yield* new InvalidConfig({ field: "claimTime", reason: "must not be shorter than refreshLeaseTime" })
    }
    if (options.keepAlive !== undefined && options.keepAlive !== "refresh" && options.keepAlive !== "warn") {
      return yield* new InvalidConfig({ field: "keepAlive", reason: "must be \"refresh\" or \"warn\"" })
    }
    return {
      interval: yield* durationOf("interval", options.interval, Duration.seconds(30)),
      batchSize: yield* integerOf("batchSize", options.batchSize, 100, 10_000),
      concurrency: yield* integerOf("concurrency", options.concurrency, 4, 1_000),
      claimTime,
      refreshAhead: options.refreshAhead ?? true,
      keepAlive: options.keepAlive ?? "refresh",
      keepAliveWithin: yield* durationOf("keepAliveWithin", options.keepAliveWithin, Duration.days(1))
    }
  })

const empty: Round = { claimed: 0, refreshed: 0, failed: 0, reconnect: 0, expiring: 0 }

const add = (a: Round, b: Round): Round => ({
  claimed: a.claimed + b.claimed,
  refreshed: a.refreshed + b.refreshed,
  failed: a.failed + b.failed,
  reconnect: a.reconnect + b.reconnect,
  expiring: a.expiring + b.expiring
})

/**
 * The upkeep service, without its daemon: rounds run when `runOnce` is called. Fails with
 * `InvalidConfig` for a bad option.
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, InvalidConfig, DigimeConfig | TokenManager | TokenStore> =>
  Effect.gen(function*() {
    const settings = yield* settingsOf(options)
    const config = yield* DigimeConfig
    const manager = yield* TokenManager
    const store = yield* TokenStore
    const events = yield* TokenEvents.TokenEvents
    const lead = Math.ceil(Duration.toMillis(config.refreshLeadTime))
    let totals = empty

    // One key: refreshed as the version it was claimed at. The manager reports every outcome to
    // the events; here it is only counted.
    // An expired refresh token goes to the manager too, which fails it by the Clock (no request)
    // and marks the key "needs reconnect".
    const handle = (due: Due, expiry: Expiry, now: number): Effect.Effect<Round> => {
      const expiring = Effect.clockWith((clock) =>
        events.publish(TokenEvents.TokenEvent.RefreshTokenExpiring({
          key: due.key,
          at: clock.unsafeCurrentTimeMillis(),
          expiresAt: due.refreshExpiresAt
        }))
      )
      if (expiry === "RefreshToken" && settings.keepAlive === "warn" && due.refreshExpiresAt > now) {
        return Effect.as(expiring, { ...empty, claimed: 1, expiring: 1 })
      }
      return Effect.map(Effect.either(manager.refreshVersion(due.key, due.version)), (outcome): Round => {
        if (Either.isRight(outcome)) {
          return { ...empty, claimed: 1, refreshed: outcome.right.version !== due.version ? 1 : 0 }
        }
        const error = outcome.left
        const reconnect = error._tag === "RefreshTokenExpired" || error._tag === "InvalidAccessToken" ||
          (error._tag === "ReauthRequired" && error.reason !== "Missing")
        return reconnect ? { ...empty, claimed: 1, reconnect: 1 } : { ...empty, claimed: 1, failed: 1 }
      }).pipe(
        // A grant that could not be kept alive this time: the application hears it expires soon.
        Effect.tap((round) =>
          expiry === "RefreshToken" && round.failed > 0 ? Effect.as(expiring, undefined) : Effect.void
        ),
        Effect.map((round) => expiry === "RefreshToken" && round.failed > 0 ? { ...round, expiring: 1 } : round)
      )
    }

    // A claim looks `window` ahead of now; it moves each key's due time to `before + hold`, so that
    // the claims of the next `hold` (which look as far ahead) do not find it again.
    const claim = (expiry: Expiry, now: number, window: number, hold: number) =>
      store.claimDue({ expiry, before: now + window, until: now + window + hold, limit: settings.batchSize })

    const runOnce = Effect.gen(function*() {
      const now = yield* Effect.clockWith((clock) => Effect.succeed(clock.unsafeCurrentTimeMillis()))
      const access = settings.refreshAhead
        ? yield* claim("AccessToken", now, lead + settings.interval, settings.claimTime)
        : []
      // Its failure does not lose the access batch claimed already: that one is handled all the same.
      const refreshClaim = yield* Effect.either(claim(
        "RefreshToken",
        now,
        settings.keepAliveWithin,
        // A warned key is claimed again once its refresh token has expired (it expires within the
        // window), to be marked "needs reconnect"; it is not warned twice.
        settings.keepAlive === "warn" ? Math.max(settings.claimTime, settings.keepAliveWithin) : settings.claimTime
      ))
      const refresh = Either.isRight(refreshClaim) ? refreshClaim.right : []
      const work = [
        ...access.map((due) => handle(due, "AccessToken", now)),
        ...refresh.filter((due) => !access.some((other) => other.id === due.id)).map((due) =>
          handle(due, "RefreshToken", now)
        )
      ]
      const rounds = yield* Effect.all(work, { concurrency: settings.concurrency })
      const round = rounds.reduce(add, empty)
      totals = add(totals, round)
      if (round.claimed > 0) {
        yield* Effect.logDebug("Token upkeep round").pipe(Effect.annotateLogs({ ...round }))
      }
      if (Either.isLeft(refreshClaim)) return yield* Effect.fail(refreshClaim.left)
      return round
    }).pipe(Effect.withSpan("TokenUpkeep.round"))

    return { runOnce, totals: Effect.sync(() => totals) } satisfies Service
  })

/**
 * Runs rounds for the life of the scope: at once again after a round that claimed a batch's worth
 * and did not fail it all, otherwise after `interval` (±20%). A store that fails (or a defect) is
 * logged and tried again after `interval`: the daemon never stops before its scope closes.
 *
 * @since 0.3.0
 * @category constructors
 */
export const run = (
  service: Service,
  options: Options = {}
): Effect.Effect<void, InvalidConfig, DigimeConfig | Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* settingsOf(options)
    const pause = Effect.flatMap(
      Random.nextRange(0.8, 1.2),
      (factor) => Effect.sleep(Duration.millis(Math.round(settings.interval * factor)))
    )
    // At once again only after a round that claimed a batch's worth and got some of it done: a
    // round whose every refresh failed (digi.me down) waits like an idle one.
    const round = service.runOnce.pipe(
      Effect.flatMap((done) =>
        done.claimed >= settings.batchSize && done.failed < done.claimed ? Effect.yieldNow() : pause
      ),
      Effect.catchAllCause((cause) =>
        Effect.zipRight(Effect.logError("Token upkeep could not claim due keys; trying again later", cause), pause)
      )
    )
    yield* Effect.forkScoped(Effect.forever(round))
  })

/**
 * The upkeep service with its daemon, for the life of the layer.
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<TokenUpkeep, InvalidConfig, DigimeConfig | TokenManager | TokenStore> =>
  Layer.scoped(
    TokenUpkeep,
    Effect.tap(make(options), (service) => run(service, options))
  )
