/**
 * The example backend: a home page with "Connect digi.me", the callback route, the user's page
 * (accounts read through `withAutoRefresh` with the token's status, and the user's files), a page
 * per file, a "Push a note" form, and a reconnect path for the errors only the user can fix.
 *
 * Each browser is a demo user of its own (see `Session`). The session also binds each
 * authorization to the browser that started it: the callback completes only with one of the
 * session user's keys as `expectedKey` (the one the session started that consent for, else its
 * read key), so a consent link forwarded to someone else stores nothing.
 *
 * The user has a token per contract: the read contract (Connect) lists and reads the files, the
 * write contract pushes (see `FileRoutes`).
 */
import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  DigimeConfig,
  PendingAuthorizations,
  TokenKey,
  TokenManager,
  TokenStore
} from "@digime-effect/core"
import { HttpRouter, HttpServerRequest } from "@effect/platform"
import { DateTime, Duration, Effect, Option } from "effect"
import * as FileRoutes from "./FileRoutes.js"
import { countdown, countdownScript, escape, isTokenState, page, reconnectPage, redirect } from "./Html.js"
import * as Operator from "./Operator.js"
import type { Session } from "./Session.js"
import { makeSessions, randomId, remember } from "./Session.js"

/** The longest note the form accepts. */
export const maxNoteLength = FileRoutes.maxNoteLength

/**
 * Counts the refreshes this app has seen happen under `withAutoRefresh`: the stored version grew
 * while no authorization was completed.
 */
export interface RefreshCounter {
  count: number
}

export interface Options {
  /** The read contract: Connect, the accounts and the files. */
  readonly contractId: string
  /** The write contract of the same users: "Push a note". */
  readonly writeContractId: string
  /**
   * Where digi.me sends the browser back, from configuration (never from a request's `Host`). Its
   * path is the callback route; on https the session cookie is `Secure`.
   */
  readonly callbackUrl: URL
  readonly refreshes: RefreshCounter
  /** Between two polls of the file list while the sync runs; default 3 seconds. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /**
   * Runs once a user's first authorization of the read contract is stored, with the digi.me user
   * id of their library (the example seeds its simulated library there).
   */
  readonly onConnected?: ((digimeUserId: string) => Effect.Effect<void>) | undefined
  /** What the operator's page (`/operator`) shows of the past; without it, the page is not served. */
  readonly operator?: Operator.Recorder | undefined
}

export const make = (options: Options) => {
  const { contractId, refreshes: counter, writeContractId } = options
  const callbackUrl = options.callbackUrl.href
  const sessions = makeSessions(options.callbackUrl.protocol === "https:")

  const keyOf = (userId: string) => TokenKey.make(userId, contractId)
  const writeKeyOf = (userId: string) => TokenKey.make(userId, writeContractId)

  const files = FileRoutes.make({
    sessions,
    keyOf,
    writeKeyOf,
    writeContractId,
    callbackUrl,
    pollInterval: options.pollInterval ?? Duration.seconds(3)
  })

  const home = Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const session = yield* sessions.current
    const stored = Option.isSome(session) ? yield* store.get(keyOf(session.value.userId)) : Option.none()
    const who = Option.isSome(session)
      ? `<p>This browser is demo user <code id="user">${escape(session.value.userId)}</code>.</p>`
      : ""
    return yield* page(
      "digi.me example",
      who + (Option.isSome(stored)
        ? `<p id="status">Connected.</p><p><a class="button" id="accounts" href="/accounts">See my accounts and files</a></p>`
        : `<p id="status">Not connected yet.</p><p><a class="button" id="connect" href="/connect">Connect digi.me</a></p>`)
    )
  })

  const connect = Effect.gen(function*() {
    const existing = yield* sessions.current
    const sessionId = Option.isSome(existing) ? undefined : randomId()
    const session: Session = Option.isSome(existing) ? existing.value : sessions.create()
    const started = yield* Authorization.startAuthorization({ key: keyOf(session.userId), callbackUrl })
    remember(session, started)
    if (sessionId === undefined) return redirect(started.url)
    return yield* sessions.open(redirect(started.url), sessionId, session)
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
    const found = yield* sessions.current
    if (Option.isNone(found)) return yield* refuseWithoutSession(url)
    const session = found.value
    const state = url.searchParams.get("state") ?? ""
    const started = session.started.get(state)
    session.started.delete(state)
    const completed = yield* Authorization.completeAuthorization(url, {
      expectedKey: started?.key ?? keyOf(session.userId)
    })
    const digimeUserId = completed.token.digimeUserId
    if (
      completed.kind === "authorize" && completed.key.contractId === contractId && digimeUserId !== undefined &&
      options.onConnected !== undefined
    ) {
      yield* options.onConnected(digimeUserId)
    }
    return started?.note === undefined ? redirect("/accounts") : yield* files.pushNote(session, started.note)
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

  const accounts = Effect.gen(function*() {
    const found = yield* sessions.current
    if (Option.isNone(found)) return redirect("/")
    const session = found.value
    const key = keyOf(session.userId)
    const client = yield* DigimeClient.DigimeClient
    const store = yield* TokenStore.TokenStore
    const before = yield* store.get(key)
    const list = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
    const read = yield* files.readFiles(session)
    const after = Option.getOrThrow(yield* store.get(key))
    if (Option.isSome(before) && after.version > before.value.version) counter.count++
    const canPush = Option.isSome(yield* store.get(writeKeyOf(session.userId)))
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
        `</dl><p><a href="/accounts" id="reload">Read again</a></p>` +
        files.filesSection(session, read, canPush) + countdownScript
    )
  }).pipe(
    Effect.catchTags({
      RefreshTokenExpired: reconnectPage,
      ReauthRequired: reconnectPage,
      InvalidAccessToken: reconnectPage
    })
  )

  const reconnect = Effect.gen(function*() {
    const found = yield* sessions.current
    if (Option.isNone(found)) return redirect("/")
    const key = keyOf(found.value.userId)
    const manager = yield* TokenManager.TokenManager
    const outcome = yield* Effect.either(manager.get(key))
    if (outcome._tag === "Right") return redirect("/accounts")
    const error = outcome.left
    if (!isTokenState(error)) return yield* Effect.fail(error)
    const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
    remember(found.value, step)
    return redirect(step.url)
  })

  const failure = (error: { readonly _tag: string; readonly message: string }) =>
    page("Something went wrong", `<p id="error" data-tag="${escape(error._tag)}">${escape(error.message)}</p>`, 502)

  return HttpRouter.empty.pipe(
    HttpRouter.get("/", home),
    HttpRouter.get("/connect", connect),
    HttpRouter.get(options.callbackUrl.pathname as HttpRouter.PathInput, callback),
    HttpRouter.get("/accounts", accounts),
    HttpRouter.get("/file", files.file),
    HttpRouter.post("/files/push", files.push),
    HttpRouter.get("/reconnect", reconnect),
    options.operator === undefined
      ? (router) => router
      : HttpRouter.get(
        "/operator",
        Effect.flatMap(DigimeConfig.DigimeConfig, (config) => Operator.route(options.operator!, config))
      ),
    HttpRouter.catchAll((error) =>
      "message" in error && typeof error.message === "string" && "_tag" in error
        ? failure(error as { readonly _tag: string; readonly message: string })
        : page("Not found", "<p>Nothing here.</p>", 404)
    )
  )
}

export type Requirements =
  | DigimeClient.DigimeClient
  | DigimeConfig.DigimeConfig
  | TokenManager.TokenManager
  | TokenStore.TokenStore
  | PendingAuthorizations.PendingAuthorizations
