import {
  Authorization,
  AutoRefresh,
  DigimeClient,
  PendingAuthorizations,
  TokenKey,
  TokenStore
} from "@digime-effect/core"
import { NodeDigime } from "@digime-effect/node"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Layer } from "effect"
import { createServer } from "node:http"

// DIGIME_APPLICATION_ID, DIGIME_CONTRACT_ID, DIGIME_PRIVATE_KEY (PEM), optional DIGIME_BASE_URL, ...
// Built once for the whole server: the authorization started by /connect must be found by /callback.
const DigimeLive = NodeDigime.layerConfig().pipe(
  Layer.provideMerge(TokenStore.layerMemory), // a durable, shared store replaces these in production
  Layer.merge(PendingAuthorizations.layerMemory)
)

const port = Number(process.env.PORT ?? 3000)
const callbackUrl = `http://127.0.0.1:${port}/callback`
const keyOf = (userId: string) =>
  Effect.map(Config.string("DIGIME_CONTRACT_ID"), (contractId) => TokenKey.make(userId, contractId))
const userOf = Effect.map(HttpServerRequest.ParsedSearchParams, (params) => String(params.user ?? "user-42"))

const router = HttpRouter.empty.pipe(
  // 1. "Connect digi.me": redirect the browser to digi.me's consent. The PKCE verifier and a
  //    single-use state are kept server-side, bound to the user's key, for 10 minutes.
  HttpRouter.get(
    "/connect",
    Effect.gen(function*() {
      const key = yield* keyOf(yield* userOf)
      const started = yield* Authorization.startAuthorization({ key, callbackUrl })
      return HttpServerResponse.redirect(started.url)
    })
  ),
  // 2. The callback: refuses unknown, expired and replayed states, exchanges the code and stores
  //    the token under the key.
  HttpRouter.get(
    "/callback",
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const completed = yield* Authorization.completeAuthorization(new URL(request.url, callbackUrl))
      return HttpServerResponse.redirect(`/accounts?user=${encodeURIComponent(completed.key.userId)}`)
    })
  ),
  // 3. From then on, every call: no token handling at all.
  HttpRouter.get(
    "/accounts",
    Effect.gen(function*() {
      const client = yield* DigimeClient.DigimeClient
      const accounts = yield* AutoRefresh.withAutoRefresh(yield* keyOf(yield* userOf), client.readAccounts)
      return yield* HttpServerResponse.json(accounts)
    }).pipe(
      // Only the user can help now: one call starts the right authorization (reauthorize when
      // digi.me allows it, else authorize again); the callback route finishes it.
      Effect.catchTags({
        RefreshTokenExpired: (error) => AutoRefresh.nextStep(error, { callbackUrl }),
        ReauthRequired: (error) => AutoRefresh.nextStep(error, { callbackUrl }),
        InvalidAccessToken: (error) => AutoRefresh.nextStep(error, { callbackUrl })
      }),
      Effect.map((answer) => "url" in answer ? HttpServerResponse.redirect(answer.url) : answer)
    )
  )
)

const ServerLive = router.pipe(
  HttpServer.serve(),
  HttpServer.withLogAddress,
  Layer.provide(DigimeLive),
  Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
)

NodeRuntime.runMain(Layer.launch(ServerLive))
