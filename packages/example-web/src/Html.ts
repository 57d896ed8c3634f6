/**
 * The example's HTML: escaping, the page every route renders into, redirects, the expiry
 * countdowns, and the page for the token errors only the user can fix by reconnecting.
 */
import type { AutoRefresh } from "@digime-effect/core"
import { HttpServerResponse } from "@effect/platform"
import { DateTime, Effect } from "effect"

export const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

// The callback's query holds a code and a state: its page must not pass them on.
const pageHeaders = { "cache-control": "no-store", "referrer-policy": "no-referrer" }

export const page = (
  title: string,
  body: string,
  status = 200
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.succeed(HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>` +
      `<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}` +
      `a.button,button{display:inline-block;padding:.6rem 1rem;background:#1d4ed8;color:#fff;border:0;` +
      `border-radius:.4rem;text-decoration:none;font:inherit;cursor:pointer}dt{font-weight:600}li{margin:.3rem 0}` +
      `pre{background:#f3f4f6;padding:1rem;white-space:pre-wrap;overflow-wrap:anywhere}input[type=text]{padding:.5rem;width:20rem}` +
      `.notice{background:#dcfce7;padding:.6rem 1rem;border-radius:.4rem}</style></head>` +
      `<body><h1>${escape(title)}</h1>${body}</body></html>`,
    { status, contentType: "text/html; charset=utf-8", headers: pageHeaders }
  ))

export const redirect = (location: string) =>
  HttpServerResponse.redirect(location, { status: 303, headers: pageHeaders })

export const countdown = (id: string, at: DateTime.Utc) =>
  `<span id="${id}" data-at="${DateTime.toEpochMillis(at)}">${escape(DateTime.formatIso(at))}</span>`

export const countdownScript = `<script>
for (const el of document.querySelectorAll("[data-at]")) {
  const tick = () => {
    const left = Math.round((Number(el.dataset.at) - Date.now()) / 1000)
    el.textContent = left > 0 ? "in " + left + " s" : "expired " + (-left) + " s ago"
  }
  tick(); setInterval(tick, 1000)
}
</script>`

/** The errors of a token that only the user can fix, by connecting again. */
export const isTokenState = (error: { readonly _tag: string }): error is AutoRefresh.TokenStateError =>
  error._tag === "RefreshTokenExpired" || error._tag === "ReauthRequired" || error._tag === "InvalidAccessToken"

export const reconnectPage = (error: AutoRefresh.TokenStateError) =>
  page(
    "Reconnect digi.me",
    `<p id="error" data-tag="${escape(error._tag)}">${escape(error.message)}</p>` +
      `<p><a class="button" id="reconnect" href="/reconnect">Reconnect digi.me</a></p>`
  )
