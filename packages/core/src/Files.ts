/**
 * The user's files as a `Stream`: a read session's file list polled on a `Schedule` until the
 * sync is over, each new or updated file downloaded once (bounded concurrency, backpressure, a
 * failed download retried with backoff) and decrypted, and the state of each account along the
 * way. Every request runs under `AutoRefresh.withAutoRefresh`: a token that expires while the
 * files stream is refreshed once, through the `TokenManager`, and the stream goes on. No token is
 * ever handed back to the caller, so none can be stale.
 *
 * @example
 * import { Files, TokenKey } from "@digime-effect/core"
 * import { Effect, Stream } from "effect"
 *
 * const key = TokenKey.make("user-42", "contract-1")
 * const names = Files.readAll(key).pipe(
 *   Stream.filter((event) => event._tag === "File"),
 *   Stream.map((event) => event.file.name),
 *   Stream.runCollect
 * )
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { withAutoRefresh } from "./AutoRefresh.js"
import type { PullOptions } from "./DataProtocol.js"
import type { DataCallError, File, FileOptions } from "./DigimeClient.js"
import { DigimeClient } from "./DigimeClient.js"
import type {
  AccessTokenRejected,
  FileDecryptionError,
  InvalidAccessToken,
  InvalidContractKey,
  ReauthRequired,
  RefreshTokenExpired,
  TokenStoreError
} from "./DigimeError.js"
import { RequestError } from "./DigimeError.js"
import type { AccountSync, FileHeaders, FileInfo, FileList, SyncState } from "./FileProtocol.js"
import { isFinal } from "./FileProtocol.js"
import * as Tracing from "./internal/tracing.js"
import { retryAfterFailure } from "./internal/transport.js"
import type { TokenKey } from "./TokenKey.js"
import type { AutoRefreshError, TokenManager } from "./TokenManager.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface ReadAllOptions {
  /**
   * The read session to list, e.g. the `session.key` that came with the authorization. Default: a
   * new one, opened with `readSession` and `sessionOptions`.
   */
  readonly sessionKey?: string | undefined
  /** The options of the read session opened when `sessionKey` is not given. */
  readonly sessionOptions?: PullOptions | undefined
  /** Between two polls of the file list; default 3 seconds. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** For the whole stream, downloads included; default 10 minutes. Then `RequestError` (`Timeout`). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Downloads at once; default 4. */
  readonly concurrency?: number | undefined
  /**
   * When a failed download is tried again (a cut connection, a transient answer, a file that did
   * not decrypt); default: 3 more attempts, 1, 2 and 4 seconds apart, jittered.
   */
  readonly retry?: Schedule.Schedule<unknown, unknown> | undefined
  /** A file longer than this is not held in memory (`FileFailed`); default 64 MiB. Use `read` for those. */
  readonly maxFileBytes?: number | undefined
}

/**
 * What a sync's state says: the state, each account's part, and the accounts whose user must
 * reauthorize them (`AccountsProtocol`'s account reauthorization).
 *
 * @since 0.2.0
 * @category models
 */
export interface Progress {
  readonly _tag: "Progress"
  readonly state: SyncState
  readonly accounts: Readonly<Record<string, AccountSync>>
  readonly needsReauthorization: ReadonlyArray<string>
  /** Files listed so far (each version counted once). */
  readonly filesListed: number
}

/**
 * A file, downloaded and decrypted.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileRead extends FileHeaders {
  readonly _tag: "File"
  readonly file: FileInfo
  readonly data: Uint8Array
}

/**
 * Why a file could not be read, once its attempts ran out.
 *
 * @since 0.2.0
 * @category models
 */
export type FileError = Exclude<
  DataCallError | AutoRefreshError | FileDecryptionError | InvalidContractKey,
  TokenStateError | AccessTokenRejected
>

/**
 * A file whose download failed after every attempt. The stream goes on; the file is tried again
 * only if a later poll lists it with a later `updatedDate`.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileFailed {
  readonly _tag: "FileFailed"
  readonly file: FileInfo
  readonly error: FileError
}

/**
 * @since 0.2.0
 * @category models
 */
export type Event = Progress | FileRead | FileFailed

/**
 * What ends the stream: the token states and failures of a refresh (`AutoRefreshError`), a file
 * list that cannot be read after its own attempts, or the overall timeout.
 *
 * @since 0.2.0
 * @category errors
 */
export type ReadAllError = AutoRefreshError | DataCallError

// What ends the whole stream rather than one file: the token's state, or a store that fails.
type TokenStateError = InvalidAccessToken | RefreshTokenExpired | ReauthRequired | TokenStoreError

const tokenStateTags: ReadonlySet<string> = new Set([
  "InvalidAccessToken",
  "RefreshTokenExpired",
  "ReauthRequired",
  "TokenStoreError"
])

const isTokenState = (error: { readonly _tag: string }): boolean => tokenStateTags.has(error._tag)

// Failures of one download worth another attempt: the transport, a transient answer, a body
// that did not decrypt (a corrupted or cut transfer decrypts wrong too).
const isRetryable = (error: { readonly _tag: string }): boolean => {
  switch (error._tag) {
    case "RequestError":
    case "FileDecryptionError":
      return true
    case "ApiError": {
      const status = (error as unknown as { readonly status: number }).status
      return status === 408 || status === 429 || status >= 500
    }
    default:
      return false
  }
}

const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("1 second", 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(3))
)

const accountsNeedingReauthorization = (accounts: Readonly<Record<string, AccountSync>>): ReadonlyArray<string> =>
  Object.entries(accounts).filter(([, account]) => account.error?.reauth === true).map(([id]) => id)

/**
 * One file of a read session, under `withAutoRefresh`: its headers, and its content decrypted as
 * it streams (memory does not grow with the file's size).
 *
 * @since 0.2.0
 * @category constructors
 */
export const read = (
  key: TokenKey,
  options: Omit<FileOptions, "contractId" | "accessToken">
): Effect.Effect<File, DataCallError | AutoRefreshError, DigimeClient | TokenManager> =>
  Effect.flatMap(
    DigimeClient,
    (client) => withAutoRefresh(key, (credentials) => client.readFile({ ...credentials, ...options }))
  )

/**
 * Every file of a read session, as a `Stream` of events: a `Progress` whenever the sync's state or
 * an account's changes (the last one is final, after every file), a `File` for each new or updated
 * file (`updatedDate` later than the last one read), a `FileFailed` for a file whose attempts ran
 * out. The stream ends when the sync is `completed` or `partial` and every file is read.
 *
 * @since 0.2.0
 * @category constructors
 */
export const readAll = (
  key: TokenKey,
  options: ReadAllOptions = {}
): Stream.Stream<Event, ReadAllError, DigimeClient | TokenManager> =>
  Stream.unwrap(Effect.gen(function*() {
    const client = yield* DigimeClient
    const interval = Duration.decode(options.pollInterval ?? "3 seconds")
    const timeout = Duration.decode(options.timeout ?? "10 minutes")
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? 4))
    const retry = options.retry ?? defaultRetry
    const maxFileBytes = options.maxFileBytes ?? 64 * 1024 * 1024

    const sessionKey = options.sessionKey ??
      (yield* withAutoRefresh(key, (credentials) => client.readSession({ ...credentials, ...options.sessionOptions })))
        .key

    const poll = withAutoRefresh(key, (credentials) => client.readFileList({ ...credentials, sessionKey }))

    const seen = new Map<string, number>()
    let reported = ""
    let final: Progress | undefined

    type Item = Progress | { readonly _tag: "Download"; readonly file: FileInfo }

    const itemsOf = (list: FileList): Array<Item> => {
      const items: Array<Item> = []
      for (const file of list.files) {
        if (file.updatedDate > (seen.get(file.name) ?? Number.NEGATIVE_INFINITY)) {
          seen.set(file.name, file.updatedDate)
          items.push({ _tag: "Download", file })
        }
      }
      const progress: Progress = {
        _tag: "Progress",
        state: list.state,
        accounts: list.accounts,
        needsReauthorization: accountsNeedingReauthorization(list.accounts),
        filesListed: seen.size
      }
      if (isFinal(list.state)) {
        final = progress
      } else {
        const summary = JSON.stringify([list.state, list.accounts])
        if (summary !== reported) {
          reported = summary
          items.unshift(progress)
        }
      }
      return items
    }

    const download = (file: FileInfo): Effect.Effect<FileRead | FileFailed, TokenStateError, TokenManager> =>
      retryAfterFailure(
        withAutoRefresh(key, (credentials) =>
          Effect.map(
            client.readFileBytes({ ...credentials, sessionKey, fileName: file.name, maxBytes: maxFileBytes }),
            (read): FileRead => ({ ...read, _tag: "File", file })
          )),
        { schedule: retry, while: (error) => !isTokenState(error) && isRetryable(error) }
      ).pipe(
        Effect.catchIf(
          (error): error is FileError => !isTokenState(error),
          (error) => Effect.succeed<FileFailed>({ _tag: "FileFailed", file, error })
        ),
        Tracing.withSpan("Files.download", { attributes: { "digime.contract_id": key.contractId } })
      )

    const events = Stream.repeatEffectWithSchedule(poll, Schedule.spaced(interval)).pipe(
      Stream.takeUntil((list) => isFinal(list.state)),
      Stream.mapConcat(itemsOf),
      Stream.mapEffect(
        (item): Effect.Effect<Event, AutoRefreshError, TokenManager> =>
          item._tag === "Download" ? download(item.file) : Effect.succeed(item),
        { concurrency, unordered: true }
      ),
      Stream.concat(Stream.suspend(() => final === undefined ? Stream.empty : Stream.make(final)))
    )

    return events.pipe(
      Stream.interruptWhen(
        Effect.zipRight(
          Effect.sleep(timeout),
          Effect.fail(
            new RequestError({
              operation: "readAllFiles",
              reason: "Timeout",
              description: `the sync and its files took longer than ${Duration.format(timeout)}`
            })
          )
        )
      )
    )
  }))
