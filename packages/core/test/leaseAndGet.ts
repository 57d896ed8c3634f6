/**
 * A store with `acquireLeaseAndGet` on top of one without it (the memory store), so that the token
 * manager's one-step path runs on memory: the lease is taken by `acquireLease` and the token read
 * by `get`, each atomic, one after the other within one synchronous step of the memory store.
 */
import { TokenStore } from "@digime-effect/core"
import { Effect, Layer, Option } from "effect"

export interface LeaseAndGetCounts {
  leaseAndGet: number
  get: number
  acquireLease: number
}

export const zeroCounts = (): LeaseAndGetCounts => ({ leaseAndGet: 0, get: 0, acquireLease: 0 })

export const withLeaseAndGet = (
  store: TokenStore.Service,
  counts: LeaseAndGetCounts = zeroCounts()
): TokenStore.Service => ({
  ...store,
  get: (key) => Effect.suspend(() => (counts.get++, store.get(key))),
  acquireLease: (key, lease) => Effect.suspend(() => (counts.acquireLease++, store.acquireLease(key, lease))),
  acquireLeaseAndGet: (key, lease) =>
    Effect.suspend(() => {
      counts.leaseAndGet++
      return Effect.flatMap(store.get(key), (found) => {
        const marked = Option.isSome(found) && found.value.reconnect?.version === found.value.version
        if (marked || Option.isNone(found) || found.value.version !== lease.version) {
          return Effect.succeed({ acquired: false, current: found })
        }
        return Effect.flatMap(
          store.acquireLease(key, lease),
          (acquired) => Effect.map(store.get(key), (current) => ({ acquired, current }))
        )
      })
    })
})

export const layerMemoryWithLeaseAndGet = (
  counts: LeaseAndGetCounts = zeroCounts()
): Layer.Layer<TokenStore.TokenStore> =>
  Layer.effect(TokenStore.TokenStore, Effect.map(TokenStore.makeMemory, (store) => withLeaseAndGet(store, counts)))
