import { TokenStore } from "@digime-effect/core"
import { dueSuite, markOnceSuite, suite } from "./TokenStoreSuite.js"

suite("memory", TokenStore.layerMemory)
dueSuite("memory", TokenStore.layerMemory)
markOnceSuite("memory", TokenStore.layerMemory)
