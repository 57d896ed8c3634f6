import { TokenStore } from "@digime-effect/core"
import { layerMemoryWithLeaseAndGet } from "./leaseAndGet.js"
import { dueSuite, markOnceSuite, suite } from "./TokenStoreSuite.js"

suite("memory", TokenStore.layerMemory)
dueSuite("memory", TokenStore.layerMemory)
markOnceSuite("memory", TokenStore.layerMemory)
// The memory store with acquireLeaseAndGet (built from its get and acquireLease): the contract of
// the optional method, as the token manager's tests of its one-step path rely on it.
suite("memory with acquireLeaseAndGet", layerMemoryWithLeaseAndGet())
