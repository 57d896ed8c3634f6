/**
 * A key set URL on the allow-list that redirects to a foreign key set, over real HTTP on loopback:
 * Fetch follows redirects by default, so under `FetchHttpClient` the foreign keys used to be
 * trusted. Both platform clients, and the Node adapter's own, must refuse it without a request to the foreign origin.
 */
import { DigimeConfig, KeySet } from "@digime-effect/core"
import { TestContract } from "@digime-effect/core/testing"
import { NodeDigime } from "@digime-effect/node"
import { FetchHttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Encoding, Layer } from "effect"
import { generateKeyPairSync, sign } from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

const contract = await Effect.runPromise(TestContract.make("contract-1"))
const signing = generateKeyPairSync("rsa", { modulusLength: 2048 })
const jwk = signing.publicKey.export({ format: "jwk" })

/** A loopback server answering with `answer`, counting its requests. */
const serve = (answer: (request: Http.IncomingMessage, response: Http.ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.async<{ readonly origin: string; readonly requests: () => number; readonly server: Http.Server }>(
      (resume) => {
        let requests = 0
        const server = Http.createServer((request, response) => {
          requests++
          answer(request, response)
        })
        server.listen(0, "127.0.0.1", () =>
          resume(Effect.succeed({
            origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
            requests: () => requests,
            server
          })))
      }
    ),
    ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

const tokenFor = (jku: string) => {
  const input = [
    Encoding.encodeBase64Url(JSON.stringify({ alg: "PS512", typ: "JWT", jku, kid: "foreign" })),
    Encoding.encodeBase64Url(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 3600 }))
  ].join(".")
  const signature = sign("sha512", Buffer.from(input), {
    key: signing.privateKey,
    padding: 6, // RSA_PKCS1_PSS_PADDING
    saltLength: 64
  })
  return `${input}.${Encoding.encodeBase64Url(signature)}`
}

const clients = [
  ["FetchHttpClient", FetchHttpClient.layer],
  ["NodeHttpClient (undici)", NodeHttpClient.layerUndici],
  ["NodeDigime.layerPlatform (the adapter's own undici client)", NodeDigime.layerPlatform]
] as const

describe("KeySet: a redirect to a foreign key set", () => {
  for (const [name, client] of clients) {
    it.scoped(`under ${name}: refused, and the foreign origin gets no request`, () =>
      Effect.gen(function*() {
        const foreign = yield* serve((_request, response) => {
          response.writeHead(200, { "content-type": "application/json" })
          response.end(JSON.stringify({ keys: [{ ...jwk, kid: "foreign" }] }))
        })
        const allowed = yield* serve((_request, response) => {
          response.writeHead(302, { location: `${foreign.origin}/jwks` })
          response.end()
        })
        const error = yield* Effect.flip(
          Effect.flatMap(KeySet.KeySet, (keySet) => keySet.verify("test", tokenFor(`${allowed.origin}/jwks`))).pipe(
            Effect.provide(KeySet.layer.pipe(
              Layer.provide(client),
              Layer.provide(DigimeConfig.layer({
                applicationId: "app",
                contracts: [contract.contract],
                baseUrl: `${allowed.origin}/v1.7/`
              })),
              Layer.orDie
            ))
          )
        )
        assert.strictEqual(error.reason, "KeySetUnavailable")
        assert.isAtLeast(allowed.requests(), 1)
        assert.strictEqual(foreign.requests(), 0)
      }), 30_000)
  }
})
