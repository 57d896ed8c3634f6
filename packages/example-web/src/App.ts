/**
 * The example backend: a home page with "Connect digi.me", the callback route, an accounts page
 * read through `withAutoRefresh` with the token's status, and a reconnect path for the errors only
 * the user can fix.
 *
 * Each browser is a demo user of its own: "Connect digi.me" opens a session (a random id in an
 * HttpOnly cookie, mapped here to a new user id), where a real app has its login. The session also
 * binds each authorization to the browser that started it: the callback completes only with the
 * session user's key as `expectedKey`, so a consent link forwarded to someone else stores nothing.
 */
import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  PendingAuthorizations,
  TokenKey,
  TokenManager,
  TokenStore
} from "@digime-effect/core"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { DateTime, Effect, Encoding, Option } from "effect"

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

// The callback's query holds a code and a state: its page must not pass them on.
const pageHeaders = { "cache-control": "no-store", "referrer-policy": "no-referrer" }

const page = (title: string, body: string, status = 200): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.succeed(HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>` +
      `<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}` +
      `a.button{display:inline-block;padding:.6rem 1rem;background:#1d4ed8;color:#fff;border-radius:.4rem;` +
      `text-decoration:none}dt{font-weight:600}li{margin:.3rem 0}</style></head>` +
      `<body><h1>${escape(title)}</h1>${body}</body></html>`,
    { status, contentType: "text/html; charset=utf-8", headers: pageHeaders }
  ))

const redirect = (location: string) => HttpServerResponse.redirect(location, { status: 303, headers: pageHeaders })

/**
 * Counts the refreshes this app has seen happen under `withAutoRefresh`: the stored version grew
 * while no authorization was completed.
 */
export interface RefreshCounter {
  count: number
}

export interface Options {
  readonly contractId: string
  /**
   * Where digi.me sends the browser back, from configuration (never from a request's `Host`). Its
   * path is the callback route; on https the session cookie is `Secure`.
   */
  readonly callbackUrl: URL
  readonly refreshes: RefreshCounter
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

export const make = (options: Options) => {
  const { contractId, refreshes: counter } = options
  const callbackUrl = options.callbackUrl.href
  const secure = options.callbackUrl.protocol === "https:"
  // On https the __Host- prefix makes the browser take the cookie only from this host, Secure and
  // for Path=/: a sibling subdomain cannot plant its own session, which would bind a victim's
  // consent to the planter's user again.
  const cookieName = secure ? "__Host-session" : "session"
  const cookieOptions = { httpOnly: true, sameSite: "lax", secure, path: "/" } as const
  /** Session id → user id. */
  const sessions = new Map<string, string>()
  let users = 0

  const keyOf = (userId: string) => TokenKey.make(userId, contractId)

  const currentUser = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const id = request.cookies[cookieName]
    return Option.fromNullable(id === undefined ? undefined : sessions.get(id))
  })

  const home = Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const user = yield* currentUser
    const stored = Option.isSome(user) ? yield* store.get(keyOf(user.value)) : Option.none()
    const who = Option.isSome(user)
      ? `<p>This browser is demo user <code id="user">${escape(user.value)}</code>.</p>`
      : ""
    return yield* page(
      "digi.me example",
      who + (Option.isSome(stored)
        ? `<p id="status">Connected.</p><p><a class="button" id="accounts" href="/accounts">See my accounts</a></p>`
        : `<p id="status">Not connected yet.</p><p><a class="button" id="connect" href="/connect">Connect digi.me</a></p>`)
    )
  })

  const connect = Effect.gen(function*() {
    const existing = yield* currentUser
    const session = Option.isSome(existing)
      ? undefined
      : { id: Encoding.encodeBase64Url(crypto.getRandomValues(new Uint8Array(32))), userId: `demo-${++users}` }
    const userId = session?.userId ?? Option.getOrThrow(existing)
    const started = yield* Authorization.startAuthorization({ key: keyOf(userId), callbackUrl })
    if (session === undefined) return redirect(started.url)
    sessions.set(session.id, session.userId)
    return yield* HttpServerResponse.setCookie(redirect(started.url), cookieName, session.id, cookieOptions)
  })

  const refused = (reason: string, message: string) =>
    page(
      "Connection not completed",
      `<p id="error" data-reason="${escape(reason)}">${escape(message)}</p>` +
        `<p><a class="button" href="/">Back</a></p>`,
      403
    )

  // Refused, and its state spent: the code it carries cannot be completed later, by anyone.
  const refuseWithoutSession = (url: URL) =>
    Effect.gen(function*() {
      const state = url.searchParams.get("state")
      if (state !== null && state !== "") {
        const pending = yield* PendingAuthorizations.PendingAuthorizations
        yield* pending.consume(state, yield* DateTime.now)
      }
      return yield* refused(
        "NoSession",
        "This browser did not start this connection (or started it at another address than " +
          `${options.callbackUrl.origin}): nothing was stored. Connect from this browser to link your own digi.me.`
      )
    })

  const callback = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, callbackUrl)
    const user = yield* currentUser
    if (Option.isNone(user)) return yield* refuseWithoutSession(url)
    yield* Authorization.completeAuthorization(url, { expectedKey: keyOf(user.value) })
    return redirect("/accounts")
  }).pipe(
    Effect.catchTag("CallbackError", (error) =>
      error.reason === "UnexpectedKey"
        ? refused(error.reason, error.message)
        : page(
          "Connection not completed",
          `<p id="error" data-reason="${escape(error.reason)}">${escape(error.message)}</p>` +
            `<p><a class="button" href="/">Back</a></p>`,
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
    const user = yield* currentUser
    if (Option.isNone(user)) return redirect("/")
    const key = keyOf(user.value)
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
    const user = yield* currentUser
    if (Option.isNone(user)) return redirect("/")
    const manager = yield* TokenManager.TokenManager
    const outcome = yield* Effect.either(manager.get(keyOf(user.value)))
    if (outcome._tag === "Right") return redirect("/accounts")
    const error = outcome.left
    if (
      error._tag !== "RefreshTokenExpired" && error._tag !== "ReauthRequired" && error._tag !== "InvalidAccessToken"
    ) {
      return yield* Effect.fail(error)
    }
    const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
    return redirect(step.url)
  })

  const failure = (error: { readonly _tag: string; readonly message: string }) =>
    page("Something went wrong", `<p id="error" data-tag="${escape(error._tag)}">${escape(error.message)}</p>`, 502)

  return HttpRouter.empty.pipe(
    HttpRouter.get("/", home),
    HttpRouter.get("/connect", connect),
    HttpRouter.get(options.callbackUrl.pathname as HttpRouter.PathInput, callback),
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
