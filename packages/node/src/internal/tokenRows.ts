/**
 * The token table's rows as `SqlTokenStore` reads them: a row's lease and "needs reconnect" mark,
 * its key, and the entries of a listing of due keys or of keys that need reconnecting. Every
 * column is checked; a value that is not what the store writes is a `RowError`.
 */
import * as TokenKey from "@digime-effect/core/TokenKey"
import type * as TokenStore from "@digime-effect/core/TokenStore"
import * as Effect from "effect/Effect"
import { RowError } from "./rowError.js"
import * as SqlStore from "./sqlStore.js"

/** @internal */
export interface Mark {
  readonly reconnect_reason: unknown
  readonly reconnect_version: unknown
  readonly reconnect_at: unknown
}

/** @internal */
export interface Row extends Mark {
  readonly version: unknown
  readonly token: unknown
  readonly lease_holder: unknown
  readonly lease_version: unknown
  readonly lease_until: unknown
}

/** @internal */
export interface KeyRow {
  readonly id: unknown
  readonly user_id: unknown
  readonly contract_id: unknown
}

/** @internal */
export interface DueRow extends KeyRow {
  readonly version: unknown
  readonly access_expires_at: unknown
  readonly refresh_expires_at: unknown
}

// The due time a claimed row had (on SQLite, its expiry).
/** @internal */
export interface ClaimedRow extends DueRow {
  readonly due: unknown
}

/** @internal */
export interface MarkRow extends KeyRow, Mark {}

// The three columns are written together: all set, or all `NULL`.
/** @internal */
export const leaseIn = (row: Row): TokenStore.Lease | undefined | RowError => {
  const { lease_holder: holder, lease_until, lease_version } = row
  if (holder === null && lease_version === null && lease_until === null) return undefined
  const version = SqlStore.integerOf(lease_version)
  const until = SqlStore.integerOf(lease_until)
  return typeof holder !== "string" || version === undefined || until === undefined
    ? new RowError({ reason: "LeaseInvalid" })
    : { holder, version, until }
}

const reconnectReasons: ReadonlySet<unknown> = new Set(
  Object.keys(
    {
      RefreshTokenExpired: null,
      RefreshTokenInvalid: null,
      RefreshOutcomeUnknown: null,
      InvalidAccessToken: null
    } satisfies Record<TokenStore.ReconnectReason, null>
  )
)

/** @internal */
export const isReconnectReason = (value: unknown): value is TokenStore.ReconnectReason => reconnectReasons.has(value)

// The three columns are written together: all set, or all `NULL`. A mark on an older version (left
// by a writer that does not know marks) is read, and does not count.
/** @internal */
export const reconnectIn = (row: Mark): TokenStore.Reconnect | undefined | RowError => {
  const { reconnect_at, reconnect_reason: reason, reconnect_version } = row
  if (reason === null && reconnect_version === null && reconnect_at === null) return undefined
  const version = SqlStore.integerOf(reconnect_version)
  const at = SqlStore.integerOf(reconnect_at)
  return !isReconnectReason(reason) || version === undefined || at === undefined
    ? new RowError({ reason: "ReconnectInvalid" })
    : { reason, version, at }
}

/** @internal */
export const reconnectOf = (row: Mark): Effect.Effect<TokenStore.Reconnect | undefined, RowError> => {
  const mark = reconnectIn(row)
  return mark instanceof RowError ? Effect.fail(mark) : Effect.succeed(mark)
}

/** @internal */
export const keyOf = (row: KeyRow) =>
  Effect.all({
    id: SqlStore.toText(row.id, "KeyInvalid"),
    key: Effect.flatMap(
      Effect.zip(SqlStore.toText(row.user_id, "KeyInvalid"), SqlStore.toText(row.contract_id, "KeyInvalid")),
      ([userId, contractId]) =>
        Effect.mapError(TokenKey.decode(userId, contractId), () => new RowError({ reason: "KeyInvalid" }))
    )
  })

/** @internal */
export const dueOf = (row: DueRow): Effect.Effect<TokenStore.Due, RowError> =>
  Effect.zipWith(
    keyOf(row),
    Effect.all({
      version: SqlStore.toVersion(row.version),
      accessExpiresAt: SqlStore.toInteger(row.access_expires_at, "ExpiryInvalid"),
      refreshExpiresAt: SqlStore.toInteger(row.refresh_expires_at, "ExpiryInvalid")
    }),
    (keyed, fields) => ({ ...keyed, ...fields })
  )

/** @internal */
export const needsReconnectOf = (row: MarkRow): Effect.Effect<TokenStore.NeedsReconnect, RowError> =>
  Effect.zipWith(
    keyOf(row),
    Effect.flatMap(
      reconnectOf(row),
      (reconnect) =>
        reconnect === undefined ? Effect.fail(new RowError({ reason: "ReconnectInvalid" })) : Effect.succeed(reconnect)
    ),
    (keyed, reconnect) => ({ ...keyed, reconnect })
  )

// Oldest due first, then by id.
/** @internal */
export const byDue = (entries: ReadonlyArray<readonly [TokenStore.Due, number]>): Array<TokenStore.Due> =>
  [...entries].sort(([a, atA], [b, atB]) => atA - atB || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map(([entry]) => entry)
