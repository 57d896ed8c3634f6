/**
 * Authorizations in progress: between sending a user to digi.me and digi.me calling back, the
 * PKCE verifier and the key the token is for wait here, under the unguessable `state` of the
 * request. Each entry can be consumed once, until it expires.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import { InvalidConfig } from "./DigimeError.js"
import type { TokenStoreError } from "./DigimeError.js"
import * as TokenKey from "./TokenKey.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Pending {
  readonly key: TokenKey.TokenKey
  readonly kind: "authorize" | "reauthorize"
  readonly codeVerifier: Redacted.Redacted<string>
  readonly callbackUrl: string
  readonly expiresAt: DateTime.Utc
}

/**
 * What consuming a state found.
 *
 * @since 0.1.0
 * @category models
 */
export type Consumed =
  | { readonly _tag: "Found"; readonly pending: Pending }
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Expired" }
  | { readonly _tag: "AlreadyUsed" }

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Records an authorization in progress under its state. */
  readonly put: (state: string, pending: Pending) => Effect.Effect<void, TokenStoreError>
  /**
   * Marks the entry of `state` used and returns it, atomically: of two callbacks with the same
   * state, only one finds it. Expired and used entries are told apart from unknown ones until
   * they are purged.
   */
  readonly consume: (state: string, now: DateTime.Utc) => Effect.Effect<Consumed, TokenStoreError>
}

/**
 * @since 0.1.0
 * @category services
 */
export class PendingAuthorizations
  extends Context.Tag("@digime-effect/core/PendingAuthorizations")<PendingAuthorizations, Service>()
{}

/**
 * The bounds of the in-memory store.
 *
 * @since 0.2.0
 * @category models
 */
export interface MemoryOptions {
  /**
   * How many authorizations may be in progress at once; default 10,000 (a few megabytes). When it
   * is full, a new one drops the authorization closest to its expiry.
   */
  readonly capacity?: number | undefined
  /**
   * How many authorizations one `TokenKey` may have in progress at once; default 5. A key's next
   * one drops its oldest.
   */
  readonly maxPerKey?: number | undefined
}

/**
 * What the in-memory store holds now.
 *
 * @since 0.2.0
 * @category models
 */
export interface MemorySize {
  /** Authorizations in progress: at most `capacity`. */
  readonly inProgress: number
  /** Ended authorizations (used, expired or dropped) still told apart from unknown states: at most `capacity`. */
  readonly ended: number
}

/**
 * The in-memory store, with what it holds.
 *
 * @since 0.2.0
 * @category models
 */
export interface MemoryService extends Service {
  readonly size: Effect.Effect<MemorySize>
}

/**
 * The defaults of `MemoryOptions`.
 *
 * @since 0.2.0
 * @category models
 */
export const defaultMemoryOptions: { readonly capacity: number; readonly maxPerKey: number } = {
  capacity: 10_000,
  maxPerKey: 5
}

// An ended authorization is told apart from an unknown state for this long after it ended.
const rememberEndedMillis = 60 * 60 * 1000

interface Entry {
  readonly state: string
  readonly pending: Pending
  readonly expiresAt: number
  readonly keyId: string
  /** Position in the expiry heap. */
  index: number
  /** The neighbours among the entries of the same key, oldest first. */
  older: Entry | undefined
  newer: Entry | undefined
}

interface OfKey {
  oldest: Entry
  newest: Entry
  count: number
}

interface Ended {
  readonly state: string
  readonly outcome: "Expired" | "AlreadyUsed"
  readonly forgetAt: number
}

const positiveInteger = (field: string, input: number | undefined, fallback: number) =>
  input === undefined
    ? Effect.succeed(fallback)
    : Number.isSafeInteger(input) && input > 0
    ? Effect.succeed(input)
    : Effect.fail(new InvalidConfig({ field, reason: "must be a positive integer" }))

/**
 * An in-memory store, bounded in size and in time. At most `capacity` authorizations are in
 * progress, at most `maxPerKey` of them for one key; one dropped to make room counts as expired
 * (its callback fails with `CallbackError` `ExpiredState`). An ended authorization (used, expired
 * or dropped) is told apart from an unknown state for an hour after it ended, for at most
 * `capacity` of them, the oldest forgotten first. Expired entries are found in the order of their
 * expiry, whatever their lifetimes, without a scan: `put` and `consume` take logarithmic time. A
 * process restart forgets everything, so users in the middle of an authorization must start again.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeMemoryWith = (options: MemoryOptions = {}): Effect.Effect<MemoryService, InvalidConfig> =>
  Effect.gen(function*() {
    const capacity = yield* positiveInteger(
      "PendingAuthorizations.capacity",
      options.capacity,
      defaultMemoryOptions.capacity
    )
    const maxPerKey = yield* positiveInteger(
      "PendingAuthorizations.maxPerKey",
      options.maxPerKey,
      defaultMemoryOptions.maxPerKey
    )
    return memory(capacity, maxPerKey)
  })

const memory = (capacity: number, maxPerKey: number): MemoryService => {
  const entries = new Map<string, Entry>()
  const ofKeys = new Map<string, OfKey>()
  // A binary min-heap of the entries in progress by expiry; each entry knows its position.
  const heap: Array<Entry> = []
  const ended = new Map<string, Ended>()
  // Ended entries in the order they ended, hence of `forgetAt`; `head` is the first still queued.
  let endedQueue: Array<Ended> = []
  let head = 0

  const place = (entry: Entry, index: number) => {
    heap[index] = entry
    entry.index = index
  }
  const siftUp = (entry: Entry) => {
    let index = entry.index
    while (index > 0) {
      const parent = heap[(index - 1) >> 1]!
      if (parent.expiresAt <= entry.expiresAt) break
      place(parent, index)
      index = (index - 1) >> 1
    }
    place(entry, index)
  }
  const siftDown = (entry: Entry) => {
    let index = entry.index
    for (;;) {
      const left = 2 * index + 1
      if (left >= heap.length) break
      const right = left + 1
      const child = right < heap.length && heap[right]!.expiresAt < heap[left]!.expiresAt ? right : left
      if (heap[child]!.expiresAt >= entry.expiresAt) break
      place(heap[child]!, index)
      index = child
    }
    place(entry, index)
  }
  const unheap = (entry: Entry) => {
    const last = heap.pop()!
    if (last === entry) return
    place(last, entry.index)
    siftDown(last)
    siftUp(last)
  }

  const forget = (upTo: number, limit: number) => {
    while (head < endedQueue.length && (endedQueue[head]!.forgetAt <= upTo || ended.size > limit)) {
      const first = endedQueue[head++]!
      if (ended.get(first.state) === first) ended.delete(first.state)
    }
    if (head > 1024 && head * 2 > endedQueue.length) {
      endedQueue = endedQueue.slice(head)
      head = 0
    }
  }
  const detach = (entry: Entry) => {
    entries.delete(entry.state)
    unheap(entry)
    const ofKey = ofKeys.get(entry.keyId)!
    if (--ofKey.count === 0) ofKeys.delete(entry.keyId)
    else {
      if (entry.older === undefined) ofKey.oldest = entry.newer!
      else entry.older.newer = entry.newer
      if (entry.newer === undefined) ofKey.newest = entry.older!
      else entry.newer.older = entry.older
    }
  }
  const end = (entry: Entry, outcome: Ended["outcome"], now: number) => {
    detach(entry)
    const record: Ended = { state: entry.state, outcome, forgetAt: now + rememberEndedMillis }
    ended.set(entry.state, record)
    endedQueue.push(record)
    forget(now, capacity)
  }
  const purge = (now: number) => {
    while (heap.length > 0 && heap[0]!.expiresAt <= now) end(heap[0]!, "Expired", now)
    forget(now, capacity)
  }

  const add = (state: string, pending: Pending, now: number) => {
    purge(now)
    const previous = entries.get(state)
    if (previous !== undefined) detach(previous)
    ended.delete(state)
    const keyId = TokenKey.toId(pending.key)
    let ofKey = ofKeys.get(keyId)
    if (ofKey !== undefined && ofKey.count >= maxPerKey) end(ofKey.oldest, "Expired", now)
    if (entries.size >= capacity) end(heap[0]!, "Expired", now)
    const entry: Entry = {
      state,
      pending,
      expiresAt: DateTime.toEpochMillis(pending.expiresAt),
      keyId,
      index: heap.length,
      older: undefined,
      newer: undefined
    }
    entries.set(state, entry)
    heap.push(entry)
    siftUp(entry)
    ofKey = ofKeys.get(keyId)
    if (ofKey === undefined) ofKeys.set(keyId, { oldest: entry, newest: entry, count: 1 })
    else {
      entry.older = ofKey.newest
      ofKey.newest.newer = entry
      ofKey.newest = entry
      ofKey.count++
    }
  }

  const take = (state: string, now: number): Consumed => {
    purge(now)
    const entry = entries.get(state)
    if (entry === undefined) {
      const outcome = ended.get(state)?.outcome
      return outcome === undefined ? { _tag: "Unknown" } : { _tag: outcome }
    }
    end(entry, "AlreadyUsed", now)
    return { _tag: "Found", pending: entry.pending }
  }

  return {
    put: (state, pending) =>
      Effect.clockWith((clock) => Effect.sync(() => add(state, pending, clock.unsafeCurrentTimeMillis()))),
    consume: (state, now) => Effect.sync(() => take(state, DateTime.toEpochMillis(now))),
    size: Effect.sync(() => ({ inProgress: entries.size, ended: ended.size }))
  }
}

/**
 * An in-memory store with the default bounds (`makeMemoryWith`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<MemoryService> = Effect.sync(() =>
  memory(defaultMemoryOptions.capacity, defaultMemoryOptions.maxPerKey)
)

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<PendingAuthorizations> = Layer.effect(PendingAuthorizations, makeMemory)

/**
 * @since 0.2.0
 * @category layers
 */
export const layerMemoryWith = (options: MemoryOptions): Layer.Layer<PendingAuthorizations, InvalidConfig> =>
  Layer.effect(PendingAuthorizations, makeMemoryWith(options))
