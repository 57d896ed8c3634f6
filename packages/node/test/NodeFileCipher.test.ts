/**
 * `NodeFileCipher` on the fixed vectors (`core/test/fixtures/file-envelope.json`, a TEST key), any
 * chunking, random, truncated and corrupted bodies (always the content or a `FileDecryptionError`
 * naming the file, never a defect), agreement with `FileCipher.layerWebCrypto` on envelopes sealed
 * here with `node:crypto`, and decryption of large files with bounded memory for both.
 *
 * One seed for the whole file, from `FC_SEED` (default below), shown in the describe name so that
 * a failure can be replayed with `FC_SEED=<seed> pnpm exec vitest run --project node test/NodeFileCipher`.
 */
import { Contract, DigimeError } from "@digime-effect/core"
import * as FileCipher from "@digime-effect/core/FileCipher"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Option, Redacted, Stream } from "effect"
import * as fc from "fast-check"
import * as Crypto from "node:crypto"
import { readFileSync } from "node:fs"
import type { Readable } from "node:stream"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Zlib from "node:zlib"
import { NodeFileCipher } from "../src/index.js"

// ---------------------------------------------------------------------------------------------
// vectors, keys, sealing
// ---------------------------------------------------------------------------------------------

interface Vector {
  readonly name: string
  readonly compression: "none" | "gzip" | "brotli"
  readonly plaintextUtf8: string
  readonly envelopeLength: number
  readonly envelopeHex: string
}

const fixture = JSON.parse(
  readFileSync(new URL("../../core/test/fixtures/file-envelope.json", import.meta.url), "utf8")
) as {
  readonly privateKeyPkcs1Pem: string
  readonly publicKeySpkiPem: string
  readonly vectors: ReadonlyArray<Vector>
}

const vector = (name: string): Vector => fixture.vectors.find((v) => v.name === name)!
const envelopeOf = (v: Vector): Buffer => Buffer.from(v.envelopeHex, "hex")
const utf8 = (text: string): Buffer => Buffer.from(text, "utf8")

const contract = Contract.make({ contractId: "file-contract", privateKey: Redacted.make(fixture.privateKeyPkcs1Pem) })
const testPublicKey = Crypto.createPublicKey(fixture.publicKeySpkiPem)

type Compression = "none" | "gzip" | "brotli"

const compress = (compression: Compression, content: Uint8Array): Buffer =>
  compression === "gzip"
    ? Zlib.gzipSync(content)
    : compression === "brotli"
    ? Zlib.brotliCompressSync(content)
    : Buffer.from(content)

/** The wrapped data key and the IV of a new file: the header of its envelope. */
const newFile = (publicKey: Crypto.KeyObject = testPublicKey) => {
  const dataKey = Crypto.randomBytes(32)
  const iv = Crypto.randomBytes(16)
  const keySlot = Crypto.publicEncrypt(
    { key: publicKey, padding: Crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" },
    dataKey
  )
  return { header: Buffer.concat([keySlot, iv]), cipher: () => Crypto.createCipheriv("aes-256-cbc", dataKey, iv) }
}

/** An envelope as digi.me makes one: content compressed, then encrypted to `publicKey`. */
const seal = (content: Uint8Array, compression: Compression = "none", publicKey?: Crypto.KeyObject): Buffer => {
  const file = newFile(publicKey)
  const cipher = file.cipher()
  return Buffer.concat([file.header, cipher.update(compress(compression, content)), cipher.final()])
}

// ---------------------------------------------------------------------------------------------
// decrypting and outcomes
// ---------------------------------------------------------------------------------------------

const defaultSeed = 424242
const seed = (() => {
  const raw = process.env.FC_SEED
  return raw === undefined || raw.trim() === "" ? defaultSeed : Number(raw)
})()

const check = <Ts>(property: fc.IAsyncPropertyWithHooks<Ts>, numRuns: number): Effect.Effect<void> =>
  Effect.promise(() => fc.assert(property, { seed, numRuns }))

// One service of each kind for the file: the keys are prepared once.
const node = Effect.runSync(NodeFileCipher.make)
const web = Effect.runSync(FileCipher.makeWebCrypto)

/** The body in pieces of the given sizes (the last piece takes the rest), `perChunk` pieces per stream chunk. */
const piecesOf = (body: Uint8Array, sizes: ReadonlyArray<number> = [], perChunk = 1): Stream.Stream<Uint8Array> => {
  const pieces: Array<Uint8Array> = []
  let offset = 0
  for (const size of sizes) {
    if (offset >= body.length) break
    pieces.push(body.subarray(offset, offset + size))
    offset += size
  }
  if (offset < body.length || pieces.length === 0) pieces.push(body.subarray(offset))
  return Stream.fromIterable(pieces).pipe(Stream.rechunk(perChunk))
}

const collect = <E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<Buffer, E> =>
  Effect.map(Stream.runCollect(stream), (chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)))

const decrypt = (
  body: Stream.Stream<Uint8Array> | Uint8Array,
  options: Partial<FileCipher.DecryptOptions> = {},
  service: FileCipher.Service = node
) =>
  Effect.exit(collect(
    service.decrypt({ contract, fileName: "file.json", ...options })(
      body instanceof Uint8Array ? piecesOf(body) : body
    )
  ))

const run = <A>(effect: Effect.Effect<A>): Promise<A> => Effect.runPromise(effect)

type Outcome =
  | { readonly _tag: "Bytes"; readonly bytes: Buffer }
  | { readonly _tag: "Failure"; readonly error: DigimeError.FileDecryptionError }

/** The content, or a `FileDecryptionError` naming `fileName`; a defect or any other failure fails the test. */
const outcomeOf = (exit: Exit.Exit<Buffer, unknown>, fileName = "file.json"): Outcome => {
  if (Exit.isSuccess(exit)) return { _tag: "Bytes", bytes: exit.value }
  if (Cause.isDie(exit.cause) || Cause.isInterrupted(exit.cause)) {
    return assert.fail(`a defect or an interruption instead of a typed error:\n${Cause.pretty(exit.cause)}`)
  }
  const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
  if (!(error instanceof DigimeError.FileDecryptionError)) return assert.fail(`not a FileDecryptionError: ${error}`)
  assert.strictEqual(error.fileName, fileName)
  return { _tag: "Failure", error }
}

const errorOf = (exit: Exit.Exit<Buffer, unknown>, fileName?: string): DigimeError.FileDecryptionError => {
  const outcome = outcomeOf(exit, fileName)
  if (outcome._tag === "Bytes") return assert.fail("expected a FileDecryptionError, got content")
  return outcome.error
}

const reasonOf = (outcome: Outcome): string => outcome._tag === "Bytes" ? "bytes" : outcome.error.reason

const bytesOf = (exit: Exit.Exit<Buffer, unknown>): Buffer => {
  if (Exit.isFailure(exit)) return assert.fail(`expected content, got:\n${Cause.pretty(exit.cause)}`)
  return exit.value
}

const validSize = (n: number) => n >= 288 && n % 16 === 0

const compressions = fc.constantFrom<Compression>("none", "gzip", "brotli")

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
  it.effect("decrypts the four vectors byte for byte: plain, gzip, brotli, empty", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(fixture.vectors.map((v) => v.name), ["plain-json", "gzip-json", "brotli-json", "empty"])
      for (const v of fixture.vectors) {
        const envelope = envelopeOf(v)
        assert.strictEqual(envelope.length, v.envelopeLength)
        const bytes = bytesOf(yield* decrypt(envelope, { compression: v.compression, fileName: v.name }))
        assert.deepStrictEqual(bytes, utf8(v.plaintextUtf8), v.name)
      }
    }))

  it.effect("works through the layer", () =>
    Effect.gen(function*() {
      const cipher = yield* FileCipher.FileCipher
      yield* cipher.prepare(contract)
      const v = vector("brotli-json")
      const bytes = yield* collect(
        cipher.decrypt({ contract, fileName: v.name, compression: "brotli" })(
          piecesOf(envelopeOf(v))
        )
      )
      assert.deepStrictEqual(bytes, utf8(v.plaintextUtf8))
    }).pipe(Effect.provide(NodeFileCipher.layer)))

  it.effect("any chunking of the body gives the same content, single bytes included", () =>
    check(
      fc.asyncProperty(
        fc.constantFrom(...fixture.vectors),
        fc.oneof(
          fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 40 }),
          fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 4 }),
          fc.constant(Array.from({ length: 400 }, () => 1))
        ),
        fc.integer({ min: 1, max: 8 }),
        async (v, sizes, perChunk) => {
          const exit = await run(decrypt(piecesOf(envelopeOf(v), sizes, perChunk), { compression: v.compression }))
          assert.deepStrictEqual(bytesOf(exit), utf8(v.plaintextUtf8))
        }
      ),
      100
    ))

  it.effect("random bodies: InvalidSize exactly when the length cannot be an envelope, else KeyUnwrap", () =>
    check(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 700 }),
          fc.integer({ min: 18, max: 40 }).chain((n) => fc.uint8Array({ minLength: n * 16, maxLength: n * 16 }))
        ),
        fc.array(fc.integer({ min: 1, max: 100 }), { maxLength: 10 }),
        compressions,
        async (body, sizes, compression) => {
          const outcome = outcomeOf(await run(decrypt(piecesOf(body, sizes), { compression })))
          assert.strictEqual(reasonOf(outcome), validSize(body.length) ? "KeyUnwrap" : "InvalidSize")
        }
      ),
      100
    ))

  it.effect("a valid header and random ciphertext of random length: InvalidSize when the length is wrong, else typed or content", () =>
    Effect.gen(function*() {
      const header = envelopeOf(vector("plain-json")).subarray(0, 272)
      yield* check(
        fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), compressions, async (rest, compression) => {
          const body = Buffer.concat([header, rest])
          const outcome = outcomeOf(await run(decrypt(body, { compression })))
          if (!validSize(body.length)) assert.strictEqual(reasonOf(outcome), "InvalidSize")
          else assert.include(["InvalidPadding", "Decompression", "bytes"], reasonOf(outcome))
        }),
        100
      )
    }))

  it.effect("truncated anywhere: InvalidSize below 288 bytes or off a block boundary, otherwise typed or content", () =>
    check(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        compressions,
        fc.nat(),
        fc.constantFrom("anywhere", "slot", "iv", "boundary", "lastBlock"),
        async (content, compression, seedPoint, kind) => {
          const envelope = seal(content, compression)
          const blocks = (envelope.length - 272) / 16
          const at = kind === "slot"
            ? seedPoint % 256
            : kind === "iv"
            ? 256 + (seedPoint % 16)
            : kind === "boundary"
            ? 272 + 16 * (seedPoint % blocks)
            : kind === "lastBlock"
            ? envelope.length - 1 - (seedPoint % 16)
            : seedPoint % envelope.length
          const outcome = outcomeOf(await run(decrypt(envelope.subarray(0, at), { compression })))
          if (!validSize(at)) assert.strictEqual(reasonOf(outcome), "InvalidSize")
          else assert.include(["InvalidPadding", "Decompression", "bytes"], reasonOf(outcome))
        }
      ),
      100
    ))

  it.effect("one flipped byte anywhere: typed or content; in the key slot, always KeyUnwrap", () =>
    check(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        compressions,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        async (content, compression, position, mask, inKeySlot) => {
          const envelope = seal(content, compression)
          const at = inKeySlot ? position % 256 : position % envelope.length
          envelope[at]! ^= mask
          const outcome = outcomeOf(await run(decrypt(envelope, { compression })))
          if (at < 256) assert.strictEqual(reasonOf(outcome), "KeyUnwrap")
          else assert.include(["InvalidPadding", "Decompression", "bytes"], reasonOf(outcome))
        }
      ),
      100
    ))

  it.effect("a file sealed to another key: KeyUnwrap; that key in PKCS#8 opens its own files", () =>
    Effect.gen(function*() {
      const other = Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
      const pem = other.privateKey.export({ type: "pkcs8", format: "pem" }) as string
      const otherContract = Contract.make({ contractId: "other", privateKey: Redacted.make(pem) })
      assert.strictEqual(
        errorOf(yield* decrypt(envelopeOf(vector("plain-json")), { contract: otherContract })).reason,
        "KeyUnwrap"
      )
      const own = seal(utf8("for the other contract"), "gzip", other.publicKey)
      assert.deepStrictEqual(
        bytesOf(yield* decrypt(own, { contract: otherContract, compression: "gzip" })),
        utf8("for the other contract")
      )
      assert.strictEqual(errorOf(yield* decrypt(own, { compression: "gzip" })).reason, "KeyUnwrap")
    }))

  it.effect("a key of another size than 2048 bits: TooShort below, KeyUnwrap above; a key that is not RSA: NotRsa", () =>
    Effect.gen(function*() {
      const pemOf = (key: Crypto.KeyObject) => key.export({ type: "pkcs8", format: "pem" }) as string
      const contractOf = (contractId: string, key: Crypto.KeyObject) =>
        Contract.make({ contractId, privateKey: Redacted.make(pemOf(key)) })
      const short = contractOf("short", Crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey)
      assert.strictEqual((yield* Effect.flip(node.prepare(short))).reason, "TooShort")
      const ec = contractOf("ec", Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey)
      assert.strictEqual((yield* Effect.flip(node.prepare(ec))).reason, "NotRsa")
      const long = contractOf("long", Crypto.generateKeyPairSync("rsa", { modulusLength: 3072 }).privateKey)
      yield* node.prepare(long)
      const error = errorOf(yield* decrypt(envelopeOf(vector("plain-json")), { contract: long }))
      assert.strictEqual(error.reason, "KeyUnwrap")
      assert.include(error.description, "3072")
    }))

  it.effect("the padding byte made wrong: InvalidPadding", () =>
    Effect.gen(function*() {
      for (const length of [0, 1, 15, 16, 17, 100]) {
        const envelope = seal(Buffer.alloc(length, 7))
        const padding = 16 - (length % 16)
        // The last byte of the next-to-last block (or of the IV) is XORed into the padding byte.
        envelope[envelope.length - 17]! ^= padding ^ 0x20
        assert.strictEqual(errorOf(yield* decrypt(envelope)).reason, "InvalidPadding", `content of ${length} bytes`)
      }
    }))

  it.effect("a corrupted last block: InvalidPadding, or rarely garbage", () =>
    Effect.gen(function*() {
      const reasons: Array<string> = []
      yield* check(
        fc.asyncProperty(
          fc.uint8Array({ maxLength: 100 }),
          fc.uint8Array({ minLength: 16, maxLength: 16 }).filter((noise) => noise.some((b) => b !== 0)),
          async (content, noise) => {
            const envelope = seal(content)
            for (let i = 0; i < 16; i++) envelope[envelope.length - 16 + i]! ^= noise[i]!
            const outcome = outcomeOf(await run(decrypt(envelope)))
            reasons.push(reasonOf(outcome))
            assert.include(["InvalidPadding", "bytes"], reasonOf(outcome))
          }
        ),
        60
      )
      assert.isAbove(reasons.filter((r) => r === "InvalidPadding").length, 50)
    }))

  it.effect("content that is not gzip or brotli, or cut short: Decompression", () =>
    Effect.gen(function*() {
      for (const compression of ["gzip", "brotli"] as const) {
        const notCompressed = seal(utf8("plain text, compressed in no way at all"))
        assert.strictEqual(errorOf(yield* decrypt(notCompressed, { compression })).reason, "Decompression", compression)
        const compressed = compress(compression, utf8("some content ".repeat(1000)))
        const cut = seal(compressed.subarray(0, compressed.length - 6))
        assert.strictEqual(errorOf(yield* decrypt(cut, { compression })).reason, "Decompression", compression)
      }
    }))

  it.effect("compression names: any case of none, identity, gzip, brotli; other names UnsupportedCompression", () =>
    Effect.gen(function*() {
      const brotli = vector("brotli-json")
      for (const name of ["brotli", "BROTLI", "Brotli"]) {
        assert.deepStrictEqual(
          bytesOf(yield* decrypt(envelopeOf(brotli), { compression: name })),
          utf8(brotli.plaintextUtf8)
        )
      }
      for (const name of ["zstd", "", "br", "deflate"]) {
        assert.strictEqual(
          errorOf(yield* decrypt(envelopeOf(brotli), { compression: name })).reason,
          "UnsupportedCompression"
        )
      }
    }))

  it.effect("an unusable contract key: InvalidContractKey from prepare and from decrypt", () =>
    Effect.gen(function*() {
      for (
        const pem of [
          "not a key",
          fixture.publicKeySpkiPem,
          "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
        ]
      ) {
        const bad = Contract.make({ contractId: "bad", privateKey: Redacted.make(pem) })
        const prepared = yield* Effect.flip(node.prepare(bad))
        assert.strictEqual(prepared._tag, "InvalidContractKey")
        assert.strictEqual(prepared.contractId, "bad")
        const exit = yield* decrypt(envelopeOf(vector("plain-json")), { contract: bad })
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        assert.instanceOf(error, DigimeError.InvalidContractKey)
      }
    }))

  it.effect("the message names the file, escaped, and holds nothing of the key", () =>
    Effect.gen(function*() {
      const fileName = "report\n2024\u202e.json"
      const envelope = envelopeOf(vector("plain-json"))
      const other = Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey
      const otherContract = Contract.make({
        contractId: "other",
        privateKey: Redacted.make(other.export({ type: "pkcs1", format: "pem" }) as string)
      })
      const corrupted = Buffer.from(envelope)
      corrupted[corrupted.length - 17]! ^= 0x40
      const errors = [
        errorOf(yield* decrypt(envelope.subarray(0, 300), { fileName }), fileName),
        errorOf(yield* decrypt(envelope, { fileName, contract: otherContract }), fileName),
        errorOf(yield* decrypt(corrupted, { fileName }), fileName),
        errorOf(yield* decrypt(envelope, { fileName, compression: "brotli" }), fileName),
        errorOf(yield* decrypt(envelope, { fileName, compression: "zstd" }), fileName)
      ]
      assert.deepStrictEqual(
        errors.map((e) => e.reason),
        ["InvalidSize", "KeyUnwrap", "InvalidPadding", "Decompression", "UnsupportedCompression"]
      )
      const body = fixture.privateKeyPkcs1Pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "")
      for (const error of errors) {
        assert.include(error.message, DigimeError.printable(fileName))
        assert.notInclude(error.message, fileName)
        const shown = [error.message, JSON.stringify(error), String(error)].join("\n")
        for (let i = 0; i + 12 <= body.length; i += 4) assert.notInclude(shown, body.slice(i, i + 12))
      }
    }))

  it.effect("the body's own failure passes through as itself, after the content decrypted so far", () =>
    Effect.gen(function*() {
      class BodyFailed {
        readonly _tag = "BodyFailed"
      }
      const content = Buffer.alloc(100_000).map((_, i) => (i * 7) % 251)
      for (const compression of ["none", "gzip", "brotli"] as const) {
        const envelope = seal(content, compression)
        let received = 0
        const body = Stream.concat(
          piecesOf(envelope.subarray(0, envelope.length - 32), Array.from({ length: 30 }, () => 4096)),
          Stream.fail(new BodyFailed())
        )
        const exit = yield* node.decrypt({ contract, fileName: "file.json", compression })(body).pipe(
          Stream.runForEach((bytes) =>
            Effect.sync(() => {
              received += bytes.length
            })
          ),
          Effect.exit
        )
        assert.isTrue(Exit.isFailure(exit) && !Cause.isDie(exit.cause), compression)
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        assert.instanceOf(error, BodyFailed)
        if (compression === "none") assert.isAbove(received, 90_000)
      }
    }))

  it.effect("a consumer that stops early stops the decryption", () =>
    Effect.gen(function*() {
      const content = Buffer.alloc(300_000).map((_, i) => i % 13)
      for (const compression of ["none", "gzip", "brotli"] as const) {
        const first = yield* node.decrypt({ contract, fileName: "file.json", compression })(
          piecesOf(seal(content, compression), Array.from({ length: 100 }, () => 4096))
        ).pipe(Stream.take(1), Stream.runCollect)
        assert.strictEqual(Chunk.size(first), 1)
      }
    }))

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
            run(decrypt(piecesOf(envelope, sizes), { compression }, node)),
            run(decrypt(piecesOf(envelope, sizes), { compression }, web))
          ])
          const [a, b] = [outcomeOf(byNode), outcomeOf(byWeb)]
          assert.strictEqual(reasonOf(a), reasonOf(b))
          if (a._tag === "Bytes" && b._tag === "Bytes") assert.deepStrictEqual(a.bytes, b.bytes)
          if (damage._tag === "Intact") assert.deepStrictEqual(bytesOf(byNode), Buffer.from(content))
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
