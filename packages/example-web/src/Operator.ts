/**
 * The operator's page: how many stored tokens are healthy, due for a refresh, or waiting for their
 * user to reconnect (read from the store's indexes), the last token events, and the refreshes of
 * the last five minutes as a server-rendered SVG chart. A real deployment puts it behind its
 * administrators' login; the example leaves it open.
 */
import { TokenEvents, TokenStore } from "@digime-effect/core"
import type { DigimeConfig } from "@digime-effect/core"
import { Clock, Duration, Effect, Queue, Stream } from "effect"
import type { Scope } from "effect"
import { escape, page } from "./Html.js"

/** What the page shows of the past: the last events, and when refreshes happened. */
export interface Recorder {
  readonly recent: () => ReadonlyArray<TokenEvents.TokenEvent>
  readonly refreshes: () => ReadonlyArray<number>
}

const recentCapacity = 20
const chartSpan = Duration.toMillis(Duration.minutes(5))
const bucket = Duration.toMillis(Duration.seconds(10))

/** Subscribes to the token events for the scope and keeps what the page shows. */
export const makeRecorder: Effect.Effect<Recorder, never, Scope.Scope> = Effect.gen(function*() {
  const events = yield* TokenEvents.TokenEvents
  const queue = yield* events.subscribe
  const recent: Array<TokenEvents.TokenEvent> = []
  let refreshes: Array<number> = []
  yield* Queue.take(queue).pipe(
    Effect.tap((event) =>
      Effect.sync(() => {
        recent.unshift(event)
        if (recent.length > recentCapacity) recent.pop()
        if (event._tag === "Refreshed") {
          refreshes.push(event.at)
          refreshes = refreshes.filter((at) => at > event.at - chartSpan)
        }
      })
    ),
    Effect.forever,
    Effect.forkScoped
  )
  return { recent: () => recent, refreshes: () => refreshes }
})

const describe = (event: TokenEvents.TokenEvent): string =>
  TokenEvents.TokenEvent.$match(event, {
    Refreshed: (e) => `version ${e.version}, access token until ${new Date(e.accessExpiresAt).toISOString()}`,
    RefreshFailed: (e) => e.error.message,
    ReauthorizationRequired: (e) => e.reason,
    RefreshTokenExpiring: (e) => `refresh token expires ${new Date(e.expiresAt).toISOString()}`,
    Stored: (e) => `version ${e.version}`,
    Deleted: () => ""
  })

// One bar per 10 seconds over the last 5 minutes, the newest on the right.
export const chart = (refreshes: ReadonlyArray<number>, now: number): string => {
  const slots = chartSpan / bucket
  const counts = Array.from({ length: slots }, () => 0)
  for (const at of refreshes) {
    const slot = slots - 1 - Math.floor((now - at) / bucket)
    if (slot >= 0 && slot < slots) counts[slot]!++
  }
  const highest = Math.max(1, ...counts)
  const width = 300 / slots
  const bars = counts.map((n, i) => {
    const height = Math.round((n / highest) * 90)
    const start = new Date(now - (slots - i) * bucket).toISOString().slice(11, 19)
    return `<rect class="bar" data-count="${n}" x="${(i * width).toFixed(1)}" y="${95 - height}" ` +
      `width="${(width - 1).toFixed(1)}" height="${height}" fill="#1d4ed8"><title>${n} at ${start}</title></rect>`
  }).join("")
  return `<svg id="refresh-chart" viewBox="0 0 300 100" width="600" height="200" role="img" ` +
    `aria-label="Refreshes per 10 seconds over the last 5 minutes">${bars}` +
    `<line x1="0" y1="95.5" x2="300" y2="95.5" stroke="#6b7280" stroke-width="1"/>` +
    `<text x="0" y="100" font-size="5" fill="#6b7280">5 min ago</text>` +
    `<text x="300" y="100" font-size="5" fill="#6b7280" text-anchor="end">now</text></svg>`
}

export const route = (recorder: Recorder, config: DigimeConfig.Service) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const lead = Duration.toMillis(config.refreshLeadTime)
    const reconnect = yield* Stream.runCount(TokenStore.streamReconnect())
    const stored = yield* Stream.runCount(
      TokenStore.streamDue({ expiry: "RefreshToken", before: Number.MAX_SAFE_INTEGER })
    )
    const due = yield* Stream.runCount(TokenStore.streamDue({ expiry: "AccessToken", before: now + lead }))
    const events = recorder.recent().map((event) =>
      `<li class="event" data-tag="${escape(event._tag)}"><time>${
        new Date(event.at).toISOString().slice(11, 19)
      }</time> ` +
      `<strong>${escape(event._tag)}</strong> ${escape(event.key.userId)} <small>${
        escape(event.key.contractId)
      }</small> ` +
      `${escape(describe(event))}</li>`
    ).join("")
    return yield* page(
      "Operator",
      `<dl id="counts">` +
        `<dt>Healthy</dt><dd id="count-healthy">${stored - due}</dd>` +
        `<dt>Refresh due</dt><dd id="count-due">${due}</dd>` +
        `<dt>Needs reconnect</dt><dd id="count-reconnect">${reconnect}</dd>` +
        `</dl><h2>Refreshes, last 5 minutes</h2>${chart(recorder.refreshes(), now)}` +
        `<h2>Last events</h2><ol id="events">${events}</ol><p><a href="/operator" id="reload">Reload</a></p>`
    )
  })
