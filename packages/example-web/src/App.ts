/**
 * The example backend: a home page with "Connect digi.me", the callback route, an accounts page
 * read through `withAutoRefresh` with the token's status, and a reconnect path for the errors only
 * the user can fix. One demo user, "alice"; a real app takes the user id from its session.
 */
import { Authorization, AutoRefresh, DigimeClient, TokenManager, TokenStore } from "@digime-effect/core"
import type { PendingAuthorizations, TokenKey } from "@digime-effect/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { DateTime, Effect, Option } from "effect"

export const userId = "alice"

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const page = (title: string, body: string, status = 200): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.succeed(HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>` +
      `<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}` +
      `a.button{display:inline-block;padding:.6rem 1rem;background:#1d4ed8;color:#fff;border-radius:.4rem;` +
      `text-decoration:none}dt{font-weight:600}li{margin:.3rem 0}</style></head>` +
      `<body><h1>${escape(title)}</h1>${body}</body></html>`,
    { status, contentType: "text/html; charset=utf-8" }
  ))

/** Where digi.me sends the browser back: this server's own origin, as the browser reached it. */
const callbackUrl = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
  const host = request.headers.host ?? "127.0.0.1"
  return `http://${host}/callback`
})

const fullUrl = Effect.map(
  HttpServerRequest.HttpServerRequest,
  (request) => new URL(request.url, `http://${request.headers.host ?? "127.0.0.1"}`)
)

/**
 * Counts the refreshes this app has seen happen under `withAutoRefresh`: the stored version grew
 * while no authorization was completed.
 */
export interface RefreshCounter {
  count: number
}

const countdown = (id: string, at: DateTime.Utc) =>
  `<span id="${id}" data-at="${DateTime.toEpochMillis(at)}">${escape(DateTime.formatIso(at))}</span>`

const countdownScript = `<script>
for (const el of document.querySelectorAll("[data-at]")) {
  const tick = () => {
    const left = Math.round((Number(el.dataset.at) - Date.now()) / 1000)
    el.textContent = left > 0 ? "in " + left + " s" : "expired " + (-left) + " s ago"
  }
  tick(); setInterval(tick, 1000)
}
</script>`

export const make = (key: TokenKey.TokenKey, counter: RefreshCounter) => {
  const home = Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const stored = yield* store.get(key)
    return yield* page(
      "digi.me example",
      Option.isSome(stored)
        ? `<p id="status">Connected.</p><p><a class="button" id="accounts" href="/accounts">See my accounts</a></p>`
        : `<p id="status">Not connected yet.</p><p><a class="button" id="connect" href="/connect">Connect digi.me</a></p>`
    )
  })

  const connect = Effect.gen(function*() {
    const started = yield* Authorization.startAuthorization({ key, callbackUrl: yield* callbackUrl })
    return HttpServerResponse.redirect(started.url, { status: 303 })
  })

  const callback = Effect.gen(function*() {
    yield* Authorization.completeAuthorization(yield* fullUrl)
    return HttpServerResponse.redirect("/accounts", { status: 303 })
  }).pipe(
    Effect.catchTag("CallbackError", (error) =>
      page(
        "Connection not completed",
        `<p id="error">${escape(error.message)}</p><p><a class="button" href="/">Back</a></p>`,
        400
      ))
  )

  const reconnectPage = (error: AutoRefresh.TokenStateError) =>
    page(
      "Reconnect digi.me",
      `<p id="error" data-tag="${escape(error._tag)}">${escape(error.message)}</p>` +
        `<p><a class="button" id="reconnect" href="/reconnect">Reconnect digi.me</a></p>`
    )

  const accounts = Effect.gen(function*() {
    const client = yield* DigimeClient.DigimeClient
    const store = yield* TokenStore.TokenStore
    const before = yield* store.get(key)
    const list = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
    const after = Option.getOrThrow(yield* store.get(key))
    if (Option.isSome(before) && after.version > before.value.version) counter.count++
    const items = list.map((account) =>
      `<li class="account">${escape(account.serviceTypeName)} — ${
        escape(account.serviceProviderName ?? account.serviceGroupName)
      }` +
      ` <small>(${escape(account.reference)})</small></li>`
    ).join("")
    return yield* page(
      "Your digi.me accounts",
      `<ul id="account-list">${items}</ul>` +
        `<dl id="token-status">` +
        `<dt>Access token expires</dt><dd>${countdown("access-expiry", after.token.accessToken.expiresAt)}</dd>` +
        `<dt>Refresh token expires</dt><dd>${countdown("refresh-expiry", after.token.refreshToken.expiresAt)}</dd>` +
        `<dt>Silent refreshes</dt><dd id="refresh-count">${counter.count}</dd>` +
        `</dl><p><a href="/accounts" id="reload">Read again</a></p>${countdownScript}`
    )
  }).pipe(
    Effect.catchTags({
      RefreshTokenExpired: reconnectPage,
      ReauthRequired: reconnectPage,
      InvalidAccessToken: reconnectPage
    })
  )

  const reconnect = Effect.gen(function*() {
    const manager = yield* TokenManager.TokenManager
    const outcome = yield* Effect.either(manager.get(key))
    if (outcome._tag === "Right") return HttpServerResponse.redirect("/accounts", { status: 303 })
    const error = outcome.left
    if (
      error._tag !== "RefreshTokenExpired" && error._tag !== "ReauthRequired" && error._tag !== "InvalidAccessToken"
    ) {
      return yield* Effect.fail(error)
    }
    const step = yield* AutoRefresh.nextStep(error, { callbackUrl: yield* callbackUrl })
    return HttpServerResponse.redirect(step.url, { status: 303 })
  })

  const failure = (error: { readonly _tag: string; readonly message: string }) =>
    page("Something went wrong", `<p id="error" data-tag="${escape(error._tag)}">${escape(error.message)}</p>`, 502)

  return HttpRouter.empty.pipe(
    HttpRouter.get("/", home),
    HttpRouter.get("/connect", connect),
    HttpRouter.get("/callback", callback),
    HttpRouter.get("/accounts", accounts),
    HttpRouter.get("/reconnect", reconnect),
    HttpRouter.catchAll((error) =>
      "message" in error && typeof error.message === "string" && "_tag" in error
        ? failure(error as { readonly _tag: string; readonly message: string })
        : page("Not found", "<p>Nothing here.</p>", 404)
    )
  )
}

export type Requirements =
  | DigimeClient.DigimeClient
  | TokenManager.TokenManager
  | TokenStore.TokenStore
  | PendingAuthorizations.PendingAuthorizations
