/**
 * Where user access tokens live, by `TokenKey`. Every stored token carries a version, so that
 * writing a refreshed token is compare-and-set and an older token can never overwrite a newer
 * one.
 *
 * A refresh is announced in the store before it is sent: a **lease** on the token's version says
 * who refreshes it and until when. Every process sharing the store honours it, whether or not its
 * holder is still alive, and no database transaction is held while the refresh runs. The lease
 * ends with the compare-and-set write of the new token, in the same write. A lease that ended
 * without a new token either was released (the refresh token was not spent: anyone may refresh)
 * or was abandoned or outlived (the refresh token may have been spent: nobody may send it again).
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { InvalidOptions } from "./DigimeError.js"
import type { TokenStoreError } from "./DigimeError.js"
import * as TokenKey from "./TokenKey.js"
import type { UserAccessToken } from "./UserAccessToken.js"

/**
 * A refresh of one token version, announced in the store before it is sent.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  /** Who refreshes: an id of the `TokenManager` (one per process) that took the lease. */
  readonly holder: string
  /** The version of the token being refreshed. */
  readonly version: number
  /**
   * Until when the refresh may run (epoch milliseconds, by the holder's clock). After it, without a
   * newer token, the refresh token may have been spent; an abandoned lease has `until` 0.
   */
  readonly until: number
}

/**
 * A stored token and its version. Versions grow with every write of the key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Versioned {
  readonly token: UserAccessToken
  readonly version: number
  /** The lease on this version, when a refresh of it was started and has not been released. */
  readonly lease?: Lease | undefined
  /** The mark "needs reconnect" on this version, when a refresh of it found it cannot be refreshed. */
  readonly reconnect?: Reconnect | undefined
}

/**
 * How a lease ends without a new token: `Released` when the refresh token was not spent (the
 * request was not sent, or digi.me refused it), `Abandoned` when it may have been (the answer was
 * lost): the version can then never be refreshed again, only replaced by a new authorization.
 *
 * @since 0.1.0
 * @category models
 */
export type LeaseEnd = "Released" | "Abandoned"

/**
 * What `acquireLeaseAndGet` answers: whether the lease was taken, and the key's stored token
 * (`None` when nothing is stored). When the lease was taken, `current` is the leased version with
 * the lease, read in the same atomic step; otherwise it is read after the refusal, as `get` would.
 *
 * @since 0.4.0
 * @category models
 */
export interface LeaseAndCurrent {
  readonly acquired: boolean
  readonly current: Option.Option<Versioned>
}

/**
 * Why the user of a key must connect again: digi.me refused the refresh token as expired
 * (`RefreshTokenExpired`) or invalid (`RefreshTokenInvalid`), a refresh's outcome was lost so its
 * refresh token may be spent (`RefreshOutcomeUnknown`), or digi.me refused the access token itself
 * (`InvalidAccessToken`: only a new authorization helps).
 *
 * @since 0.3.0
 * @category models
 */
export type ReconnectReason =
  | "RefreshTokenExpired"
  | "RefreshTokenInvalid"
  | "RefreshOutcomeUnknown"
  | "InvalidAccessToken"

/**
 * The mark "needs reconnect" on one version of a key's token: kept until a new token is written.
 *
 * @since 0.3.0
 * @category models
 */
export interface Reconnect {
  readonly reason: ReconnectReason
  /** The version of the token that cannot be refreshed. */
  readonly version: number
  /** When it was found (epoch milliseconds). */
  readonly at: number
}

/**
 * Which expiry of a stored token a listing or a claim is about.
 *
 * @since 0.3.0
 * @category models
 */
export type Expiry = "AccessToken" | "RefreshToken"

/**
 * A key in a listing by expiry: its version and both expiries (epoch milliseconds). The token
 * itself is not read.
 *
 * @since 0.3.0
 * @category models
 */
export interface Due {
  readonly key: TokenKey.TokenKey
  /** `TokenKey.toId(key)`: with the expiry, where the next page of a listing starts. */
  readonly id: string
  readonly version: number
  readonly accessExpiresAt: number
  readonly refreshExpiresAt: number
}

/**
 * A page of the keys whose `expiry` is before `before` (epoch milliseconds), ordered by that
 * expiry, then by id. Keys marked "needs reconnect" for their stored version are left out.
 *
 * @since 0.3.0
 * @category models
 */
export interface DueQuery {
  readonly expiry: Expiry
  readonly before: number
  /** The last entry of the previous page: this page starts after it. */
  readonly after?: { readonly at: number; readonly id: string } | undefined
  readonly limit: number
}

/**
 * A claim of due keys by one upkeep instance: up to `limit` keys whose `expiry` is due before
 * `before` (epoch milliseconds); each key's due time becomes `until`. A later claim that looks as
 * far ahead of its own now finds the key again once its now passes `until - (before - now)`: a
 * claimer that means to hold keys for a time `hold` passes `until = before + hold`.
 *
 * @since 0.3.0
 * @category models
 */
export interface ClaimQuery {
  readonly expiry: Expiry
  readonly before: number
  readonly until: number
  readonly limit: number
}

/**
 * A page of the keys marked "needs reconnect", ordered by id.
 *
 * @since 0.3.0
 * @category models
 */
export interface ReconnectQuery {
  /** The id of the last entry of the previous page. */
  readonly after?: string | undefined
  readonly limit: number
}

/**
 * A key marked "needs reconnect", and why.
 *
 * @since 0.3.0
 * @category models
 */
export interface NeedsReconnect {
  readonly key: TokenKey.TokenKey
  readonly id: string
  readonly reconnect: Reconnect
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The stored token and its version, if any. */
  readonly get: (key: TokenKey.TokenKey) => Effect.Effect<Option.Option<Versioned>, TokenStoreError>
  /**
   * Stores a token unconditionally (a new authorization) and returns it with its new version; any
   * lease on the key ends.
   */
  readonly set: (key: TokenKey.TokenKey, token: UserAccessToken) => Effect.Effect<Versioned, TokenStoreError>
  /**
   * Stores `token` only if the stored version is still `expectedVersion`, ending the lease on it
   * in the same write. Returns the new version, or `None` when another writer got there first (the
   * stored token is then newer).
   */
  readonly compareAndSet: (
    key: TokenKey.TokenKey,
    expectedVersion: number,
    token: UserAccessToken
  ) => Effect.Effect<Option.Option<Versioned>, TokenStoreError>
  /** Removes the token of the key, if any. */
  readonly delete: (key: TokenKey.TokenKey) => Effect.Effect<void, TokenStoreError>
  /**
   * Takes `lease` on version `lease.version` of the key, if that is still the stored version and
   * no lease was taken on that version since it was written (or the last one was released); a
   * lease left on an older version (by a writer that does not know leases) does not count.
   * Atomic: of several processes, one takes it. Answers whether it did.
   */
  readonly acquireLease: (key: TokenKey.TokenKey, lease: Lease) => Effect.Effect<boolean, TokenStoreError>
  /**
   * Optional: `acquireLease` and `get` in one step, so that a refresh takes its lease and reads
   * the token it sends in one round trip. Takes `lease` as `acquireLease` does (atomically), and
   * only if version `lease.version` is not marked "needs reconnect"; answers whether it took it
   * and the stored token (see `LeaseAndCurrent`). The `TokenManager` uses it, when a store has it,
   * for the first look of a refresh whose version it knows; without it, it reads with `get`, then
   * takes the lease with `acquireLease`. A failure may come after the lease was taken (an answer
   * lost, a row that does not read): the caller then ends it as `Released`, nothing having been
   * sent. A wrapper of a store that changes `get` or `acquireLease` must change this method as
   * well, or leave it out.
   *
   * @since 0.4.0
   */
  readonly acquireLeaseAndGet?:
    | ((key: TokenKey.TokenKey, lease: Lease) => Effect.Effect<LeaseAndCurrent, TokenStoreError>)
    | undefined
  /**
   * Ends `lease` without a new token, if it is still the one on the key: same holder, version and
   * `until`. Another holder's lease is left, and so is an abandoned one (a `Released` never reopens
   * a version whose refresh token may have been spent).
   */
  readonly endLease: (key: TokenKey.TokenKey, lease: Lease, end: LeaseEnd) => Effect.Effect<void, TokenStoreError>
  /**
   * A page of the keys whose access or refresh token expires before a time (see `DueQuery`), from
   * an index of both expiries: for dashboards and reports. `streamDue` reads every page.
   */
  readonly listDue: (query: DueQuery) => Effect.Effect<ReadonlyArray<Due>, TokenStoreError>
  /**
   * Claims due keys for upkeep, oldest due first: each key's due time for `query.expiry` moves to
   * `query.until`, atomically, so that of several instances claiming at once, each key goes to one
   * (PostgreSQL: `FOR UPDATE SKIP LOCKED`, claimers do not wait for each other). A key is due again
   * when its claim ends without a new token; every write of a token makes its due times its
   * expiries again. Keys marked "needs reconnect" for their stored version are never claimed.
   */
  readonly claimDue: (query: ClaimQuery) => Effect.Effect<ReadonlyArray<Due>, TokenStoreError>
  /**
   * Marks version `reconnect.version` of the key "needs reconnect", if it is still the stored one
   * and not marked yet; a newer token (the user connected again) is left as it was. Answers
   * whether it marked: of several processes that find the same, one gets `true`. Every write of a
   * token ends the mark.
   */
  readonly markReconnect: (key: TokenKey.TokenKey, reconnect: Reconnect) => Effect.Effect<boolean, TokenStoreError>
  /** A page of the keys marked "needs reconnect" (see `ReconnectQuery`). */
  readonly listReconnect: (query: ReconnectQuery) => Effect.Effect<ReadonlyArray<NeedsReconnect>, TokenStoreError>
}

/**
 * @since 0.1.0
 * @category services
 */
export class TokenStore extends Context.Tag("@digime-effect/core/TokenStore")<TokenStore, Service>() {}

/**
 * A store in the memory of this process. Tokens are lost when it ends, and it cannot be shared
 * with other processes: use it for tests, demos and single-process apps that accept a new
 * authorization after a restart. Listings and claims scan every key: fine for thousands of keys.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Service> = Effect.sync(() => {
  interface Entry {
    readonly key: TokenKey.TokenKey
    readonly versioned: Versioned
    /** When upkeep is due for each expiry (epoch ms); `undefined` when marked "needs reconnect". */
    readonly due: { readonly AccessToken: number; readonly RefreshToken: number } | undefined
  }
  const entries = new Map<string, Entry>()
  // One counter for every key: a key deleted and set again never reuses a version.
  let clock = 0
  const write = (key: TokenKey.TokenKey, token: UserAccessToken): Versioned => {
    const versioned: Versioned = { token, version: ++clock }
    entries.set(TokenKey.toId(key), { key, versioned, due: expiriesOf(token) })
    return versioned
  }
  const update = (id: string, entry: Entry, versioned: Versioned) => entries.set(id, { ...entry, versioned })
  const dueOf = (id: string, entry: Entry): Due => ({
    key: entry.key,
    id,
    version: entry.versioned.version,
    ...expiryFields(entry.versioned.token)
  })
  return {
    get: (key) => Effect.sync(() => Option.fromNullable(entries.get(TokenKey.toId(key))?.versioned)),
    set: (key, token) => Effect.sync(() => write(key, token)),
    compareAndSet: (key, expectedVersion, token) =>
      Effect.sync(() =>
        entries.get(TokenKey.toId(key))?.versioned.version === expectedVersion
          ? Option.some(write(key, token))
          : Option.none()
      ),
    delete: (key) => Effect.sync(() => void entries.delete(TokenKey.toId(key))),
    acquireLease: (key, lease) =>
      Effect.sync(() => {
        const id = TokenKey.toId(key)
        const entry = entries.get(id)
        const found = entry?.versioned
        if (entry === undefined || found === undefined || found.version !== lease.version) return false
        if (found.lease !== undefined && found.lease.version === found.version) return false
        update(id, entry, { ...found, lease })
        return true
      }),
    endLease: (key, lease, end) =>
      Effect.sync(() => {
        const id = TokenKey.toId(key)
        const entry = entries.get(id)
        const found = entry?.versioned
        const held = found?.lease
        if (
          entry === undefined || found === undefined || held?.holder !== lease.holder ||
          held.version !== lease.version || held.until !== lease.until
        ) return
        const { lease: _, ...rest } = found
        update(id, entry, end === "Released" ? rest : { ...found, lease: { ...held, until: 0 } })
      }),
    listDue: (query) =>
      Effect.sync(() => {
        const field = query.expiry === "AccessToken" ? "accessExpiresAt" : "refreshExpiresAt"
        const after = query.after
        const found: Array<Due> = []
        for (const [id, entry] of entries) {
          if (marked(entry.versioned)) continue
          const due = dueOf(id, entry)
          const at = due[field]
          if (at >= query.before) continue
          if (after !== undefined && (at < after.at || (at === after.at && id <= after.id))) continue
          found.push(due)
        }
        return found.sort((a, b) => a[field] - b[field] || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .slice(0, Math.max(0, query.limit))
      }),
    claimDue: (query) =>
      Effect.sync(() => {
        const candidates: Array<readonly [string, Entry, number]> = []
        for (const [id, entry] of entries) {
          const at = entry.due?.[query.expiry]
          if (at !== undefined && at < query.before && !marked(entry.versioned)) candidates.push([id, entry, at])
        }
        candidates.sort((a, b) => a[2] - b[2] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
        return candidates.slice(0, Math.max(0, query.limit)).map(([id, entry]) => {
          entries.set(id, { ...entry, due: { ...entry.due!, [query.expiry]: query.until } })
          return dueOf(id, entry)
        })
      }),
    markReconnect: (key, reconnect) =>
      Effect.sync(() => {
        const id = TokenKey.toId(key)
        const entry = entries.get(id)
        if (entry === undefined || entry.versioned.version !== reconnect.version || marked(entry.versioned)) {
          return false
        }
        entries.set(id, { ...entry, versioned: { ...entry.versioned, reconnect }, due: undefined })
        return true
      }),
    listReconnect: (query) =>
      Effect.sync(() => {
        const found: Array<NeedsReconnect> = []
        for (const [id, entry] of entries) {
          const reconnect = entry.versioned.reconnect
          if (reconnect === undefined || !marked(entry.versioned)) continue
          if (query.after !== undefined && id <= query.after) continue
          found.push({ key: entry.key, id, reconnect })
        }
        return found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).slice(0, Math.max(0, query.limit))
      })
  }
})

// A mark on an older version (a store written by hand) does not count.
const marked = (versioned: Versioned): boolean => versioned.reconnect?.version === versioned.version

/**
 * A token's two expiries in epoch milliseconds, as stores index them.
 *
 * @since 0.3.0
 * @category utils
 */
export const expiryFields = (token: UserAccessToken): {
  readonly accessExpiresAt: number
  readonly refreshExpiresAt: number
} => ({
  accessExpiresAt: DateTime.toEpochMillis(token.accessToken.expiresAt),
  refreshExpiresAt: DateTime.toEpochMillis(token.refreshToken.expiresAt)
})

const expiriesOf = (token: UserAccessToken) => {
  const { accessExpiresAt, refreshExpiresAt } = expiryFields(token)
  return { AccessToken: accessExpiresAt, RefreshToken: refreshExpiresAt }
}

/**
 * Every key whose `expiry` is before `before` (epoch milliseconds), read from the store a page of
 * `pageSize` (default 500, at most 10,000) at a time, as `listDue` orders them. A bad `pageSize`
 * fails with `InvalidOptions`.
 *
 * @since 0.3.0
 * @category combinators
 */
export const streamDue = (options: {
  readonly expiry: Expiry
  readonly before: number
  readonly pageSize?: number | undefined
}): Stream.Stream<Due, TokenStoreError | InvalidOptions, TokenStore> =>
  Stream.unwrap(Effect.zipWith(TokenStore, pageSizeOf("TokenStore.streamDue", options.pageSize), (store, limit) => {
    const field = options.expiry === "AccessToken" ? "accessExpiresAt" : "refreshExpiresAt"
    return Stream.paginateChunkEffect(
      undefined as DueQuery["after"],
      (after) =>
        Effect.map(store.listDue({ expiry: options.expiry, before: options.before, after, limit }), (page) => {
          const last = page[page.length - 1]
          return [
            Chunk.unsafeFromArray(page),
            page.length < limit || last === undefined ? Option.none() : Option.some({ at: last[field], id: last.id })
          ] as const
        })
    )
  }))

/**
 * Every key marked "needs reconnect", read from the store a page of `pageSize` (default 500, at
 * most 10,000) at a time, ordered by id: the users to ask to connect again. A bad `pageSize` fails
 * with `InvalidOptions`.
 *
 * @since 0.3.0
 * @category combinators
 */
export const streamReconnect = (
  options: { readonly pageSize?: number | undefined } = {}
): Stream.Stream<NeedsReconnect, TokenStoreError | InvalidOptions, TokenStore> =>
  Stream.unwrap(
    Effect.zipWith(TokenStore, pageSizeOf("TokenStore.streamReconnect", options.pageSize), (store, limit) => {
      return Stream.paginateChunkEffect(
        undefined as string | undefined,
        (after) =>
          Effect.map(store.listReconnect({ after, limit }), (page) => {
            const last = page[page.length - 1]
            return [
              Chunk.unsafeFromArray(page),
              page.length < limit || last === undefined ? Option.none() : Option.some(last.id)
            ] as const
          })
      )
    })
  )

const pageSizeOf = (operation: string, pageSize: number | undefined): Effect.Effect<number, InvalidOptions> =>
  pageSize === undefined
    ? Effect.succeed(500)
    : Number.isSafeInteger(pageSize) && pageSize >= 1 && pageSize <= 10_000
    ? Effect.succeed(pageSize)
    : Effect.fail(new InvalidOptions({ operation, field: "pageSize", reason: "must be an integer from 1 to 10000" }))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<TokenStore> = Layer.effect(TokenStore, makeMemory)
