/**
 * Decrypts the files digi.me sends (data protocol §4.3, §4.4), as they stream: the first 256 bytes
 * are a 32-byte data key wrapped to the contract's public key (RSA-OAEP, SHA-1, MGF1-SHA-1, empty
 * label), the next 16 the IV, the rest the content in AES-256-CBC with PKCS#7 padding, compressed
 * first when the file's metadata says `compression: "gzip"` or `"brotli"`. Memory does not grow
 * with the file's size: the ciphertext is decrypted chunk by chunk and only its final block waits
 * for the end of the body, where its padding is checked.
 *
 * There is no integrity check in digi.me's format: a corrupted block other than the last ones
 * decrypts to garbage without any error.
 *
 * Core declares the service and a Web Crypto implementation (`layerWebCrypto`: gzip everywhere,
 * brotli only where `DecompressionStream` knows it); `@digime-effect/node` provides one on
 * `node:crypto` and `node:zlib` (`NodeFileCipher.layer`), with brotli.
 *
 * @since 0.2.0
 */
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { Contract } from "./Contract.js"
import type { InvalidContractKey } from "./DigimeError.js"
import type { FileDecryptionError } from "./DigimeError.js"
import { preparedPerContract } from "./internal/contractKey.js"
import { concat } from "./internal/der.js"
import * as Envelope from "./internal/envelope.js"
import { fileError } from "./internal/envelope.js"
import * as Tracing from "./internal/tracing.js"
import { collectCapped } from "./internal/transport.js"
import { webImplementation } from "./internal/webFileCipher.js"

/**
 * How a file's content was compressed before it was encrypted.
 *
 * @since 0.2.0
 * @category models
 */
export type Compression = "none" | "gzip" | "brotli"

/**
 * The compression named by a file's metadata (`compression` in its `x-metadata` header): absent,
 * `"none"` or `"identity"` mean none, then `"gzip"` and `"brotli"`, each in any case (`"GZIP"` is
 * gzip, as HTTP content codings are). Any other name, the empty string included, is unknown:
 * `Option.none()`, which `decrypt` reports as `UnsupportedCompression` rather than hand out
 * content it cannot read.
 *
 * @since 0.2.0
 * @category constructors
 */
export const compressionOf = (name: string | undefined): Option.Option<Compression> => {
  if (name === undefined) return Option.some("none")
  switch (name.toLowerCase()) {
    case "none":
    case "identity":
      return Option.some("none")
    case "gzip":
      return Option.some("gzip")
    case "brotli":
      return Option.some("brotli")
    default:
      return Option.none()
  }
}

/**
 * @since 0.2.0
 * @category models
 */
export interface DecryptOptions {
  /** The contract the file was shared under: its private key unwraps the file's data key. */
  readonly contract: Contract
  /** The file's name, for errors. */
  readonly fileName: string
  /** `compression` from the file's metadata, as given (see `compressionOf`). */
  readonly compression?: string | undefined
  /**
   * The body's length when it is known in advance (a `Content-Length`): a length that cannot be an
   * envelope fails before any byte is read, and a body longer or shorter than announced fails
   * with `InvalidSize`.
   */
  readonly size?: number | undefined
}

/**
 * @since 0.4.0
 * @category models
 */
export interface DecryptBytesOptions extends DecryptOptions {
  /**
   * The most content that may come out (after decompression), 64 MiB unless given; more is
   * `ContentTooLarge`, and decompression stops there.
   */
  readonly maxBytes?: number | undefined
}

/**
 * A file's content is longer than the caller's limit (`DecryptBytesOptions.maxBytes`): the
 * decompression stopped there.
 *
 * @since 0.4.0
 * @category errors
 */
export class ContentTooLarge extends Data.TaggedError("ContentTooLarge")<{
  readonly fileName: string
  readonly limit: number
}> {
  override get message(): string {
    return `the content of the file ${JSON.stringify(this.fileName)} is longer than ${this.limit} bytes`
  }
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Service {
  /**
   * Decrypts one file's body as it streams: memory does not grow with the file's size. The content
   * comes out as it is decrypted (and decompressed); an error at the end of the body (a wrong
   * padding, a truncated file) fails the stream after some content has come out, so a caller that
   * stores the content as it arrives discards it when the stream fails.
   */
  readonly decrypt: (
    options: DecryptOptions
  ) => <E, R>(
    body: Stream.Stream<Uint8Array, E, R>
  ) => Stream.Stream<Uint8Array, E | FileDecryptionError | InvalidContractKey, R>
  /**
   * Decrypts one file's whole body, already in memory, in one go: the same checks and errors as
   * `decrypt`, without the cost of a stream, for a file that is read whole anyway (as
   * `DigimeClient.readFileBytes` reads small files). Its content is held in memory: for a large
   * file, prefer `decrypt`.
   */
  readonly decryptBytes: (
    options: DecryptBytesOptions
  ) => (body: Uint8Array) => Effect.Effect<Uint8Array, FileDecryptionError | InvalidContractKey | ContentTooLarge>
  /** Parses the contract's key now (it is kept), so that an unusable key fails early. */
  readonly prepare: (contract: Contract) => Effect.Effect<void, InvalidContractKey>
}

/**
 * @since 0.2.0
 * @category services
 */
export class FileCipher extends Context.Tag("@digime-effect/core/FileCipher")<FileCipher, Service>() {}

/**
 * AES-256-CBC decryption of one file, started with its data key and IV.
 *
 * @since 0.2.0
 * @category models
 */
export interface Decipher {
  /** Decrypts the next whole blocks, in order; never the final block. */
  readonly update: (blocks: ReadonlyArray<Uint8Array>) => Effect.Effect<ReadonlyArray<Uint8Array>, FileDecryptionError>
  /**
   * The same as `update`, for a decipher that works synchronously and cannot fail there
   * (`node:crypto`): used instead when present, it saves an effect per chunk of the body.
   */
  readonly updateSync?: ((blocks: ReadonlyArray<Uint8Array>) => ReadonlyArray<Uint8Array>) | undefined
  /** Decrypts the final block, then checks and removes the padding (`InvalidPadding`). */
  readonly final: (block: Uint8Array<ArrayBuffer>) => Effect.Effect<Uint8Array, FileDecryptionError>
}

/**
 * A contract's private key, parsed: unwraps a file's data key (`KeyUnwrap` when it cannot: the data
 * key must be 32 bytes) and starts its decryption.
 *
 * @since 0.2.0
 * @category models
 */
export interface PreparedKey {
  readonly open: (
    fileName: string,
    keySlot: Uint8Array<ArrayBuffer>,
    iv: Uint8Array<ArrayBuffer>
  ) => Effect.Effect<Decipher, FileDecryptionError>
}

/**
 * Decompresses a stream of decrypted content, failing with `Decompression` on content that is not
 * in its format and passing the stream's own failures through. Memory must stay bounded:
 * input is taken only as fast as output is pulled.
 *
 * @since 0.2.0
 * @category models
 */
export type Decompress = <E, R>(
  plain: Stream.Stream<Uint8Array, E, R>
) => Stream.Stream<Uint8Array, E | FileDecryptionError, R>

/**
 * Decompresses a whole decrypted content in one go, failing with `Decompression` on content that
 * is not in its format and with `ContentTooLarge` as soon as the output would pass `maxBytes`.
 *
 * @since 0.4.0
 * @category models
 */
export type DecompressBytes = (
  content: Uint8Array,
  maxBytes: number
) => Effect.Effect<Uint8Array, FileDecryptionError | ContentTooLarge>

/**
 * What a platform provides: the key preparation, the decryption and the decompressors. The
 * framing, the size rules, the compression names and the key cache are `make`'s.
 *
 * @since 0.2.0
 * @category models
 */
export interface Implementation {
  readonly prepareKey: (contract: Contract) => Effect.Effect<PreparedKey, InvalidContractKey>
  /** A decompressor for `fileName`, or `UnsupportedCompression` when the platform has none. */
  readonly decompressor: (
    compression: "gzip" | "brotli",
    fileName: string
  ) => Either.Either<Decompress, FileDecryptionError>
  /**
   * A decompressor of whole contents, for `decryptBytes`, when the platform has one (`decompressor`
   * is run on a one-chunk stream otherwise). It must accept and refuse what `decompressor` does.
   */
  readonly decompressBytes?:
    | ((compression: "gzip" | "brotli", fileName: string) => DecompressBytes)
    | undefined
}

// One channel from body to content: the key prepared first (so that an unusable key fails before
// the body is read), then each chunk framed, its whole blocks decrypted and the content written,
// the final block decrypted at the end. One channel rather than a chain of stream operators: a
// file of a few chunks costs little more than the work itself.
const decryptChannel = <E>(
  prepareKey: Effect.Effect<PreparedKey, InvalidContractKey>,
  fileName: string,
  size: number | undefined
): Channel.Channel<
  Chunk.Chunk<Uint8Array>,
  Chunk.Chunk<Uint8Array>,
  E | FileDecryptionError | InvalidContractKey,
  E,
  unknown,
  unknown
> =>
  Channel.flatMap(Channel.fromEffect(prepareKey), (key) => {
    const reader = Envelope.make(size)
    if (Either.isLeft(reader)) return Channel.fail(fileError(fileName, "InvalidSize", reader.left))
    let decipher: Decipher | undefined
    const emit = (plain: ReadonlyArray<Uint8Array>) => {
      const out = plain.filter((bytes) => bytes.length > 0)
      return out.length === 0 ? loop : Channel.zipRight(Channel.write(Chunk.unsafeFromArray(out)), loop)
    }
    const update = (opened: Decipher, blocks: ReadonlyArray<Uint8Array>) =>
      blocks.length === 0
        ? loop
        : opened.updateSync !== undefined
        ? emit(opened.updateSync(blocks))
        : Channel.flatMap(Channel.fromEffect(opened.update(blocks)), emit)
    const loop: Channel.Channel<
      Chunk.Chunk<Uint8Array>,
      Chunk.Chunk<Uint8Array>,
      E | FileDecryptionError,
      E,
      unknown,
      unknown
    > = Channel.readWithCause({
      onInput: (chunk: Chunk.Chunk<Uint8Array>) => {
        let header: Extract<Envelope.Part, { readonly _tag: "Header" }> | undefined
        const blocks: Array<Uint8Array> = []
        for (const bytes of chunk) {
          const parts = reader.right.write(bytes)
          if (Either.isLeft(parts)) return Channel.fail(fileError(fileName, "InvalidSize", parts.left))
          for (const part of parts.right) {
            if (part._tag === "Header") header = part
            else blocks.push(part.bytes)
          }
        }
        if (header === undefined) return decipher === undefined ? loop : update(decipher, blocks)
        return Channel.flatMap(Channel.fromEffect(key.open(fileName, header.keySlot, header.iv)), (opened) => {
          decipher = opened
          return update(opened, blocks)
        })
      },
      onFailure: Channel.failCause,
      onDone: () => {
        const last = reader.right.end()
        if (Either.isLeft(last)) return Channel.fail(fileError(fileName, "InvalidSize", last.left))
        // A valid size means that the header was read, so the file was opened.
        return Channel.flatMap(
          Channel.fromEffect(decipher!.final(last.right)),
          (plain) => plain.length === 0 ? Channel.void : Channel.write(Chunk.of(plain))
        )
      }
    })
    return loop
  })

const defaultMaxBytes = 64 * 1024 * 1024

// The content as a plain array with a buffer of its own: a platform's output may be a view of a
// larger buffer (zlib's one-shot output is a view of its 64 KiB output chunk), which would keep
// that buffer alive, and show its other bytes, for as long as the content is held.
const ownArray = (bytes: Uint8Array): Uint8Array =>
  bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? new Uint8Array(bytes.buffer, 0, bytes.byteLength)
    : new Uint8Array(bytes)

// The parts in one array: the part itself when there is only one with bytes.
const concatenated = (parts: ReadonlyArray<Uint8Array>, tail: Uint8Array): Uint8Array => {
  const filled = [...parts, tail].filter((part) => part.length > 0)
  return filled.length === 1 ? filled[0]! : concat(...filled)
}

/**
 * Builds the service from a platform's `Implementation`. Each contract's key is prepared once
 * (on first use) and kept for as long as the contract's `privateKey` is the same value; a key
 * that cannot be prepared fails every time with `InvalidContractKey`. `decrypt` checks the
 * compression name and a declared size before it prepares the key, and reads no byte before the
 * stream runs.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (implementation: Implementation): Effect.Effect<Service> =>
  Effect.sync(() => {
    const keyFor = preparedPerContract(implementation.prepareKey)

    // What both ways of decrypting check before any byte: the compression's name, and a declared
    // size that cannot be an envelope's.
    const checked = (options: DecryptOptions): Either.Either<Compression, FileDecryptionError> => {
      const compression = compressionOf(options.compression)
      if (Option.isNone(compression)) {
        return Either.left(fileError(
          options.fileName,
          "UnsupportedCompression",
          `the compression ${JSON.stringify(options.compression)} is none of none, identity, gzip, brotli`
        ))
      }
      if (options.size !== undefined) {
        const declared = Envelope.make(options.size)
        if (Either.isLeft(declared)) return Either.left(fileError(options.fileName, "InvalidSize", declared.left))
      }
      return Either.right(compression.value)
    }

    const decrypt = (options: DecryptOptions) =>
    <E, R>(
      body: Stream.Stream<Uint8Array, E, R>
    ): Stream.Stream<Uint8Array, E | FileDecryptionError | InvalidContractKey, R> => {
      const { contract, fileName } = options
      const compression = checked(options)
      if (Either.isLeft(compression)) return Stream.fail(compression.left)
      const decompress = compression.right === "none"
        ? Either.right<Decompress>((plain) => plain)
        : implementation.decompressor(compression.right, fileName)
      if (Either.isLeft(decompress)) return Stream.fail(decompress.left)
      return decompress.right(
        Stream.pipeThroughChannel(body, decryptChannel<E>(keyFor(contract), fileName, options.size))
      ).pipe(
        Tracing.withStreamSpan("FileCipher.decrypt", {
          attributes: { "digime.contract_id": contract.contractId, "digime.compression": compression.right }
        })
      )
    }

    const decryptBytes = (options: DecryptBytesOptions) =>
    (
      body: Uint8Array
    ): Effect.Effect<Uint8Array, FileDecryptionError | InvalidContractKey | ContentTooLarge> => {
      const { contract, fileName } = options
      const maxBytes = options.maxBytes ?? defaultMaxBytes
      const compression = checked(options)
      if (Either.isLeft(compression)) return Effect.fail(compression.left)
      const decompress: Either.Either<DecompressBytes, FileDecryptionError> = compression.right === "none"
        ? Either.right((content, maxBytes) =>
          content.length > maxBytes
            ? Effect.fail(new ContentTooLarge({ fileName, limit: maxBytes }))
            : Effect.succeed(content)
        )
        : implementation.decompressBytes !== undefined
        ? Either.right(implementation.decompressBytes(compression.right, fileName))
        : Either.map(implementation.decompressor(compression.right, fileName), (decompress) => (content, maxBytes) =>
          Effect.catchTag(
            collectCapped(decompress(Stream.succeed(content)), maxBytes),
            "BodyTooLarge",
            () =>
              Effect.fail(new ContentTooLarge({ fileName, limit: maxBytes }))
          ))
      if (Either.isLeft(decompress)) {
        return Effect.fail(decompress.left)
      }
      const size = Envelope.sizeProblem(body.length) ??
        (options.size !== undefined && options.size !== body.length
          ? `the body is ${body.length} bytes, not its declared ${options.size}`
          : undefined)
      const end = body.length - Envelope.blockLength
      // The key first, as `decrypt` prepares it before it reads the body.
      return keyFor(contract).pipe(
        Effect.flatMap((key) =>
          size !== undefined
            ? Effect.fail(fileError(fileName, "InvalidSize", size))
            : key.open(
              fileName,
              body.slice(0, Envelope.keySlotLength),
              body.slice(Envelope.keySlotLength, Envelope.headerLength)
            )
        ),
        Effect.flatMap((decipher) => {
          const finish = (parts: ReadonlyArray<Uint8Array>) =>
            Effect.map(decipher.final(body.slice(end)), (tail) =>
              concatenated(parts, tail))
          if (end === Envelope.headerLength) return finish([])
          const blocks = [body.subarray(Envelope.headerLength, end)]
          return decipher.updateSync !== undefined
            ? finish(decipher.updateSync(blocks))
            : Effect.flatMap(decipher.update(blocks), finish)
        }),
        Effect.flatMap((content) => decompress.right(content, maxBytes)),
        Effect.map(ownArray),
        Tracing.withSpan("FileCipher.decryptBytes", {
          attributes: { "digime.contract_id": contract.contractId, "digime.compression": compression.right }
        })
      )
    }

    return {
      decrypt,
      decryptBytes,
      prepare: (contract) => Effect.asVoid(keyFor(contract))
    } satisfies Service
  })

/**
 * The file cipher on Web Crypto (`globalThis.crypto.subtle`) and `DecompressionStream`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeWebCrypto: Effect.Effect<Service> = make(webImplementation)

/**
 * The file cipher on Web Crypto (`globalThis.crypto.subtle`) and `DecompressionStream`: runs on
 * Node, Deno, Bun, workers and browsers. gzip everywhere; brotli only where `DecompressionStream`
 * supports it (not Node 20), otherwise `UnsupportedCompression`. On Node, `NodeFileCipher.layer`
 * from `@digime-effect/node` decompresses brotli and is faster.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerWebCrypto: Layer.Layer<FileCipher> = Layer.effect(FileCipher, makeWebCrypto)
