/**
 * `FileCipher` on Web Crypto: the fixed vectors (`fixtures/file-envelope.json`, a TEST key), any
 * chunking of the body, and property tests over random, truncated and corrupted bodies, whose
 * outcome is always the content or a `FileDecryptionError` naming the file, never a defect.
 * Envelopes other than the vectors are sealed here with Web Crypto, as digi.me seals them.
 *
 * One seed for the whole file, from `FC_SEED` (default below), shown in the describe name so that
 * a failure can be replayed with `FC_SEED=<seed> pnpm exec vitest run --project core test/FileCipher`.
 */
import { Contract, DigimeError } from "@digime-effect/core"
import * as FileCipher from "@digime-effect/core/FileCipher"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Either, Encoding, Exit, Option, Redacted, Stream } from "effect"
import * as fc from "fast-check"
import { readFileSync } from "node:fs"

// ---------------------------------------------------------------------------------------------
// vectors, keys, sealing
// ---------------------------------------------------------------------------------------------

interface Vector {
  readonly name: string
  readonly compression: string
  readonly plaintextUtf8: string
  readonly envelopeLength: number
  readonly envelopeHex: string
}

const fixture = JSON.parse(readFileSync(new URL("./fixtures/file-envelope.json", import.meta.url), "utf8")) as {
  readonly privateKeyPkcs1Pem: string
  readonly publicKeySpkiPem: string
  readonly vectors: ReadonlyArray<Vector>
}

const bytesOfHex = (hex: string): Uint8Array<ArrayBuffer> => new Uint8Array(Either.getOrThrow(Encoding.decodeHex(hex)))
const utf8 = (text: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(text)
const vector = (name: string): Vector => fixture.vectors.find((v) => v.name === name)!
const envelopeOf = (v: Vector) => bytesOfHex(v.envelopeHex)

const derOfPem = (pem: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(Either.getOrThrow(Encoding.decodeBase64(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""))))
const pemOf = (label: string, der: ArrayBuffer): string =>
  `-----BEGIN ${label}-----\n${
    Encoding.encodeBase64(new Uint8Array(der)).replace(/.{1,64}/g, "$&\n")
  }-----END ${label}-----\n`

const contract = Contract.make({ contractId: "file-contract", privateKey: Redacted.make(fixture.privateKeyPkcs1Pem) })

const oaep = { name: "RSA-OAEP", hash: "SHA-1" } as const
const testPublicKey = await crypto.subtle.importKey("spki", derOfPem(fixture.publicKeySpkiPem), oaep, false, [
  "encrypt"
])

const generateKeyPair = (modulusLength: number) =>
  crypto.subtle.generateKey(
    { ...oaep, modulusLength, publicExponent: Uint8Array.of(1, 0, 1) },
    true,
    ["encrypt", "decrypt"]
  ) as Promise<CryptoKeyPair>

const concatBytes = (...parts: ReadonlyArray<Uint8Array>): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

const compress = async (format: "gzip", content: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> =>
  new Uint8Array(
    await new Response(new Blob([content]).stream().pipeThrough(new CompressionStream(format))).arrayBuffer()
  )

/** An envelope as digi.me makes one: a random data key wrapped to `publicKey`, a random IV, AES-256-CBC. */
const seal = async (
  content: Uint8Array<ArrayBuffer>,
  publicKey: CryptoKey = testPublicKey
): Promise<Uint8Array<ArrayBuffer>> => {
  const dataKey = crypto.getRandomValues(new Uint8Array(32))
  const iv = crypto.getRandomValues(new Uint8Array(16))
  const aes = await crypto.subtle.importKey("raw", dataKey, "AES-CBC", false, ["encrypt"])
  const keySlot = new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, publicKey, dataKey))
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv }, aes, content))
  return concatBytes(keySlot, iv, ciphertext)
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

// One service for the file: the test key is prepared once.
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

const collect = <E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<Uint8Array, E> =>
  Effect.map(Stream.runCollect(stream), (chunks) => concatBytes(...Chunk.toReadonlyArray(chunks)))

const decrypt = (
  body: Stream.Stream<Uint8Array> | Uint8Array,
  options: Partial<FileCipher.DecryptOptions> = {},
  service: FileCipher.Service = web
) =>
  Effect.exit(collect(
    service.decrypt({ contract, fileName: "file.json", ...options })(
      body instanceof Uint8Array ? piecesOf(body) : body
    )
  ))

type Outcome =
  | { readonly _tag: "Bytes"; readonly bytes: Uint8Array }
  | { readonly _tag: "Failure"; readonly error: DigimeError.FileDecryptionError }

/** The content, or a `FileDecryptionError` naming `fileName`; a defect or any other failure fails the test. */
const outcomeOf = (exit: Exit.Exit<Uint8Array, unknown>, fileName = "file.json"): Outcome => {
  if (Exit.isSuccess(exit)) return { _tag: "Bytes", bytes: exit.value }
  if (Cause.isDie(exit.cause) || Cause.isInterrupted(exit.cause)) {
    return assert.fail(`a defect or an interruption instead of a typed error:\n${Cause.pretty(exit.cause)}`)
  }
  const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
  if (!(error instanceof DigimeError.FileDecryptionError)) return assert.fail(`not a FileDecryptionError: ${error}`)
  assert.strictEqual(error.fileName, fileName)
  return { _tag: "Failure", error }
}

const errorOf = (exit: Exit.Exit<Uint8Array, unknown>, fileName?: string): DigimeError.FileDecryptionError => {
  const outcome = outcomeOf(exit, fileName)
  if (outcome._tag === "Bytes") return assert.fail("expected a FileDecryptionError, got content")
  return outcome.error
}

const reasonOf = (outcome: Outcome): string => outcome._tag === "Bytes" ? "bytes" : outcome.error.reason

const bytesOf = (exit: Exit.Exit<Uint8Array, unknown>): Uint8Array => {
  if (Exit.isFailure(exit)) return assert.fail(`expected content, got:\n${Cause.pretty(exit.cause)}`)
  return exit.value
}

const validSize = (n: number) => n >= 288 && n % 16 === 0

const brotliOnThisPlatform = (() => {
  try {
    new DecompressionStream("brotli" as CompressionFormat)
    return true
  } catch {
    return false
  }
})()

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

describe(`FileCipher.layerWebCrypto (seed ${seed})`, () => {
  it.effect("decrypts the plain, gzip and empty vectors byte for byte", () =>
    Effect.gen(function*() {
      for (const name of ["plain-json", "gzip-json", "empty"]) {
        const v = vector(name)
        const envelope = envelopeOf(v)
        assert.strictEqual(envelope.length, v.envelopeLength)
        const bytes = bytesOf(yield* decrypt(envelope, { compression: v.compression, fileName: v.name }))
        assert.deepStrictEqual(bytes, utf8(v.plaintextUtf8), name)
      }
    }))

  it.effect("the brotli vector: UnsupportedCompression naming NodeFileCipher, unless the platform has brotli", () =>
    Effect.gen(function*() {
      const v = vector("brotli-json")
      const exit = yield* decrypt(envelopeOf(v), { compression: "brotli", fileName: v.name })
      if (brotliOnThisPlatform) {
        assert.deepStrictEqual(bytesOf(exit), utf8(v.plaintextUtf8))
      } else {
        const error = errorOf(exit, v.name)
        assert.strictEqual(error.reason, "UnsupportedCompression")
        assert.include(error.description, "NodeFileCipher")
      }
    }))

  it.effect("works through the layer", () =>
    Effect.gen(function*() {
      const cipher = yield* FileCipher.FileCipher
      yield* cipher.prepare(contract)
      const v = vector("plain-json")
      const bytes = yield* collect(cipher.decrypt({ contract, fileName: v.name })(piecesOf(envelopeOf(v))))
      assert.deepStrictEqual(bytes, utf8(v.plaintextUtf8))
    }).pipe(Effect.provide(FileCipher.layerWebCrypto)))

  it.effect("any chunking of the body gives the same content, single bytes included", () =>
    check(
      fc.asyncProperty(
        fc.constantFrom("plain-json", "gzip-json", "empty"),
        fc.oneof(
          fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 40 }),
          fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 4 }),
          fc.constant(Array.from({ length: 400 }, () => 1))
        ),
        fc.integer({ min: 1, max: 8 }),
        async (name, sizes, perChunk) => {
          const v = vector(name)
          const exit = await Effect.runPromise(
            decrypt(piecesOf(envelopeOf(v), sizes, perChunk), { compression: v.compression })
          )
          assert.deepStrictEqual(bytesOf(exit), utf8(v.plaintextUtf8))
        }
      ),
      60
    ))

  it.effect("sealed content of any length, plain or gzip, in any chunking, comes back as it was", () =>
    check(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 2000 }),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 8 }),
        async (content, gzip, sizes) => {
          const envelope = await seal(gzip ? await compress("gzip", content) : content)
          const exit = await Effect.runPromise(
            decrypt(piecesOf(envelope, sizes), { compression: gzip ? "gzip" : "none" })
          )
          assert.deepStrictEqual(bytesOf(exit), content)
        }
      ),
      60
    ))

  it.effect("random bodies: InvalidSize exactly when the length cannot be an envelope, else KeyUnwrap", () =>
    check(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 700 }),
          fc.integer({ min: 18, max: 40 }).chain((n) => fc.uint8Array({ minLength: n * 16, maxLength: n * 16 }))
        ),
        fc.array(fc.integer({ min: 1, max: 100 }), { maxLength: 10 }),
        async (body, sizes) => {
          const outcome = outcomeOf(await Effect.runPromise(decrypt(piecesOf(body, sizes))))
          assert.strictEqual(reasonOf(outcome), validSize(body.length) ? "KeyUnwrap" : "InvalidSize")
        }
      ),
      100
    ))

  it.effect("a valid header and random ciphertext of random length: InvalidSize when the length is wrong, else typed or content", () =>
    Effect.gen(function*() {
      const header = envelopeOf(vector("plain-json")).subarray(0, 272)
      yield* check(
        fc.asyncProperty(
          fc.uint8Array({ maxLength: 400 }),
          fc.constantFrom("none", "gzip"),
          async (rest, compression) => {
            const body = concatBytes(header, rest)
            const outcome = outcomeOf(await Effect.runPromise(decrypt(body, { compression })))
            if (!validSize(body.length)) assert.strictEqual(reasonOf(outcome), "InvalidSize")
            else assert.include(["InvalidPadding", "Decompression", "bytes"], reasonOf(outcome))
          }
        ),
        100
      )
    }))

  it.effect("truncated anywhere: InvalidSize below 288 bytes or off a block boundary, otherwise typed or content", () =>
    check(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.boolean(),
        fc.nat(),
        fc.constantFrom("anywhere", "slot", "iv", "boundary", "lastBlock"),
        async (content, gzip, seedPoint, kind) => {
          const envelope = await seal(gzip ? await compress("gzip", content) : content)
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
          const outcome = outcomeOf(
            await Effect.runPromise(decrypt(envelope.subarray(0, at), { compression: gzip ? "gzip" : "none" }))
          )
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
        fc.boolean(),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        async (content, gzip, position, mask, inKeySlot) => {
          const envelope = await seal(gzip ? await compress("gzip", content) : content)
          const at = inKeySlot ? position % 256 : position % envelope.length
          envelope[at]! ^= mask
          const outcome = outcomeOf(await Effect.runPromise(decrypt(envelope, { compression: gzip ? "gzip" : "none" })))
          if (at < 256) assert.strictEqual(reasonOf(outcome), "KeyUnwrap")
          else assert.include(["InvalidPadding", "Decompression", "bytes"], reasonOf(outcome))
        }
      ),
      100
    ))

  it.effect("a file sealed to another key: KeyUnwrap; the same key in PKCS#8 opens its own files", () =>
    Effect.gen(function*() {
      const other = yield* Effect.promise(() => generateKeyPair(2048))
      const pkcs8 = yield* Effect.promise(() => crypto.subtle.exportKey("pkcs8", other.privateKey))
      const otherContract = Contract.make({
        contractId: "other",
        privateKey: Redacted.make(pemOf("PRIVATE KEY", pkcs8))
      })
      const error = errorOf(yield* decrypt(envelopeOf(vector("plain-json")), { contract: otherContract }))
      assert.strictEqual(error.reason, "KeyUnwrap")
      const own = yield* Effect.promise(() => seal(utf8("for the other contract"), other.publicKey))
      assert.deepStrictEqual(bytesOf(yield* decrypt(own, { contract: otherContract })), utf8("for the other contract"))
      // And the test key does not open it.
      assert.strictEqual(errorOf(yield* decrypt(own)).reason, "KeyUnwrap")
    }))

  it.effect("a key of another size than 2048 bits: TooShort below, KeyUnwrap above", () =>
    Effect.gen(function*() {
      const short = yield* Effect.promise(() => generateKeyPair(1024))
      const shortPem = pemOf(
        "PRIVATE KEY",
        yield* Effect.promise(() => crypto.subtle.exportKey("pkcs8", short.privateKey))
      )
      const shortContract = Contract.make({ contractId: "short", privateKey: Redacted.make(shortPem) })
      const tooShort = yield* Effect.flip(web.prepare(shortContract))
      assert.strictEqual(tooShort.reason, "TooShort")
      const long = yield* Effect.promise(() => generateKeyPair(3072))
      const longPem = pemOf(
        "PRIVATE KEY",
        yield* Effect.promise(() => crypto.subtle.exportKey("pkcs8", long.privateKey))
      )
      const longContract = Contract.make({ contractId: "long", privateKey: Redacted.make(longPem) })
      yield* web.prepare(longContract)
      const error = errorOf(yield* decrypt(envelopeOf(vector("plain-json")), { contract: longContract }))
      assert.strictEqual(error.reason, "KeyUnwrap")
      assert.include(error.description, "3072")
    }))

  it.effect("the padding byte made wrong: InvalidPadding", () =>
    Effect.gen(function*() {
      for (const length of [0, 1, 15, 16, 17, 100]) {
        const envelope = yield* Effect.promise(() => seal(new Uint8Array(length).fill(7)))
        const padding = 16 - (length % 16)
        // The last byte of the next-to-last block (or of the IV) is XORed into the padding byte.
        envelope[envelope.length - 17]! ^= padding ^ 0x20
        const error = errorOf(yield* decrypt(envelope))
        assert.strictEqual(error.reason, "InvalidPadding", `content of ${length} bytes`)
      }
    }))

  it.effect("a corrupted last block: InvalidPadding, or rarely garbage", () =>
    Effect.gen(function*() {
      const reasons: Array<string> = []
      yield* check(
        fc.asyncProperty(
          fc.uint8Array({ maxLength: 100 }),
          fc.uint8Array({ minLength: 16, maxLength: 16 }),
          async (content, noise) => {
            const envelope = await seal(content)
            for (let i = 0; i < 16; i++) envelope[envelope.length - 16 + i]! ^= noise[i]!
            const outcome = outcomeOf(await Effect.runPromise(decrypt(envelope)))
            reasons.push(reasonOf(outcome))
            assert.include(["InvalidPadding", "bytes"], reasonOf(outcome))
          }
        ),
        60
      )
      // A random last block has a valid padding about once in 200 times (mostly a final 0x01).
      assert.isAbove(reasons.filter((r) => r === "InvalidPadding").length, 50)
    }))

  it.effect("content that is not gzip, or gzip cut short: Decompression", () =>
    Effect.gen(function*() {
      const notGzip = yield* Effect.promise(() => seal(utf8("plain text, not gzip")))
      assert.strictEqual(errorOf(yield* decrypt(notGzip, { compression: "gzip" })).reason, "Decompression")
      const gzip = yield* Effect.promise(() => compress("gzip", utf8("some content ".repeat(100))))
      const cut = yield* Effect.promise(() => seal(gzip.subarray(0, gzip.length - 6)))
      assert.strictEqual(errorOf(yield* decrypt(cut, { compression: "gzip" })).reason, "Decompression")
    }))

  it.effect("compression names: any case of none, identity, gzip; other names UnsupportedCompression, body unread", () =>
    Effect.gen(function*() {
      const plain = envelopeOf(vector("plain-json"))
      const gzip = envelopeOf(vector("gzip-json"))
      for (const name of [undefined, "none", "NONE", "identity", "Identity"]) {
        assert.deepStrictEqual(
          bytesOf(yield* decrypt(plain, { compression: name })),
          utf8(vector("plain-json").plaintextUtf8)
        )
      }
      for (const name of ["gzip", "GZIP", "Gzip"]) {
        assert.deepStrictEqual(
          bytesOf(yield* decrypt(gzip, { compression: name })),
          utf8(vector("gzip-json").plaintextUtf8)
        )
      }
      for (const name of ["zstd", "", "deflate", "br", " gzip", "x-gzip"]) {
        let pulled = false
        const body = Stream.fromEffect(Effect.sync(() => {
          pulled = true
          return plain
        }))
        const error = errorOf(yield* decrypt(body, { compression: name }))
        assert.strictEqual(error.reason, "UnsupportedCompression", JSON.stringify(name))
        assert.isFalse(pulled)
      }
      assert.deepStrictEqual(FileCipher.compressionOf("Brotli"), Option.some("brotli"))
      assert.deepStrictEqual(FileCipher.compressionOf("zstd"), Option.none())
    }))

  it.effect("an unusable contract key: InvalidContractKey from prepare and from decrypt", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, DigimeError.InvalidContractKey["reason"]]> = [
        ["not a key", "Unreadable"],
        [fixture.publicKeySpkiPem, "Unreadable"],
        ["-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----", "NotRsa"]
      ]
      for (const [pem, reason] of cases) {
        const bad = Contract.make({ contractId: "bad", privateKey: Redacted.make(pem) })
        const prepared = yield* Effect.flip(web.prepare(bad))
        assert.strictEqual(prepared.reason, reason)
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
      const other = yield* Effect.promise(() => generateKeyPair(2048))
      const otherPem = pemOf(
        "PRIVATE KEY",
        yield* Effect.promise(() => crypto.subtle.exportKey("pkcs8", other.privateKey))
      )
      const otherContract = Contract.make({ contractId: "other", privateKey: Redacted.make(otherPem) })
      const corrupted = envelope.slice()
      corrupted[corrupted.length - 17]! ^= 0x40
      const errors = [
        errorOf(yield* decrypt(envelope.subarray(0, 300), { fileName }), fileName),
        errorOf(yield* decrypt(envelope, { fileName, contract: otherContract }), fileName),
        errorOf(yield* decrypt(corrupted, { fileName }), fileName),
        errorOf(yield* decrypt(envelope, { fileName, compression: "gzip" }), fileName),
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

  it.effect("a declared size: a wrong one fails before the body is read; a body longer or shorter than it, InvalidSize", () =>
    Effect.gen(function*() {
      const v = vector("plain-json")
      const envelope = envelopeOf(v)
      let pulled = false
      const body = Stream.fromEffect(Effect.sync(() => {
        pulled = true
        return envelope
      }))
      for (const size of [0, 287, 300, -16, 1.5]) {
        assert.strictEqual(errorOf(yield* decrypt(body, { size })).reason, "InvalidSize")
      }
      assert.isFalse(pulled)
      assert.deepStrictEqual(bytesOf(yield* decrypt(envelope, { size: envelope.length })), utf8(v.plaintextUtf8))
      assert.strictEqual(errorOf(yield* decrypt(envelope, { size: envelope.length - 16 })).reason, "InvalidSize")
      assert.strictEqual(errorOf(yield* decrypt(envelope, { size: envelope.length + 16 })).reason, "InvalidSize")
    }))

  it.effect("the body's own failure passes through as itself, plain or gzip, after the content decrypted so far", () =>
    Effect.gen(function*() {
      class BodyFailed {
        readonly _tag = "BodyFailed"
      }
      const content = new Uint8Array(100_000).map((_, i) => (i * 7) % 251)
      for (const gzip of [false, true]) {
        const sealed = gzip ? yield* Effect.promise(() => compress("gzip", content)) : content
        const envelope = yield* Effect.promise(() => seal(sealed))
        let received = 0
        const body = Stream.concat(
          piecesOf(envelope.subarray(0, envelope.length - 32), Array.from({ length: 30 }, () => 4096)),
          Stream.fail(new BodyFailed())
        )
        const exit = yield* web.decrypt({ contract, fileName: "file.json", compression: gzip ? "gzip" : "none" })(body)
          .pipe(
            Stream.runForEach((bytes) =>
              Effect.sync(() => {
                received += bytes.length
              })
            ),
            Effect.exit
          )
        assert.isTrue(Exit.isFailure(exit) && !Cause.isDie(exit.cause))
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        assert.instanceOf(error, BodyFailed)
        if (!gzip) assert.isAbove(received, 90_000)
      }
    }))

  it.effect("a consumer that stops early stops the decryption", () =>
    Effect.gen(function*() {
      const content = new Uint8Array(300_000).map((_, i) => i % 13)
      for (const gzip of [false, true]) {
        const envelope = yield* Effect.promise(async () => seal(gzip ? await compress("gzip", content) : content))
        const first = yield* web.decrypt({ contract, fileName: "file.json", compression: gzip ? "gzip" : "none" })(
          piecesOf(envelope, Array.from({ length: 100 }, () => 4096))
        ).pipe(Stream.take(1), Stream.runCollect)
        assert.strictEqual(Chunk.size(first), 1)
      }
    }))

  it.effect("each contract's key is prepared once, however many files; again when its key changes", () =>
    Effect.gen(function*() {
      let prepared = 0
      const identity: FileCipher.Decipher = {
        update: (blocks) => Effect.succeed(blocks),
        final: (block) => Effect.succeed(block)
      }
      const cipher = yield* FileCipher.make({
        prepareKey: () => Effect.sync(() => (prepared++, { open: () => Effect.succeed(identity) })),
        decompressor: (compression, fileName) =>
          Either.left(
            new DigimeError.FileDecryptionError({
              fileName,
              reason: "UnsupportedCompression",
              description: compression
            })
          )
      })
      const a = Contract.make({ contractId: "a", privateKey: Redacted.make("key-a") })
      const b = Contract.make({ contractId: "b", privateKey: Redacted.make("key-b") })
      const body = new Uint8Array(288 + 32).map((_, i) => i)
      const results = yield* Effect.all(
        Array.from(
          { length: 20 },
          (_, i) =>
            collect(cipher.decrypt({ contract: i % 2 === 0 ? a : b, fileName: `f${i}` })(piecesOf(body, [5, 100, 200])))
        ),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(prepared, 2)
      // The framing hands out exactly the ciphertext, the final block last.
      for (const bytes of results) assert.deepStrictEqual(bytes, body.subarray(272))
      yield* cipher.prepare(Contract.make({ contractId: "a", privateKey: Redacted.make("key-a2") }))
      assert.strictEqual(prepared, 3)
    }))
})
