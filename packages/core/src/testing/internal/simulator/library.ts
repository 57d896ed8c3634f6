/**
 * The users' libraries: files put there by the test or by pushes, accounts needing
 * reauthorization, and the sync of a session as its file-list answers see it (see the module
 * header of `DigimeSimulator` for the rules), and the `Service` members on them (files, accounts,
 * pushes). Synchronous, except the compression of added files.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { FileMetadata } from "../../../FileProtocol.js"
import { encodeUtf8 } from "../../../internal/encoding.js"
import type { AccountInfo, FileInput, ProviderPush, PushedFile } from "../../DigimeSimulator.js"
import { gzip } from "./envelope.js"
import { type Json, randomId } from "./responses.js"
import {
  type Account,
  accountOf,
  addAccount,
  contractIdOf,
  type State,
  type StoredFile,
  type SyncSession,
  type User
} from "./state.js"

const defaultMetadata: Json = {
  objectCount: 1,
  objectType: "post",
  serviceGroup: "social",
  serviceName: "simulated",
  schema: { standard: "digime", version: "1.0.0" }
}

const isFileMetadata = Schema.is(FileMetadata)

/**
 * Whether a file name can be served: 1 to 200 characters, none of them `/`, `\`, `?`, `#`, `%` or a
 * control character (the name goes into the URL path without encoding).
 */
const isFileName = (name: string): boolean =>
  name.length >= 1 && name.length <= 200 && !/[/\\?#%]/.test(name) &&
  ![...name].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f)

const infoOf = (account: Account): AccountInfo => ({
  id: account.id,
  reference: account.reference,
  reauthRequired: account.reauthRequired
})

const knownUser = (state: State, userId: string): User | string =>
  state.users.get(userId) ?? `no user ${userId} is known`

/** An `updatedDate` strictly after the previous one of the same name, so that clients see the change. */
const nextUpdatedDate = (user: User, name: string, now: number): number => {
  const previous = user.files.get(name)?.updatedDate
  return previous === undefined || now > previous ? now : previous + 1
}

/**
 * Stores a file, replacing one of the same name in place (its position in the library is kept).
 */
const storeFile = (user: User, file: Omit<StoredFile, "updatedDate">, now: number): StoredFile => {
  const stored: StoredFile = { ...file, updatedDate: nextUpdatedDate(user, file.name, now) }
  user.files.set(file.name, stored)
  return stored
}

/** @internal */
export const addFiles = (
  state: State,
  userId: string,
  files: ReadonlyArray<FileInput>
): Effect.Effect<void, string> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const user = knownUser(state, userId)
    if (typeof user === "string") return yield* Effect.fail(user)
    const prepared: Array<Omit<StoredFile, "updatedDate">> = []
    for (const file of files) {
      if (!isFileName(file.name)) {
        return yield* Effect.fail(`the file name ${JSON.stringify(file.name)} cannot be served`)
      }
      const accountId = file.accountId ?? user.accounts[0]?.id
      if (accountId === undefined || accountOf(state, userId, accountId) === undefined) {
        return yield* Effect.fail(`the user has no account ${file.accountId ?? "(the user has none)"}`)
      }
      if (file.metadata !== undefined && !isFileMetadata(file.metadata)) {
        return yield* Effect.fail(`the metadata of ${file.name} is neither mapped nor raw file metadata`)
      }
      let bytes: Uint8Array
      let compression: StoredFile["compression"]
      if ("compressed" in file) {
        if (file.compression !== "gzip" && file.compression !== "brotli") {
          return yield* Effect.fail(`compressed content of ${file.name} needs compression "gzip" or "brotli"`)
        }
        bytes = file.compressed.slice()
        compression = file.compression
      } else {
        const content = typeof file.content === "string" ? encodeUtf8(file.content) : file.content.slice()
        const asked: string = file.compression ?? "none"
        if (asked !== "gzip" && asked !== "none") {
          return yield* Effect.fail(`${file.name}: give brotli content already compressed, as { compressed }`)
        }
        bytes = asked === "gzip" ? yield* Effect.promise(() => gzip(content)) : content
        compression = asked === "gzip" ? "gzip" : undefined
      }
      const metadata = JSON.parse(JSON.stringify(file.metadata ?? defaultMetadata)) as Json
      const kind = "mimetype" in metadata ? "raw" : "mapped"
      prepared.push({ name: file.name, accountId, metadata, compression, bytes, kind })
    }
    for (const file of prepared) storeFile(user, file, now)
  })

/** @internal */
export const addAccountOf = (state: State, userId: string): Effect.Effect<AccountInfo, string> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const user = knownUser(state, userId)
    return typeof user === "string" ? Either.left(user) : Either.right(infoOf(addAccount(state, userId, now)))
  })

/** @internal */
export const accountsOf = (state: State, userId: string): Effect.Effect<ReadonlyArray<AccountInfo>, string> =>
  Effect.suspend(() => {
    const user = knownUser(state, userId)
    return typeof user === "string" ? Either.left(user) : Either.right(user.accounts.map(infoOf))
  })

/** @internal */
export const requireReauth = (
  state: State,
  userId: string,
  accountId: string,
  required: boolean
): Effect.Effect<void, string> =>
  Effect.suspend(() => {
    const account = accountOf(state, userId, accountId)
    if (account === undefined) return Either.left(`the user ${userId} has no account ${accountId}`)
    account.reauthRequired = required
    return Either.void
  })

/**
 * Removes an account and the files it brought.
 *
 * @internal
 */
export const deleteAccount = (user: User, accountId: string): void => {
  const index = user.accounts.findIndex((account) => account.id === accountId)
  if (index >= 0) user.accounts.splice(index, 1)
  for (const [name, file] of user.files) {
    if (file.accountId === accountId) user.files.delete(name)
  }
}

// --- sync ------------------------------------------------------------------------------------

/** @internal */
export type SyncState = "pending" | "running" | "partial" | "completed"

/** @internal */
export interface SyncView {
  readonly state: SyncState
  readonly files: ReadonlyArray<StoredFile>
  readonly details: Json | undefined
}

/**
 * What the session shows after `polls` file-list answers.
 *
 * @internal
 */
export const syncView = (state: State, session: SyncSession, polls: number): SyncView => {
  if (!session.started) return { state: "pending", files: [], details: undefined }
  const user = state.users.get(session.userId)
  const files = user === undefined ? [] : [...user.files.values()]
  if (!session.sourceFetch) return { state: "completed", files, details: undefined }
  const rounds = state.config.syncPolls
  const running = polls <= rounds
  const accountIds = session.accountIds
  const accounts = (user?.accounts ?? []).filter((account) =>
    accountIds === undefined || accountIds.includes(account.id)
  )
  const details: Json = {}
  let partial = false
  for (const account of accounts) {
    if (running) {
      details[account.id] = { state: "running" }
    } else if (account.reauthRequired) {
      partial = true
      details[account.id] = {
        state: "partial",
        error: {
          code: "ServiceAuthorizationError",
          statusCode: 511,
          message: "Service authorization required",
          reauth: true
        }
      }
    } else {
      details[account.id] = { state: "completed" }
    }
  }
  return {
    state: running ? "running" : partial ? "partial" : "completed",
    files: running ? files.slice(0, Math.floor(files.length * polls / (rounds + 1))) : files,
    details
  }
}

/** A file-list entry: the name, `updatedDate` (ms) and, for mapped files, their metadata's fields. */
const listEntry = (file: StoredFile): Json => {
  if (file.kind === "raw") return { name: file.name, updatedDate: file.updatedDate }
  const { objectCount, objectType, objectVersion, schema, serviceGroup, serviceName } = file.metadata
  return {
    name: file.name,
    updatedDate: file.updatedDate,
    schema,
    objectCount,
    objectType,
    serviceGroup,
    serviceName,
    ...(objectVersion === undefined ? {} : { objectVersion })
  }
}

/**
 * The answer of one poll: the session's sync one step further.
 *
 * @internal
 */
export const poll = (state: State, session: SyncSession): Json => {
  if (session.started) session.polls++
  const view = syncView(state, session, session.polls)
  if (view.state === "pending") return { status: { state: "pending" } }
  return {
    status: { state: view.state, ...(view.details === undefined ? {} : { details: view.details }) },
    fileList: view.files.map(listEntry)
  }
}

// --- pushes ----------------------------------------------------------------------------------

/**
 * Records a library push and stores it as a raw file under its first account.
 *
 * @internal
 */
export const recordPush = (
  state: State,
  clientId: string,
  user: User,
  userId: string,
  metadata: PushedFile["metadata"],
  body: Uint8Array,
  now: number
): PushedFile => {
  const contractId = contractIdOf(state, clientId)
  const fileName = `push-${state.pushed.length + 1}-${randomId()}`
  const raw: Json = {
    mimetype: metadata.mimeType,
    accounts: metadata.accounts.map((account) => ({ accountid: account.accountId })),
    appid: state.config.applicationId,
    contractid: contractId,
    created: now,
    ...(metadata.reference === undefined ? {} : { reference: metadata.reference }),
    ...(metadata.tags === undefined ? {} : { tags: metadata.tags })
  }
  storeFile(user, {
    name: fileName,
    accountId: metadata.accounts[0]!.accountId,
    metadata: raw,
    compression: undefined,
    bytes: body,
    kind: "raw"
  }, now)
  const pushed: PushedFile = { contractId, digimeUserId: userId, metadata, body, fileName }
  state.pushed.push(pushed)
  return pushed
}

/**
 * Every library push received, oldest first.
 *
 * @internal
 */
export const pushed = (state: State): Effect.Effect<ReadonlyArray<PushedFile>> =>
  Effect.sync(() => state.pushed.slice())

/**
 * Every provider push received, oldest first.
 *
 * @internal
 */
export const providerPushes = (state: State): Effect.Effect<ReadonlyArray<ProviderPush>> =>
  Effect.sync(() => state.providerPushes.slice())
