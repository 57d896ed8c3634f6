/**
 * The metrics digime-effect records, as Effect `Metric`s: export them with
 * `@effect/opentelemetry` (or read them with `Metric.value`). No metric carries a token, a user id
 * or a key; tags are contract ids, outcomes and reasons.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Metric from "effect/Metric"
import type * as MetricKeyType from "effect/MetricKeyType"
import type * as MetricState from "effect/MetricState"
import * as MetricKeys from "./internal/metricKeys.js"

/**
 * Refreshes that reached digi.me, tagged `outcome` (`refreshed` or the error's tag) and
 * `contract_id`.
 *
 * @since 0.1.0
 * @category models
 */
export const refreshes: Metric.Metric.Counter<number> = Metric.fromMetricKey(MetricKeys.refreshes)

/**
 * How long a refresh takes, from the decision to refresh (in this process) to the stored result:
 * a `Metric.timer` (milliseconds, tagged `time_unit`), built from a key that carries its tag so
 * that an update does not build the tagged key again.
 *
 * @since 0.1.0
 * @category models
 */
export const refreshDuration: Metric.Metric<
  MetricKeyType.MetricKeyType.Histogram,
  Duration.Duration,
  MetricState.MetricState.Histogram
> = Metric.mapInput(Metric.fromMetricKey(MetricKeys.refreshDuration), Duration.toMillis)

/**
 * Callers that needed a refresh and joined one already in flight instead of starting their own.
 *
 * @since 0.1.0
 * @category models
 */
export const coalescedWaiters: Metric.Metric.Counter<number> = Metric.counter("digime_refresh_coalesced_total", {
  description: "Callers that waited for a refresh already in flight",
  incremental: true
})

/**
 * Reads of the token store (the hot path serves valid tokens from memory instead).
 *
 * @since 0.1.0
 * @category models
 */
export const storeReads: Metric.Metric.Counter<number> = Metric.counter("digime_store_reads_total", {
  description: "Token store reads",
  incremental: true
})

/**
 * Tokens signed by digi.me that failed verification, tagged `reason`.
 *
 * @since 0.1.0
 * @category models
 */
export const verificationFailures: Metric.Metric.Counter<number> = Metric.counter(
  "digime_verification_failures_total",
  { description: "Tokens from digi.me that failed verification, by reason", incremental: true }
)
