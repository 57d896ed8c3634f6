/**
 * `NodeFileCipher`: the contract every `FileCipher` implementation keeps (core's
 * test/FileCipherSuite.ts: the fixed vectors, brotli's among them, any chunking, random, truncated and
 * corrupted bodies, keys, compressions), then what is tested here only: agreement with
 * `FileCipher.layerWebCrypto` on envelopes sealed with `node:crypto`, and decryption of large files
 * with bounded memory, for both implementations.
 *
 * One seed for the whole file, from `FC_SEED` (see FileCipherSuite.ts), shown in the describe names
 * so that a failure can be replayed with `FC_SEED=<seed> pnpm exec vitest run --project node test/NodeFileCipher`.
 */
import type { Contract, DigimeError } from "@digime-effect/core"
import * as FileCipher from "@digime-effect/core/FileCipher"
import { assert, describe, it } from "@effect/vitest"
import type { Exit, Layer } from "effect"
import { Effect, Stream } from "effect"
import * as fc from "fast-check"
import * as Crypto from "node:crypto"
import type { Readable } from "node:stream"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Zlib from "node:zlib"
import { NodeFileCipher } from "../src/index.js"

// The contract suite and its helpers live in the core package's tests, outside this TypeScript
// project (whose `include` is this package's own folders): loaded by path, with what is used of
// them restated.
type Outcome =
  | { readonly _tag: "Bytes"; readonly bytes: Uint8Array }
  | { readonly _tag: "Failure"; readonly error: DigimeError.FileDecryptionError }
interface SuiteModule {
  readonly suite: (name: string, options: {
    readonly cipher: FileCipher.Service
    readonly layer: Layer.Layer<FileCipher.FileCipher>
    readonly brotli?: ((content: Uint8Array) => Uint8Array | Promise<Uint8Array>) | undefined
    readonly malformedRsaKey: DigimeError.InvalidContractKey["reason"]
  }) => void
  readonly fixture: { readonly publicKeySpkiPem: string }
  readonly contract: Contract.Contract
  readonly seed: number
  readonly check: <Ts>(property: fc.IAsyncPropertyWithHooks<Ts>, numRuns: number) => Effect.Effect<void>
  readonly piecesOf: (body: Uint8Array, sizes?: ReadonlyArray<number>, perChunk?: number) => Stream.Stream<Uint8Array>
  readonly decryptWith: (service: FileCipher.Service) => (
    body: Stream.Stream<Uint8Array> | Uint8Array,
    options?: Partial<FileCipher.DecryptOptions>
  ) => Effect.Effect<Exit.Exit<Uint8Array, unknown>>
  readonly outcomeOf: (exit: Exit.Exit<Uint8Array, unknown>, fileName?: string) => Outcome
  readonly reasonOf: (outcome: Outcome) => string
  readonly bytesOf: (exit: Exit.Exit<Uint8Array, unknown>) => Uint8Array
}
const suitePath = "../../core/test/FileCipherSuite.js"
const { bytesOf, check, contract, decryptWith, fixture, outcomeOf, piecesOf, reasonOf, seed, suite }: SuiteModule =
  await import(suitePath)

// One service of each kind for the file: the keys are prepared once.
const node = Effect.runSync(NodeFileCipher.make)
const web = Effect.runSync(FileCipher.makeWebCrypto)

type Compression = "none" | "gzip" | "brotli"

const compress = (compression: Compression, content: Uint8Array): Buffer =>
  compression === "gzip"
    ? Zlib.gzipSync(content)
    : compression === "brotli"
    ? Zlib.brotliCompressSync(content)
    : Buffer.from(content)

suite("NodeFileCipher.make", {
  cipher: node,
  layer: NodeFileCipher.layer,
  brotli: (content) => compress("brotli", content),
  malformedRsaKey: "Unreadable"
})

// ---------------------------------------------------------------------------------------------
// sealing with node:crypto
// ---------------------------------------------------------------------------------------------

const testPublicKey = Crypto.createPublicKey(fixture.publicKeySpkiPem)

/** The wrapped data key and the IV of a new file: the header of its envelope. */
const newFile = () => {
  const dataKey = Crypto.randomBytes(32)
  const iv = Crypto.randomBytes(16)
  const keySlot = Crypto.publicEncrypt(
    { key: testPublicKey, padding: Crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" },
    dataKey
  )
  return { header: Buffer.concat([keySlot, iv]), cipher: () => Crypto.createCipheriv("aes-256-cbc", dataKey, iv) }
}

/** An envelope as digi.me makes one: content compressed, then encrypted to the test key. */
const seal = (content: Uint8Array, compression: Compression = "none"): Buffer => {
  const file = newFile()
  const cipher = file.cipher()
  return Buffer.concat([file.header, cipher.update(compress(compression, content)), cipher.final()])
}

const run = <A>(effect: Effect.Effect<A>): Promise<A> => Effect.runPromise(effect)

// ---------------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------------

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

/**
 * The heap and the memory outside it, after full collections (twice: buffers freed by the first
 * are still counted until it has swept them). `external` rather than `arrayBuffers` (which it
 * includes): the buffers Web Crypto returns are allocated by OpenSSL, and only `external` counts them.
 */
const retained = () => {
  gc()
  gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.external
}

const MiB = 1024 * 1024

/**
 * `size` bytes of content made on the fly, in 64 KiB pieces (text that compresses like JSON does,
 * or bytes that do not compress), with the SHA-256 of what was made, for when it has all been read.
 */
const generate = (size: number, kind: "text" | "random" | "zeros") => {
  const hash = Crypto.createHash("sha256")
  const piece = 64 * 1024
  async function* pieces() {
    let counter = 0
    for (let made = 0; made < size; made += piece) {
      const length = Math.min(piece, size - made)
      let bytes: Buffer
      if (kind === "random") {
        bytes = Crypto.randomBytes(length)
      } else if (kind === "zeros") {
        bytes = Buffer.alloc(length)
      } else {
        const lines: Array<string> = []
        let total = 0
        while (total < length) {
          const line = `{"id":${counter++},"service":"instagram","value":${(counter * 7919) % 100_003}}\n`
          lines.push(line)
          total += line.length
        }
        bytes = Buffer.from(lines.join("")).subarray(0, length)
      }
      hash.update(bytes)
      yield bytes
    }
  }
  return { pieces, digest: () => hash.digest("hex") }
}

/** An envelope of `size` bytes of content, sealed as it is read: its body as a stream, its content's hash. */
const largeFile = (size: number, kind: "text" | "random" | "zeros", compression: Compression) => {
  const content = generate(size, kind)
  const file = newFile()
  const encrypted = (): Readable => {
    const cipher = file.cipher()
    const compressor = compression === "gzip"
      ? Zlib.createGzip({ level: 1 })
      : compression === "brotli"
      ? Zlib.createBrotliCompress({ params: { [Zlib.constants.BROTLI_PARAM_QUALITY]: 1 } })
      : undefined
    if (compressor === undefined) {
      pump(content.pieces(), cipher)
    } else {
      pump(content.pieces(), compressor)
      compressor.pipe(cipher)
    }
    return cipher
  }
  const body = Stream.concat(
    Stream.make(file.header),
    Stream.suspend(() => Stream.fromAsyncIterable(encrypted(), (error) => new Error(String(error))))
  )
  return { body, digest: content.digest }
}

/** Writes the pieces into `writable`, waiting for it to drain, then ends it. */
const pump = (pieces: AsyncGenerator<Buffer>, writable: NodeJS.WritableStream) => {
  void (async () => {
    for await (const piece of pieces) {
      if (!writable.write(piece)) await new Promise((resolve) => writable.once("drain", resolve))
    }
    writable.end()
  })()
}

/**
 * Decrypts the body chunk by chunk into a running SHA-256, sampling the retained memory every
 * 4 MiB of output: returns the hash, the bytes out and the largest growth over the start.
 */
const decryptMeasured = (
  service: FileCipher.Service,
  body: Stream.Stream<Uint8Array, Error>,
  compression: Compression
) =>
  Effect.gen(function*() {
    const hash = Crypto.createHash("sha256")
    const baseline = retained()
    let growth = 0
    let out = 0
    let nextSample = 4 * MiB
    yield* service.decrypt({ contract, fileName: "large.json", compression })(body).pipe(
      Stream.runForEach((bytes) =>
        Effect.sync(() => {
          hash.update(bytes)
          out += bytes.length
          if (out >= nextSample) {
            nextSample += 4 * MiB
            growth = Math.max(growth, retained() - baseline)
          }
        })
      )
    )
    return { digest: hash.digest("hex"), out, growth }
  })

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

describe(`NodeFileCipher (seed ${seed})`, () => {
  it.effect("NodeFileCipher and FileCipher.layerWebCrypto agree on random envelopes, intact or damaged", () =>
    check(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 3000 }),
        fc.constantFrom<Compression>("none", "gzip"),
        fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 8 }),
        fc.oneof(
          fc.constant({ _tag: "Intact" as const }),
          fc.record({ _tag: fc.constant("Flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
          fc.record({ _tag: fc.constant("Cut" as const), at: fc.nat() })
        ),
        async (content, compression, sizes, damage) => {
          let envelope = seal(content, compression)
          if (damage._tag === "Flip") envelope[damage.at % envelope.length]! ^= damage.mask
          if (damage._tag === "Cut") envelope = envelope.subarray(0, damage.at % envelope.length)
          const [byNode, byWeb] = await Promise.all([
            run(decryptWith(node)(piecesOf(envelope, sizes), { compression })),
            run(decryptWith(web)(piecesOf(envelope, sizes), { compression }))
          ])
          const [a, b] = [outcomeOf(byNode), outcomeOf(byWeb)]
          assert.strictEqual(reasonOf(a), reasonOf(b))
          if (a._tag === "Bytes" && b._tag === "Bytes") assert.deepStrictEqual(a.bytes, b.bytes)
          if (damage._tag === "Intact") assert.deepStrictEqual(bytesOf(byNode), content)
        }
      ),
      150
    ))

  describe("a 64 MiB file streams with bounded memory", () => {
    const size = 64 * MiB
    const cases = [
      ["NodeFileCipher", "none", "random"],
      ["NodeFileCipher", "gzip", "text"],
      ["FileCipher.layerWebCrypto", "none", "random"],
      ["FileCipher.layerWebCrypto", "gzip", "text"]
    ] as const
    for (const [name, compression, kind] of cases) {
      it.live(
        `${name}, ${compression}: the same content, retained memory growth under 16 MiB`,
        () =>
          Effect.gen(function*() {
            const file = largeFile(size, kind, compression)
            const result = yield* decryptMeasured(name === "NodeFileCipher" ? node : web, file.body, compression)
            assert.strictEqual(result.out, size)
            assert.strictEqual(result.digest, file.digest())
            assert.isBelow(result.growth, 16 * MiB, `grew by ${(result.growth / MiB).toFixed(1)} MiB`)
          }),
        120_000
      )
    }

    it.live("a brotli file of 32 MiB (NodeFileCipher)", () =>
      Effect.gen(function*() {
        const file = largeFile(32 * MiB, "text", "brotli")
        const result = yield* decryptMeasured(node, file.body, "brotli")
        assert.strictEqual(result.digest, file.digest())
        assert.isBelow(result.growth, 16 * MiB, `grew by ${(result.growth / MiB).toFixed(1)} MiB`)
      }), 120_000)

    it.live(
      "a gzip bomb (128 MiB of zeros in about 128 KiB) is inflated as it is read, both implementations",
      () =>
        Effect.gen(function*() {
          for (const service of [node, web]) {
            const file = largeFile(128 * MiB, "zeros", "gzip")
            const result = yield* decryptMeasured(service, file.body, "gzip")
            assert.strictEqual(result.out, 128 * MiB)
            assert.strictEqual(result.digest, file.digest())
            assert.isBelow(result.growth, 16 * MiB, `grew by ${(result.growth / MiB).toFixed(1)} MiB`)
          }
        }),
      120_000
    )
  })
})
