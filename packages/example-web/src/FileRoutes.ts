/**
 * The user's files: the files section of their page (the list through `Files.readAll`, polled
 * while the sync runs), a page per file (`Files.read`), and "Push a note" with the write contract.
 * The first push goes through the write contract's consent first (`startAddingContract`, into the
 * same digi.me library), then pushes the note it was given.
 */
import { Authorization, AutoRefresh, DigimeClient, FileProtocol, Files, TokenStore } from "@digime-effect/core"
import type { TokenKey } from "@digime-effect/core"
import { HttpIncomingMessage, HttpServerRequest } from "@effect/platform"
import { Chunk, DateTime, Duration, Effect, Option, Schema, Stream } from "effect"
import { escape, isTokenState, page, reconnectPage, redirect } from "./Html.js"
import type { Session, Sessions } from "./Session.js"
import { remember, sameSecret } from "./Session.js"

/** The longest note the form accepts. */
export const maxNoteLength = 280
/** Files larger than this are listed, not read whole, on the user's page. */
const maxListedFileBytes = 1024 * 1024
/** A file page shows at most this much of a file. */
const maxShownBytes = 256 * 1024

const PushForm = Schema.Struct({ csrf: Schema.String, note: Schema.String })

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

export interface FileRoutesOptions {
  readonly sessions: Sessions
  /** The user's token of the read contract. */
  readonly keyOf: (userId: string) => TokenKey.TokenKey
  /** The user's token of the write contract. */
  readonly writeKeyOf: (userId: string) => TokenKey.TokenKey
  readonly writeContractId: string
  /** The callback URL's `href`: where digi.me sends the browser back, and the base of request URLs. */
  readonly callbackUrl: string
  readonly pollInterval: Duration.DurationInput
}

export const make = (options: FileRoutesOptions) => {
  const { callbackUrl, keyOf, pollInterval, sessions, writeContractId, writeKeyOf } = options

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

  /** The files section of the user's page, with the push form. */
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
    const found = yield* sessions.current
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
    const found = yield* sessions.current
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

  return { readFiles, filesSection, pushNote, file, push } as const
}
