/**
 * The whole token lifecycle against the embedded digi.me simulator, with short lifetimes:
 * authorize → consent → exchange → read → access token expires → auto refresh → a burst of
 * concurrent reads on a stale token → one refresh → refresh token expires → RefreshTokenExpired →
 * reauthorize → read again.
 *
 *   pnpm demo [--access-lifetime 3] [--refresh-lifetime 10] [--concurrency 200]
 */
import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  DigimeConfig,
  PendingAuthorizations,
  TokenKey,
  TokenStore
} from "@digime-effect/core"
import { DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import { NodeSigner } from "@digime-effect/node"
import { Console, DateTime, Duration, Effect, Layer, Option } from "effect"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    "access-lifetime": { type: "string", default: "3" },
    "refresh-lifetime": { type: "string", default: "10" },
    concurrency: { type: "string", default: "200" },
    help: { type: "boolean", short: "h", default: false }
  }
})

const usage = `Usage: pnpm demo [options]

Walks the whole digi.me token lifecycle against the embedded simulator and prints a timeline.

Options:
  --access-lifetime SECONDS   access token lifetime (default 3)
  --refresh-lifetime SECONDS  refresh token lifetime, counted from the authorization (default 10)
  --concurrency N             concurrent reads in the burst on a stale token (default 200)
  -h, --help                  show this help`

const positive = (name: string, value: string | undefined): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`--${name} must be a positive integer\n\n${usage}\n`)
    process.exit(2)
  }
  return n
}

if (args.help) {
  process.stdout.write(`${usage}\n`)
  process.exit(0)
}

const accessLifetime = positive("access-lifetime", args["access-lifetime"])
const refreshLifetime = positive("refresh-lifetime", args["refresh-lifetime"])
const concurrency = positive("concurrency", args.concurrency)
if (refreshLifetime <= accessLifetime) {
  process.stderr.write("--refresh-lifetime must be longer than --access-lifetime\n")
  process.exit(2)
}

const applicationId = "demo-app"
const contractId = "demo-contract"
const callbackUrl = "https://app.example/digime/callback"
const key = TokenKey.make("alice", contractId)

const started = Date.now()
const log = (what: string) => Console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${what}`)

const program = Effect.gen(function*() {
  const client = yield* DigimeClient.DigimeClient
  const simulator = yield* DigimeSimulator.DigimeSimulator
  const store = yield* TokenStore.TokenStore
  const read = AutoRefresh.withAutoRefresh(key, client.readAccounts)

  const counts = Effect.map(simulator.stats, (s) =>
    `requests ${Object.entries(s.requests).map(([name, n]) => `${name}=${n}`).join(" ")}; ` +
    `refreshes=${s.refreshes} replays=${s.replays}`)

  const waitUntil = (label: string, at: DateTime.Utc) =>
    Effect.gen(function*() {
      for (;;) {
        const left = DateTime.distance(yield* DateTime.now, at)
        if (left <= 0) break
        yield* log(`  waiting for ${label}: ${(left / 1000).toFixed(1)} s left`)
        yield* Effect.sleep(Duration.millis(Math.min(left + 50, 1000)))
      }
    })

  const token = Effect.map(store.get(key), Option.getOrThrow)

  yield* log(`simulated digi.me (in memory, no network) at ${simulator.baseUrl} (access ${accessLifetime} s, refresh ${refreshLifetime} s)`)

  // 1. Authorization
  const start = yield* Authorization.startAuthorization({ key, callbackUrl })
  yield* log(`1. startAuthorization: send the user to ${start.url.split("?")[0]}?code=…`)
  const callback = yield* simulator.consent(start.url)
  yield* log("2. the user clicks Allow; digi.me redirects to the callback with a code")
  yield* Authorization.completeAuthorization(callback)
  const first = yield* token
  yield* log(
    `3. completeAuthorization: code exchanged and stored (version ${first.version}); ` +
      `access token expires at ${DateTime.formatIso(first.token.accessToken.expiresAt)}`
  )

  // 2. Reads with a valid token
  const accounts = yield* read
  yield* log(`4. read accounts: ${accounts.length} account(s), no refresh — ${yield* counts}`)

  // 3. Access token expires: auto refresh
  yield* waitUntil("the access token to expire", first.token.accessToken.expiresAt)
  yield* read
  const second = yield* token
  yield* log(`5. read after expiry: refreshed first, stored as version ${second.version}, then read — ${yield* counts}`)

  // 4. Burst on a stale token
  yield* waitUntil("the access token to expire again", second.token.accessToken.expiresAt)
  const before = (yield* simulator.stats).refreshes
  const burst = yield* Effect.all(Array.from({ length: concurrency }, () => read), { concurrency: "unbounded" })
  const after = (yield* simulator.stats).refreshes
  yield* log(`6. ${burst.length} concurrent reads on a stale token: ${after - before} refresh — ${yield* counts}`)

  // 5. Refresh token expires
  const third = yield* token
  yield* waitUntil("the refresh token to expire", third.token.refreshToken.expiresAt)
  const outcome = yield* Effect.either(read)
  if (outcome._tag === "Right") return yield* Effect.dieMessage("expected RefreshTokenExpired")
  const error = outcome.left
  yield* log(`7. read after the refresh token expired: ${error._tag} (${error.message})`)
  if (error._tag !== "RefreshTokenExpired" && error._tag !== "ReauthRequired" && error._tag !== "InvalidAccessToken") {
    return yield* Effect.dieMessage(`unexpected ${error._tag}`)
  }

  // 6. Reauthorize
  const step = yield* AutoRefresh.nextStep(error, { callbackUrl })
  yield* log(`8. nextStep: ${step.kind} — send the user to ${step.url.split("?")[0]}?code=…`)
  yield* Authorization.completeAuthorization(yield* simulator.consent(step.url))
  const again = yield* read
  yield* log(
    `9. reauthorized, stored (version ${(yield* token).version}), read ${again.length} account(s) — ${yield* counts}`
  )
  yield* log("done: every token decision above was made by withAutoRefresh")
})

const main = Effect.gen(function*() {
  const contract = yield* TestContract.make(contractId)
  const simulatorOptions: DigimeSimulator.Options = {
    applicationId,
    contracts: [{ contractId, publicKeyPem: contract.publicKeyPem }],
    accessTokenLifetime: Duration.seconds(accessLifetime),
    refreshTokenLifetime: Duration.seconds(refreshLifetime),
    refreshTokenExpiry: "fixed",
    strictRotation: true
  }
  const layer = DigimeClient.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      DigimeConfig.layer({ applicationId, contracts: [contract.contract], refreshLeadTime: Duration.millis(500) }),
      NodeSigner.layer,
      TokenStore.layerMemory
    )),
    Layer.merge(PendingAuthorizations.layerMemory),
    Layer.provideMerge(DigimeSimulator.layer(simulatorOptions))
  )
  yield* Effect.provide(program, layer)
})

Effect.runPromiseExit(main).then((exit) => {
  if (exit._tag === "Failure") {
    process.stderr.write(`demo failed: ${String(exit.cause)}\n`)
    process.exit(1)
  }
})
