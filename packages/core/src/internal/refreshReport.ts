/**
 * What the outside learns of a refresh: the refresh counter by outcome, and a failure's report,
 * the store's mark "needs reconnect" and the `ReauthorizationRequired` event when only the user can
 * fix it, `RefreshFailed` when it may pass.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import { InvalidAccessToken, ReauthRequired, RefreshTokenExpired } from "../DigimeError.js"
import * as TokenEvents from "../TokenEvents.js"
import type * as TokenKey from "../TokenKey.js"
import type { AutoRefreshError, RefreshFailure } from "../TokenManager.js"
import type { Reconnect, ReconnectReason, Versioned } from "../TokenStore.js"
import { publish, type State } from "./managerState.js"
import * as MetricKeys from "./metricKeys.js"

// The refresh counter of each outcome and contract, made once from a key that carries both tags: a
// metric tagged with `Metric.tagged` builds its tagged key (and hashes it) at every update.
// Outcomes are a few tags, contracts the configured ones.
const refreshCounters = new Map<string, Metric.Metric.Counter<number>>()
/** @internal */
export const countRefresh = (key: TokenKey.TokenKey, outcome: string) => {
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

// The version's refresh token may be spent and is never sent again: only the user can help now.
// That is reported at once (rather than when its access token expires), and the flight's own
// error is not reported a second time as a failure that may pass.
/** @internal */
export const reportAbandoned = (state: State, key: TokenKey.TokenKey, version: number, error: object) =>
  Effect.zipRight(
    Effect.sync(() => state.reported.add(error)),
    report(state, key, version, new ReauthRequired({ key, reason: "RefreshOutcomeUnknown" }))
  )

// The mark "needs reconnect" on the stored version, if any (one on an older version does not count).
/** @internal */
export const markOf = (versioned: Versioned): Reconnect | undefined =>
  versioned.reconnect !== undefined && versioned.reconnect.version === versioned.version
    ? versioned.reconnect
    : undefined

/** @internal */
export const markError = (
  key: TokenKey.TokenKey,
  mark: Reconnect
): RefreshTokenExpired | ReauthRequired | InvalidAccessToken =>
  mark.reason === "RefreshTokenExpired"
    ? new RefreshTokenExpired({ key, detectedBy: "Server" })
    : mark.reason === "InvalidAccessToken"
    ? new InvalidAccessToken({ key })
    : new ReauthRequired({ key, reason: mark.reason })

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
