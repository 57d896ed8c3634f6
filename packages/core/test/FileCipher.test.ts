/**
 * `FileCipher` on Web Crypto: the contract every implementation keeps (FileCipherSuite.ts: the
 * fixed vectors, any chunking, random, truncated and corrupted bodies, keys, compressions), then
 * what is Web Crypto's own: brotli where the platform's `DecompressionStream` lacks it; and what is
 * `FileCipher.make`'s, whatever the implementation: each contract's key prepared once.
 *
 * One seed for the whole file, from `FC_SEED` (see FileCipherSuite.ts), shown in the describe names
 * so that a failure can be replayed with `FC_SEED=<seed> pnpm exec vitest run --project core test/FileCipher`.
 */
import { Contract, DigimeError } from "@digime-effect/core"
import * as FileCipher from "@digime-effect/core/FileCipher"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"
import {
  bytesOf,
  collect,
  decryptWith,
  envelopeOf,
  errorOf,
  piecesOf,
  seed,
  suite,
  utf8,
  vector,
  webCompress
} from "./FileCipherSuite.js"

// One service for the file: the test key is prepared once.
const web = Effect.runSync(FileCipher.makeWebCrypto)
const decrypt = decryptWith(web)

const brotliOnThisPlatform = (() => {
  try {
    new DecompressionStream("brotli" as CompressionFormat)
    return true
  } catch {
    return false
  }
})()

suite("FileCipher.makeWebCrypto", {
  cipher: web,
  layer: FileCipher.layerWebCrypto,
  brotli: brotliOnThisPlatform ? (content) => webCompress("brotli", content) : undefined,
  malformedRsaKey: "NotRsa"
})

describe(`FileCipher.layerWebCrypto (seed ${seed})`, () => {
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
