/**
 * The keys of the metrics that are updated with tags (`DigimeMetrics` builds its metrics from
 * them). A metric tagged with `Metric.tagged` builds its tagged key anew, and hashes it, on every
 * update; a metric made from a key that carries its tags already (`Metric.fromMetricKey`) finds its
 * state at once. Both update the same state: a key is its name, type, description and tags.
 */
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"

/** `digime_refreshes_total`, untagged: tagged `outcome`, then `contract_id`, when counted. */
/** @internal */
export const refreshes = MetricKey.counter("digime_refreshes_total", {
  description: "Refreshes sent to digi.me, by outcome",
  incremental: true
})

/**
 * `digime_refresh_duration`, with the tag `Metric.timer` gives it (`time_unit`: `milliseconds`)
 * and the timer's boundaries.
 *
 * @internal
 */
export const refreshDuration = MetricKey.histogram(
  "digime_refresh_duration",
  MetricBoundaries.exponential({ start: 0.5, factor: 2, count: 35 }),
  "Refresh latency, lock to stored result"
).pipe(MetricKey.tagged("time_unit", "milliseconds"))
