/**
 * The hot path's memory: tokens read from (or written to) the store, served without a store
 * round trip for `tokenCacheTtl`. Filed by contract, then by user: a lookup encodes nothing, and
 * two keys never share an entry.
 */
import type { TokenKey } from "../TokenKey.js"
import type { Versioned } from "../TokenStore.js"

/** @internal */
export interface TokenCache {
  /** The entry of the key read less than the time to live before `now` (epoch ms), if any. */
  readonly get: (key: TokenKey, now: number) => Versioned | undefined
  readonly set: (key: TokenKey, versioned: Versioned, now: number) => void
  readonly delete: (key: TokenKey) => void
}

/** @internal */
export const make = (ttlMillis: number): TokenCache => {
  const entries = new Map<string, Map<string, { readonly versioned: Versioned; readonly readAt: number }>>()
  return {
    get: (key, now) => {
      const hit = entries.get(key.contractId)?.get(key.userId)
      return hit !== undefined && now - hit.readAt < ttlMillis ? hit.versioned : undefined
    },
    set: (key, versioned, now) => {
      if (ttlMillis <= 0) return
      let users = entries.get(key.contractId)
      if (users === undefined) entries.set(key.contractId, users = new Map())
      users.set(key.userId, { versioned, readAt: now })
    },
    delete: (key) => {
      const users = entries.get(key.contractId)
      if (users !== undefined && users.delete(key.userId) && users.size === 0) entries.delete(key.contractId)
    }
  }
}
