/**
 * The child process of section 3's "first call": builds the library's layer (the in-memory store
 * holding the token it is handed), then times its first `withAutoRefresh(key, readAccounts)` and
 * the median of the next ones; then the same request by hand (`node:crypto` and undici), first and
 * later. Prints one JSON line. Module loading is over before anything is timed; the layer is
 * built before the first call, as an application builds it at start.
 */
import { AutoRefresh, DigimeClient, TokenKey, TokenStore, UserAccessToken } from "@digime-effect/core"
import { DateTime, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { NodeDigime } from "../src/index.js"
import { makeHandWritten } from "./handWritten.js"

const env = (name: string) => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`firstCall: ${name} is not set`)
  return value
}
const median = (samples: ReadonlyArray<number>) => {
  const sorted = [...samples].sort((a, b) => a - b)
  const middle = (sorted.length - 1) / 2
  return (sorted[Math.floor(middle)]! + sorted[Math.ceil(middle)]!) / 2
}
const clientId = env("BENCH_CLIENT_ID")
const [applicationId, contractId] = [
  clientId.slice(0, clientId.indexOf("_")),
  clientId.slice(clientId.indexOf("_") + 1)
]
const baseUrl = env("BENCH_BASE_URL")
const privateKey = env("BENCH_PRIVATE_KEY")
const seeded = JSON.parse(env("BENCH_TOKEN")) as {
  readonly accessToken: string
  readonly accessExpiresAt: number
  readonly refreshToken: string
  readonly refreshExpiresAt: number
}
const later = 30
const key = TokenKey.make("first-call", contractId)
const token = new UserAccessToken.UserAccessToken({
  accessToken: new UserAccessToken.Token({
    value: Redacted.make(seeded.accessToken),
    expiresAt: DateTime.unsafeMake(seeded.accessExpiresAt)
  }),
  refreshToken: new UserAccessToken.Token({
    value: Redacted.make(seeded.refreshToken),
    expiresAt: DateTime.unsafeMake(seeded.refreshExpiresAt)
  })
})

const t0 = performance.now()
const runtime = ManagedRuntime.make(
  NodeDigime.layer({
    applicationId,
    contracts: [{ contractId, privateKey: Redacted.make(privateKey) }],
    baseUrl,
    onboardUrl: env("BENCH_ONBOARD_URL")
  }).pipe(Layer.provideMerge(TokenStore.layerMemory), Layer.orDie)
)
await runtime.runPromise(Effect.flatMap(TokenStore.TokenStore, (tokens) => Effect.orDie(tokens.set(key, token))))
const layerMillis = performance.now() - t0

const handWritten = makeHandWritten({ baseUrl, clientId, privateKeyPem: privateKey })
const byHand = async () => {
  const first = (await handWritten.dataCall(seeded.accessToken)).steps.total
  const samples: Array<number> = []
  for (let i = 0; i < later; i++) samples.push((await handWritten.dataCall(seeded.accessToken)).steps.total)
  return { handFirstMillis: first, handLaterMillis: median(samples) }
}
const handFirst = process.env.BENCH_HAND_FIRST === "1"
const hand = handFirst ? await byHand() : undefined

const call = Effect.flatMap(
  DigimeClient.DigimeClient,
  (client) => AutoRefresh.withAutoRefresh(key, client.readAccounts)
)
const timedCall = async () => {
  const start = performance.now()
  await runtime.runPromise(call)
  return performance.now() - start
}
const firstMillis = await timedCall()
const laterSamples: Array<number> = []
for (let i = 0; i < later; i++) laterSamples.push(await timedCall())

const { handFirstMillis, handLaterMillis } = hand ?? await byHand()
await handWritten.agent.close()
await runtime.dispose()

process.stdout.write(`${
  JSON.stringify({
    layerMillis,
    firstMillis,
    laterMillis: median(laterSamples),
    handFirstMillis,
    handLaterMillis
  })
}\n`)
