/**
 * The example backend: a home page with "Connect digi.me", the callback route, the user's page
 * (accounts read through `withAutoRefresh` with the token's status, and the user's files), a page
 * per file, a "Push a note" form, and a reconnect path for the errors only the user can fix.
 *
 * Each browser is a demo user of its own: "Connect digi.me" opens a session (a random id in an
 * HttpOnly cookie, mapped here to a new user id), where a real app has its login. The session also
 * binds each authorization to the browser that started it: the callback completes only with one
 * of the session user's keys as `expectedKey` (the one the session started that consent for, else
 * its read key), so a consent link forwarded to someone else stores nothing.
 *
 * The user has a token per contract: the read contract (Connect) lists and reads the files, the
 * write contract pushes. The first push goes through the write contract's consent first
 * (`startAddingContract`, into the same digi.me library), then pushes the note it was given.
 */
import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  FileProtocol,
  Files,
  PendingAuthorizations,
  TokenKey,
  TokenManager,
  TokenStore
} from "@digime-effect/core"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Chunk, DateTime, Duration, Effect, Encoding, Option, Schema, Stream } from "effect"
import { timingSafeEqual } from "node:crypto"

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

// The callback's query holds a code and a state: its page must not pass them on.
const pageHeaders = { "cache-control": "no-store", "referrer-policy": "no-referrer" }

const page = (title: string, body: string, status = 200): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
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

const redirect = (location: string) => HttpServerResponse.redirect(location, { status: 303, headers: pageHeaders })

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

/** An authorization this browser started: the key its callback must complete, and a note to push then. */
interface Started {
  readonly key: TokenKey.TokenKey
  readonly note?: string | undefined
}

/** Kept server-side only: the browser holds the session id. */
interface Session {
  readonly userId: string
  /** Goes with the push form: a cross-site form cannot know it. */
  readonly csrf: string
  /** By state (a secret, never rendered nor logged); the oldest dropped past `maxStarted`. */
  readonly started: Map<string, Started>
  /** The read session of the last file list: its files are read with it. */
  readSessionKey?: string | undefined
  /** Shown once, on the next view of the user's page. */
  pushed?: boolean | undefined
}

const maxStarted = 10
/** The longest note the form accepts. */
export const maxNoteLength = 280
/** Files larger than this are listed, not read whole, on the user's page. */
const maxListedFileBytes = 1024 * 1024
/** A file page shows at most this much of a file. */
const maxShownBytes = 256 * 1024

const PushForm = Schema.Struct({ csrf: Schema.String, note: Schema.String })

const randomId = () => Encoding.encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)))

const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

const isTokenState = (error: { readonly _tag: string }): error is AutoRefresh.TokenStateError =>
  error._tag === "RefreshTokenExpired" || error._tag === "ReauthRequired" || error._tag === "InvalidAccessToken"

const concat = (parts: ReadonlyArray<Uint8Array>, size: number): Uint8Array => {
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.length
  }
  return bytes
}

/** The text of a file, pretty-printed when it is JSON. */
const textOf = (bytes: Uint8Array, complete: boolean): string => {
  const text = new TextDecoder().decode(bytes)
  if (!complete) return text
  try {
    return JSON.stringify(JSON.parse(text), null, 2)
  } catch {
    return text
  }
}

const isMapped = Schema.is(FileProtocol.MappedFileMetadata)

/** What a file's metadata says of it: a service's data (mapped), or what an application pushed (raw). */
const describeMetadata = (metadata: FileProtocol.FileMetadata): string =>
  isMapped(metadata)
    ? `${metadata.objectType} from ${metadata.serviceName}`
    : `${metadata.mimetype}, pushed by an application`

export const make = (options: Options) => {
  const { contractId, refreshes: counter, writeContractId } = options
  const callbackUrl = options.callbackUrl.href
  const secure = options.callbackUrl.protocol === "https:"
  const pollInterval = options.pollInterval ?? Duration.seconds(3)
  // On https the __Host- prefix makes the browser take the cookie only from this host, Secure and
  // for Path=/: a sibling subdomain cannot plant its own session, which would bind a victim's
  // consent to the planter's user again.
  const cookieName = secure ? "__Host-session" : "session"
  const cookieOptions = { httpOnly: true, sameSite: "lax", secure, path: "/" } as const
  /** Session id → session. */
  const sessions = new Map<string, Session>()
  let users = 0

  const keyOf = (userId: string) => TokenKey.make(userId, contractId)
  const writeKeyOf = (userId: string) => TokenKey.make(userId, writeContractId)

  const currentSession = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const id = request.cookies[cookieName]
    return Option.fromNullable(id === undefined ? undefined : sessions.get(id))
  })

  const remember = (session: Session, started: Authorization.Started, note?: string) => {
    if (session.started.size >= maxStarted) session.started.delete(session.started.keys().next().value!)
    session.started.set(started.state, { key: started.key, note })
  }

  const home = Effect.gen(function*() {
    const store = yield* TokenStore.TokenStore
    const session = yield* currentSession
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
    const existing = yield* currentSession
    const sessionId = Option.isSome(existing) ? undefined : randomId()
    const session: Session = Option.isSome(existing)
      ? existing.value
      : { userId: `demo-${++users}`, csrf: randomId(), started: new Map() }
    const started = yield* Authorization.startAuthorization({ key: keyOf(session.userId), callbackUrl })
    remember(session, started)
    if (sessionId === undefined) return redirect(started.url)
    sessions.set(sessionId, session)
    return yield* HttpServerResponse.setCookie(redirect(started.url), cookieName, sessionId, cookieOptions)
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

  const reconnectPage = (error: AutoRefresh.TokenStateError) =>
    page(
      "Reconnect digi.me",
      `<p id="error" data-tag="${escape(error._tag)}">${escape(error.message)}</p>` +
        `<p><a class="button" id="reconnect" href="/reconnect">Reconnect digi.me</a></p>`
    )

  /** The user's consent to the write contract, for their digi.me library; then `note` is pushed. */
  const consentToWrite = (session: Session, note: string) =>
    Effect.gen(function*() {
      const started = yield* Authorization.startAddingContract({
        key: writeKeyOf(session.userId),
        existing: keyOf(session.userId),
        callbackUrl
      })
      remember(session, started, note)
      return redirect(started.url)
    })

  /** Pushes a note with the write contract, under the user's first account; then back to their page. */
  const pushNote = (session: Session, note: string) =>
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const [account] = yield* AutoRefresh.withAutoRefresh(keyOf(session.userId), client.readAccounts)
      if (account === undefined) {
        return yield* page("Note not pushed", `<p id="error">Your digi.me library has no account to push to.</p>`, 409)
      }
      const body = { note, pushedAt: DateTime.formatIso(yield* DateTime.now), by: "digime-effect example" }
      yield* AutoRefresh.withAutoRefresh(writeKeyOf(session.userId), (credentials) =>
        client.pushData({
          ...credentials,
          fileDescriptor: { mimeType: "application/json", accounts: [{ accountId: account.id }] },
          data: new TextEncoder().encode(JSON.stringify(body))
        }))
      session.pushed = true
      return redirect("/accounts#files")
    })

  const callback = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, callbackUrl)
    const found = yield* currentSession
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
    return started?.note === undefined ? redirect("/accounts") : yield* pushNote(session, started.note)
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

  /** The user's files through a read session of the read contract, polled while its sync runs. */
  const readFiles = (session: Session) =>
    Effect.gen(function*() {
      const key = keyOf(session.userId)
      const client = yield* DigimeClient.DigimeClient
      const opened = yield* AutoRefresh.withAutoRefresh(key, (credentials) => client.readSession(credentials))
      session.readSessionKey = opened.key
      const events = yield* Files.readAll(key, {
        sessionKey: opened.key,
        pollInterval,
        timeout: Duration.minutes(1),
        maxFileBytes: maxListedFileBytes
      }).pipe(Stream.runCollect)
      const files: Array<Files.FileRead | Files.FileFailed> = []
      let progress: Files.Progress | undefined
      for (const event of events) {
        if (event._tag === "Progress") progress = event
        else files.push(event)
      }
      files.sort((a, b) => a.file.name < b.file.name ? -1 : a.file.name > b.file.name ? 1 : 0)
      return { files, progress }
    })

  const filesSection = (
    session: Session,
    read: Effect.Effect.Success<ReturnType<typeof readFiles>>,
    canPush: boolean
  ) => {
    const items = read.files.map((event) => {
      const name = escape(event.file.name)
      if (event._tag === "FileFailed") {
        return `<li class="file failed" data-name="${name}">${name} <small>(could not be read: ${
          escape(event.error._tag)
        })</small></li>`
      }
      const compressed = event.compression === undefined ? "" : `, ${escape(event.compression)} inside`
      return `<li class="file" data-name="${name}"><a class="file-link" href="${
        escape(`/file?name=${encodeURIComponent(event.file.name)}`)
      }">${name}</a> <small class="file-meta">(${
        escape(describeMetadata(event.metadata))
      }, ${event.data.length} bytes${compressed})</small></li>`
    }).join("")
    const sync = read.progress === undefined
      ? ""
      : `<p id="sync-status" data-state="${escape(read.progress.state)}">Sync ${
        escape(read.progress.state)
      }: ${read.files.length} file(s).${
        read.progress.needsReauthorization.length === 0
          ? ""
          : ` ${read.progress.needsReauthorization.length} account(s) need to be reauthorized at digi.me.`
      }</p>`
    const pushed = session.pushed === true
      ? `<p id="pushed" class="notice" role="status">Your note was pushed to your digi.me library with the write contract; it is listed below.</p>`
      : ""
    session.pushed = undefined
    return `<h2 id="files">Files</h2>${pushed}${sync}` +
      (items === "" ? `<p id="no-files">No files yet.</p>` : `<ul id="file-list">${items}</ul>`) +
      `<h3>Push a note</h3>` +
      `<form id="push-form" method="post" action="/files/push">` +
      `<input type="hidden" name="csrf" value="${escape(session.csrf)}">` +
      `<p><label>Note <input type="text" id="note" name="note" required maxlength="${maxNoteLength}" ` +
      `value="Hello from the digime-effect example"></label></p>` +
      `<p><button type="submit" id="push">Push a note</button></p></form>` +
      `<p id="write-status"><small>${
        canPush
          ? "The write contract is connected: a note is pushed at once."
          : "The first note asks your consent to the write contract, for the same digi.me library, then pushes."
      }</small></p>`
  }

  const accounts = Effect.gen(function*() {
    const found = yield* currentSession
    if (Option.isNone(found)) return redirect("/")
    const session = found.value
    const key = keyOf(session.userId)
    const client = yield* DigimeClient.DigimeClient
    const store = yield* TokenStore.TokenStore
    const before = yield* store.get(key)
    const list = yield* AutoRefresh.withAutoRefresh(key, client.readAccounts)
    const files = yield* readFiles(session)
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
        filesSection(session, files, canPush) + countdownScript
    )
  }).pipe(
    Effect.catchTags({
      RefreshTokenExpired: reconnectPage,
      ReauthRequired: reconnectPage,
      InvalidAccessToken: reconnectPage
    })
  )

  /** One file, with the read session of the last list, or a new one (no sync) when that one is gone. */
  const readOne = (session: Session, fileName: string) =>
    Effect.gen(function*() {
      const key = keyOf(session.userId)
      const client = yield* DigimeClient.DigimeClient
      const fresh = Effect.gen(function*() {
        const opened = yield* AutoRefresh.withAutoRefresh(
          key,
          (credentials) => client.readSession({ ...credentials, sourceFetch: false })
        )
        session.readSessionKey = opened.key
        return yield* Files.read(key, { sessionKey: opened.key, fileName })
      })
      const sessionKey = session.readSessionKey
      if (sessionKey === undefined) return yield* fresh
      return yield* Files.read(key, { sessionKey, fileName }).pipe(
        Effect.catchIf((error) => error._tag === "ApiError" && (error.status === 404 || error.status === 410), () =>
          fresh)
      )
    })

  const file = Effect.gen(function*() {
    const found = yield* currentSession
    if (Option.isNone(found)) return redirect("/")
    const request = yield* HttpServerRequest.HttpServerRequest
    const fileName = new URL(request.url, callbackUrl).searchParams.get("name") ?? ""
    if (fileName === "" || fileName.length > 200) return yield* page("Not found", "<p>No such file.</p>", 404)
    const read = yield* readOne(found.value, fileName).pipe(
      Effect.map(Option.some),
      Effect.catchIf((error) => error._tag === "ApiError" && error.status === 404, () => Effect.succeedNone)
    )
    if (Option.isNone(read)) {
      return yield* page(
        "Not found",
        `<p id="error" data-reason="FileNotFound">Your digi.me library has no file ${
          escape(JSON.stringify(fileName))
        }.</p><p><a href="/accounts#files">Back to your files</a></p>`,
        404
      )
    }
    const { compression, data, metadata } = read.value
    const collected = yield* Stream.runFoldWhile(
      data,
      { parts: Chunk.empty<Uint8Array>(), size: 0 },
      (acc) => acc.size <= maxShownBytes,
      (acc, chunk) => ({ parts: Chunk.append(acc.parts, chunk), size: acc.size + chunk.length })
    )
    const complete = collected.size <= maxShownBytes
    const bytes = concat(Chunk.toReadonlyArray(collected.parts), collected.size).subarray(0, maxShownBytes)
    return yield* page(
      fileName,
      `<dl id="file-metadata">` +
        `<dt>Type</dt><dd id="file-type">${escape(describeMetadata(metadata))}</dd>` +
        `<dt>Compression</dt><dd id="file-compression">${escape(compression ?? "none")}</dd>` +
        `</dl>` +
        (complete ? "" : `<p id="truncated">Only the first ${maxShownBytes} bytes are shown.</p>`) +
        `<pre id="file-content">${escape(textOf(bytes, complete))}</pre>` +
        `<p><a class="button" id="back" href="/accounts#files">Back to your files</a></p>`
    )
  }).pipe(
    Effect.catchTags({
      RefreshTokenExpired: reconnectPage,
      ReauthRequired: reconnectPage,
      InvalidAccessToken: reconnectPage
    })
  )

  const push = Effect.gen(function*() {
    const found = yield* currentSession
    if (Option.isNone(found)) return redirect("/")
    const session = found.value
    const form = yield* HttpServerRequest.schemaBodyUrlParams(PushForm).pipe(
      HttpIncomingMessage.withMaxBodySize(Option.some(4096)),
      Effect.option
    )
    if (Option.isNone(form) || !sameSecret(form.value.csrf, session.csrf)) {
      return yield* page(
        "Note not pushed",
        `<p id="error" data-reason="InvalidForm">This form did not come from your page here: push from your files.</p>` +
          `<p><a class="button" href="/accounts#files">Back to your files</a></p>`,
        403
      )
    }
    const note = form.value.note.trim()
    if (note === "" || note.length > maxNoteLength) {
      return yield* page(
        "Note not pushed",
        `<p id="error" data-reason="InvalidNote">A note has 1 to ${maxNoteLength} characters.</p>` +
          `<p><a class="button" href="/accounts#files">Back to your files</a></p>`,
        400
      )
    }
    const store = yield* TokenStore.TokenStore
    if (Option.isNone(yield* store.get(writeKeyOf(session.userId)))) return yield* consentToWrite(session, note)
    // A write token that cannot be used any more: the write contract's consent again, then the push.
    return yield* pushNote(session, note).pipe(
      Effect.catchIf(
        (error): error is AutoRefresh.TokenStateError =>
          isTokenState(error) && error.key.contractId === writeContractId,
        () => consentToWrite(session, note)
      )
    )
  }).pipe(
    Effect.catchTags({
      RefreshTokenExpired: reconnectPage,
      ReauthRequired: reconnectPage,
      InvalidAccessToken: reconnectPage
    })
  )

  const reconnect = Effect.gen(function*() {
    const found = yield* currentSession
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
    HttpRouter.get("/file", file),
    HttpRouter.post("/files/push", push),
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
