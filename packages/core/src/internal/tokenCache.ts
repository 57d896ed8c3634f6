/**
 * The hot path's memory: tokens read from (or written to) the store, served without a store
 * round trip for `tokenCacheTtl`. Filed by contract, then by user: a lookup encodes nothing, and
 * two keys never share an entry.
 *
 * Bounded in size and in time. The entries are also chained from the oldest write to the newest:
 * a write moves its entry to the newest end, a write into a full cache evicts the oldest, and
 * entries older than the time to live are dropped from the oldest end (at every write, and by
 * `purge`), never by a scan. The chain is ours rather than a `Map`'s insertion order: taking the
 * first entry of a `Map` skips every slot deleted before it, which makes a `Map` used as a queue
 * quadratic.
 *
 * A copy read from the store before `invalidate` is never cached after it: callers read
 * `generation` before the store call and pass it to `set`, which drops the copy when an
 * invalidation happened in between.
 */
import type { TokenKey } from "../TokenKey.js"
import type { Versioned } from "../TokenStore.js"

interface Entry {
  versioned: Versioned
  readAt: number
  readonly contractId: string
  readonly userId: string
  older: Entry | undefined
  newer: Entry | undefined
}

/** @internal */
export interface TokenCache {
  /** The entry of the key read less than the time to live before `now` (epoch ms), if any. */
  readonly get: (key: TokenKey, now: number) => Versioned | undefined
  /** Read it before a store call whose result goes to `set`. */
  readonly generation: () => number
  /**
   * Caches `versioned`, read at `now`, unless the key was invalidated since `generation` was read
   * or a newer version of it is cached and still fresh.
   */
  readonly set: (key: TokenKey, versioned: Versioned, now: number, generation: number) => void
  /** Drops the key's entry (the store holds nothing for it). */
  readonly delete: (key: TokenKey) => void
  /** Drops the key's entry, and every copy of any key read from the store before this call. */
  readonly invalidate: (key: TokenKey) => void
  /** Drops the entries older than the time to live at `now`. */
  readonly purge: (now: number) => void
  readonly size: () => number
}

/**
 * A cache of at most `capacity` entries, each served for `ttlMillis`. `onFill` is called when an
 * empty cache receives an entry.
 *
 * @internal
 */
export const make = (ttlMillis: number, capacity: number, onFill: () => void = () => {}): TokenCache => {
  const entries = new Map<string, Map<string, Entry>>()
  let oldest: Entry | undefined
  let newest: Entry | undefined
  let size = 0
  let generation = 0

  const unlink = (entry: Entry) => {
    if (entry.older === undefined) oldest = entry.newer
    else entry.older.newer = entry.newer
    if (entry.newer === undefined) newest = entry.older
    else entry.newer.older = entry.older
    entry.older = entry.newer = undefined
  }
  const append = (entry: Entry) => {
    entry.older = newest
    if (newest === undefined) oldest = entry
    else newest.newer = entry
    newest = entry
  }
  const remove = (entry: Entry) => {
    unlink(entry)
    size--
    const users = entries.get(entry.contractId)
    if (users !== undefined && users.delete(entry.userId) && users.size === 0) entries.delete(entry.contractId)
  }
  const purge = (now: number) => {
    while (oldest !== undefined && now - oldest.readAt >= ttlMillis) remove(oldest)
  }
  const drop = (key: TokenKey) => {
    const entry = entries.get(key.contractId)?.get(key.userId)
    if (entry !== undefined) remove(entry)
  }

  return {
    get: (key, now) => {
      const hit = entries.get(key.contractId)?.get(key.userId)
      return hit !== undefined && now - hit.readAt < ttlMillis ? hit.versioned : undefined
    },
    generation: () => generation,
    set: (key, versioned, now, since) => {
      if (ttlMillis <= 0 || capacity <= 0 || since !== generation) return
      purge(now)
      const found = entries.get(key.contractId)?.get(key.userId)
      if (found !== undefined) {
        // A read that started before the write of the cached version must not replace it.
        if (found.versioned.version > versioned.version && now - found.readAt < ttlMillis) return
        found.versioned = versioned
        found.readAt = now
        unlink(found)
        append(found)
        return
      }
      if (size >= capacity) remove(oldest!)
      let users = entries.get(key.contractId)
      if (users === undefined) entries.set(key.contractId, users = new Map())
      const entry: Entry = {
        versioned,
        readAt: now,
        contractId: key.contractId,
        userId: key.userId,
        older: undefined,
        newer: undefined
      }
      users.set(key.userId, entry)
      append(entry)
      if (size++ === 0) onFill()
    },
    delete: drop,
    invalidate: (key) => {
      generation++
      drop(key)
    },
    purge,
    size: () => size
  }
}
