/**
 * `DigimeClient.readFileBytes` and `Files.readAll` over real HTTP with the Node stack (undici, the
 * `node:crypto` cipher): a file that announces a length of at most 4 MiB is read in one go and
 * decrypted with `FileCipher.decryptBytes`, a longer one streams through `decrypt`; both give the
 * same content and the same typed errors. A counting cipher tells which way each file went.
 */
import { Digime, DigimeClient, DigimeError, Files, TokenKey, TokenStore } from "@digime-effect/core"
import * as FileCipher from "@digime-effect/core/FileCipher"
import { type DigimeSimulator, TestContract } from "@digime-effect/core/testing"
import { NodeDigime, NodeFileCipher } from "@digime-effect/node"
import { NodeDigimeSimulator } from "@digime-effect/node/testing"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Either, Layer, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as Http from "node:http"
import { brotliCompressSync, gzipSync } from "node:zlib"

const applicationId = "app-bytes"
const contractId = "contract-bytes"
const contract = await Effect.runPromise(TestContract.make(contractId))
const MiB = 1024 * 1024

/** How many files went each way. */
const counts = { decrypt: 0, decryptBytes: 0 }

const countingCipher = Layer.effect(
  FileCipher.FileCipher,
  Effect.map(NodeFileCipher.make, (cipher): FileCipher.Service => ({
    ...cipher,
    decrypt: (options) => {
      counts.decrypt++
      return cipher.decrypt(options)
    },
    decryptBytes: (options) => {
      counts.decryptBytes++
      return cipher.decryptBytes(options)
    }
  }))
)

const setup = Effect.gen(function*() {
  const server = yield* NodeDigimeSimulator.make({
    applicationId,
    contracts: [{ contractId, publicKeyPem: contract.publicKeyPem }],
    syncPolls: 0
  })
  const context = yield* Layer.build(
    Digime.layer({
      applicationId,
      contracts: [contract.contract],
      baseUrl: server.baseUrl,
      onboardUrl: server.onboardUrl
    }).pipe(
      // The counting cipher replaces the platform's own.
      Layer.provide(Layer.merge(NodeDigime.layerPlatform, countingCipher)),
      Layer.provideMerge(TokenStore.layerMemory),
      Layer.orDie
    )
  )
  const client = yield* Effect.provide(DigimeClient.DigimeClient, context)
  const token = yield* Effect.orDie(server.simulator.grant({ contractId }))
  const credentials = { contractId, accessToken: token.accessToken.value }
  const session = yield* Effect.orDie(client.readSession(credentials))
  const read = (fileName: string, maxBytes?: number) =>
    client.readFileBytes({ ...credentials, sessionKey: session.key, fileName, maxBytes })
  const addFiles = (files: ReadonlyArray<DigimeSimulator.FileInput>) =>
    Effect.orDie(Effect.zipRight(
      server.simulator.addFiles(token.digimeUserId!, files),
      // digi.me serves the files its list has shown.
      client.readFileList({ ...credentials, sessionKey: session.key })
    ))
  counts.decrypt = 0
  counts.decryptBytes = 0
  return { server, client, context, token, credentials, session, read, addFiles }
})

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

describe("DigimeClient.readFileBytes over HTTP (undici)", () => {
  it.scoped("a small file, plain, gzip or brotli, is read in one go and decrypted without a stream", () =>
    Effect.gen(function*() {
      const { addFiles, read } = yield* setup
      const content = JSON.stringify({ id: 1, padding: "p".repeat(5000) })
      yield* addFiles([
        { name: "plain.json", content },
        { name: "gzip.json", content, compression: "gzip" },
        { name: "brotli.json", compressed: brotliCompressSync(content), compression: "brotli" },
        { name: "empty.json", content: "" }
      ])
      for (const name of ["plain.json", "gzip.json", "brotli.json"]) {
        const file = yield* read(name)
        assert.strictEqual(text(file.data), content, name)
        assert.strictEqual(file.fileName, name)
      }
      assert.strictEqual((yield* read("empty.json")).data.length, 0)
      assert.deepStrictEqual(counts, { decrypt: 0, decryptBytes: 4 })
    }))

  it.scoped("a file over 4 MiB streams through decrypt, with the same content", () =>
    Effect.gen(function*() {
      const { addFiles, read } = yield* setup
      const content = randomBytes(5 * MiB)
      yield* addFiles([{ name: "large.bin", content }])
      const file = yield* read("large.bin")
      assert.isTrue(Buffer.from(file.data).equals(content))
      assert.deepStrictEqual(counts, { decrypt: 1, decryptBytes: 0 })
    }))

  it.scoped("content over maxBytes: ResponseError naming the file, read in one go or streamed, compressed or not", () =>
    Effect.gen(function*() {
      const { addFiles, read } = yield* setup
      yield* addFiles([
        { name: "small.bin", content: randomBytes(100_000) },
        // 64 MiB of zeros: a few kilobytes on the wire.
        { name: "bomb.json", compressed: gzipSync(Buffer.alloc(64 * MiB)), compression: "gzip" },
        { name: "large.bin", content: randomBytes(5 * MiB) }
      ])
      for (const [name, limit] of [["small.bin", 50_000], ["bomb.json", MiB], ["large.bin", MiB]] as const) {
        const error = yield* Effect.flip(read(name, limit))
        assert.instanceOf(error, DigimeError.ResponseError, name)
        assert.include(error.message, name)
        assert.include(error.message, `longer than ${limit} bytes`)
      }
      // Without compression, a body whose content cannot fit the limit streams and stops at it.
      assert.deepStrictEqual(counts, { decrypt: 2, decryptBytes: 1 })
      // Exactly the limit is allowed, read in one go.
      assert.strictEqual((yield* read("small.bin", 100_000)).data.length, 100_000)
      assert.deepStrictEqual(counts, { decrypt: 2, decryptBytes: 2 })
    }))

  it.scoped("a corrupted, a wrongly keyed, a cut download: the typed error of each, in one go", () =>
    Effect.gen(function*() {
      const { addFiles, read, server } = yield* setup
      yield* addFiles([{ name: "a.json", content: JSON.stringify({ a: "x".repeat(3000) }) }])
      yield* server.simulator.injectFault({ _tag: "WrongKeyEnvelope", fileName: "a.json" })
      const wrongKey = yield* Effect.flip(read("a.json"))
      assert.strictEqual(wrongKey._tag, "FileDecryptionError")
      if (wrongKey._tag === "FileDecryptionError") assert.strictEqual(wrongKey.reason, "KeyUnwrap")

      yield* server.simulator.injectFault({ _tag: "DropBody", fileName: "a.json", after: 500 })
      const cut = yield* Effect.flip(read("a.json"))
      assert.strictEqual(cut._tag, "RequestError")
      if (cut._tag === "RequestError") assert.strictEqual(cut.reason, "Transport")

      yield* server.simulator.injectFault({ _tag: "CorruptEnvelope", fileName: "a.json" })
      const corrupted = yield* Effect.either(read("a.json"))
      // One flipped byte in the block before the last: the padding breaks, or the content is wrong.
      if (Either.isLeft(corrupted)) {
        assert.strictEqual(corrupted.left._tag, "FileDecryptionError")
      } else {
        assert.notStrictEqual(text(corrupted.right.data), JSON.stringify({ a: "x".repeat(3000) }))
      }
      assert.strictEqual(text((yield* read("a.json")).data), JSON.stringify({ a: "x".repeat(3000) }))
      assert.strictEqual(counts.decrypt, 0)
    }))
})

// A proxy in front of the simulator that passes every answer on, except that a file's body stops
// after its first 100 bytes and never ends.
const stallingProxy = (target: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly origin: string; readonly server: Http.Server }>((resume) => {
      const server = Http.createServer((request, response) => {
        const upstream = Http.request(new URL(request.url!, target), {
          method: request.method,
          headers: { ...request.headers, host: new URL(target).host }
        }, (answer) => {
          const stall = /\/permission-access\/query\/[^/]+\/[^/]+$/.test(request.url!) && answer.statusCode === 200
          response.writeHead(answer.statusCode!, answer.headers)
          if (!stall) return void answer.pipe(response)
          answer.once("data", (chunk: Buffer) => response.write(chunk.subarray(0, 100)))
        })
        request.pipe(upstream)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as { readonly port: number }
        resume(Effect.succeed({ origin: `http://127.0.0.1:${address.port}`, server }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

describe("DigimeClient.readFileBytes over HTTP (undici), a body that stops", () => {
  // Real time: the client's deadline is kept by undici's timers (500 ms here).
  it.live("a body that stops arriving: RequestError (Timeout) after the request timeout, in one go", () =>
    Effect.gen(function*() {
      const server = yield* NodeDigimeSimulator.make({
        applicationId,
        contracts: [{ contractId, publicKeyPem: contract.publicKeyPem }],
        syncPolls: 0
      })
      const proxy = yield* stallingProxy(server.origin)
      const context = yield* Layer.build(
        NodeDigime.layer({
          applicationId,
          contracts: [contract.contract],
          baseUrl: `${proxy.origin}/v1.7/`,
          onboardUrl: server.onboardUrl,
          requestTimeout: "500 millis"
        }).pipe(Layer.provideMerge(TokenStore.layerMemory), Layer.orDie)
      )
      const client = yield* Effect.provide(DigimeClient.DigimeClient, context)
      const token = yield* Effect.orDie(server.simulator.grant({ contractId }))
      const credentials = { contractId, accessToken: token.accessToken.value }
      const session = yield* Effect.orDie(client.readSession(credentials))
      yield* Effect.orDie(
        server.simulator.addFiles(token.digimeUserId!, [{ name: "a.json", content: "z".repeat(3000) }])
      )
      yield* Effect.orDie(client.readFileList({ ...credentials, sessionKey: session.key }))
      const error = yield* Effect.flip(
        client.readFileBytes({ ...credentials, sessionKey: session.key, fileName: "a.json" })
      )
      assert.strictEqual(error._tag, "RequestError")
      if (error._tag === "RequestError") {
        assert.strictEqual(error.reason, "Timeout")
        assert.strictEqual(error.operation, "readFile")
      }
    }).pipe(Effect.scoped))
})

describe("Files.readAll over HTTP (undici)", () => {
  it.scoped("every small file is read in one go", () =>
    Effect.gen(function*() {
      const { addFiles, context, server, token } = yield* setup
      const contents = Array.from({ length: 20 }, (_, i) => JSON.stringify({ i, pad: "y".repeat(i * 100) }))
      yield* addFiles(contents.map((content, i) => ({ name: `f-${i}.json`, content })))
      const key = TokenKey.make("user", contractId)
      yield* Effect.provide(
        Effect.flatMap(TokenStore.TokenStore, (store) => Effect.orDie(store.set(key, token))),
        context
      )
      const events = yield* Stream.runCollect(Files.readAll(key, { pollInterval: "10 millis" })).pipe(
        Effect.provide(context)
      )
      const files = Chunk.toReadonlyArray(events).filter((event): event is Files.FileRead => event._tag === "File")
      assert.deepStrictEqual(
        files.map((file) => text(file.data)).sort(),
        [...contents].sort()
      )
      assert.deepStrictEqual(counts, { decrypt: 0, decryptBytes: 20 })
      assert.isAtLeast((yield* server.simulator.stats).requests.file, 20)
    }))
})
