import { TokenStore } from "@digime-effect/core"
import { dueSuite, suite } from "./TokenStoreSuite.js"

suite("memory", TokenStore.layerMemory)
dueSuite("memory", TokenStore.layerMemory)
