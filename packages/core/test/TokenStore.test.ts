import { TokenStore } from "@digime-effect/core"
import { suite } from "./TokenStoreSuite.js"

suite("memory", TokenStore.layerMemory)
