/**
 * 7. Decrypting files: `NodeFileCipher` (through `FileCipher.decrypt`, the body an Effect stream of
 * 64 KiB chunks, one per stream chunk as an HTTP body arrives) against raw `node:crypto` and
 * `node:zlib` written by hand on the same envelopes and chunks: the key parsed once, one
 * `privateDecrypt` (OAEP, SHA-1), a decipher fed chunk by chunk, and for gzip a `stream.pipeline`
 * through `createGunzip`. A small file (64 KiB of JSON lines) and a large one (4 MiB; 1 MiB with
 * `--quick`), plain and gzip.
 *
 * And the same files read whole (`FileCipher.decryptBytes`, as `DigimeClient.readFileBytes` and
 * `Files.readAll` decrypt a body of at most 4 MiB) against the same by hand on the whole body: one
 * decipher call, and for gzip `zlib.gunzip`. Target ≥ 0.9× raw: issue 13's "decryption throughput
 * against raw `node:crypto` on the same envelopes".
 *
 * A download's body reaches an Effect program as an Effect `Stream`, so the streamed path's target
 * is the same work written by hand on that stream (the decipher in `Stream.mapChunks`, gzip through
 * `NodeStream.pipeThroughDuplex`): ≥ 0.9× it. Its figure against raw `node:crypto` is context, and
 * so is what consuming the body's Effect stream costs with nothing done to it, which bounds any
 * `Stream` against code without Effect: at best raw / (raw + that). And `FileCipher.layerWebCrypto`
 * on the large files.
 */
import * as FileCipher from "@digime-effect/core/FileCipher"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Chunk, Effect, Redacted, Stream } from "effect"
import * as Crypto from "node:crypto"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { promisify } from "node:util"
import * as Zlib from "node:zlib"
import { NodeFileCipher } from "../src/index.js"
import { interleaved, type SectionOptions, testContract } from "./support.js"

const section = "7 file decryption"
const KiB = 1024
const MiB = 1024 * KiB
const chunkSize = 64 * KiB

/** `size` bytes of JSON lines, as digi.me's files are. */
const content = (size: number): Buffer => {
  const lines: Array<string> = []
  let length = 0
  for (let i = 0; length < size; i++) {
    const line = `{"id":"${i}","service":"instagram","createddate":${1_700_000_000_000 + i * 997},"likes":${
      (i * 7919) % 10_007
    }}\n`
    lines.push(line)
    length += line.length
  }
  return Buffer.from(lines.join("")).subarray(0, size)
}

const seal = (plain: Buffer, publicKey: Crypto.KeyObject): Buffer => {
  const dataKey = Crypto.randomBytes(32)
  const iv = Crypto.randomBytes(16)
  const keySlot = Crypto.publicEncrypt(
    { key: publicKey, padding: Crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" },
    dataKey
  )
  const cipher = Crypto.createCipheriv("aes-256-cbc", dataKey, iv)
  return Buffer.concat([keySlot, iv, cipher.update(plain), cipher.final()])
}

const chunksOf = (body: Buffer): ReadonlyArray<Buffer> => {
  const chunks: Array<Buffer> = []
  for (let offset = 0; offset < body.length; offset += chunkSize) chunks.push(body.subarray(offset, offset + chunkSize))
  return chunks
}

/** The body as an HTTP client hands it over: one chunk at a time. */
const bodyOf = (chunks: ReadonlyArray<Uint8Array>): Stream.Stream<Uint8Array> =>
  Stream.fromChunks(...chunks.map((chunk) => Chunk.of(chunk)))

type Compression = "none" | "gzip"

const gunzip = promisify(Zlib.gunzip)

export const run = async (options: Omit<SectionOptions, "pgUrl">) => {
  const contract = testContract.contract
  const privateKey = Crypto.createPrivateKey({ key: Redacted.value(contract.privateKey), format: "pem" })
  const publicKey = Crypto.createPublicKey(privateKey)
  const oaep = { key: privateKey, padding: Crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }

  // By hand: the first 64 KiB chunk holds the whole header.
  const rawDecipher = (chunks: ReadonlyArray<Buffer>) => {
    const first = chunks[0]!
    const dataKey = Crypto.privateDecrypt(oaep, first.subarray(0, 256))
    return Crypto.createDecipheriv("aes-256-cbc", dataKey, first.subarray(256, 272))
  }
  const ciphertextOf = (chunks: ReadonlyArray<Buffer>) => [chunks[0]!.subarray(272), ...chunks.slice(1)]
  const counter = () => {
    let length = 0
    return {
      add: (bytes: Uint8Array) => {
        length += bytes.length
      },
      get length() {
        return length
      }
    }
  }

  const raw = async (chunks: ReadonlyArray<Buffer>, compression: Compression): Promise<number> => {
    const decipher = rawDecipher(chunks)
    const out = counter()
    if (compression === "none") {
      for (const chunk of ciphertextOf(chunks)) out.add(decipher.update(chunk))
      out.add(decipher.final())
      return out.length
    }
    await pipeline(
      Readable.from(ciphertextOf(chunks)),
      decipher,
      Zlib.createGunzip(),
      new Writable({
        write: (bytes: Buffer, _encoding, callback) => {
          out.add(bytes)
          callback()
        }
      })
    )
    return out.length
  }

  const byHandOnEffect = (chunks: ReadonlyArray<Buffer>, compression: Compression): Promise<number> => {
    const out = counter()
    const plain = Stream.suspend(() => {
      const decipher = rawDecipher(chunks)
      return bodyOf(ciphertextOf(chunks)).pipe(
        Stream.mapChunks(Chunk.map((chunk) => decipher.update(chunk) as Uint8Array)),
        Stream.concat(Stream.sync(() => decipher.final() as Uint8Array))
      )
    })
    const decompressed = compression === "none"
      ? plain
      : NodeStream.pipeThroughDuplex(plain, () => Zlib.createGunzip(), (error) => error)
    return Effect.runPromise(
      Stream.runForEach(decompressed, (bytes) => Effect.sync(() => out.add(bytes))).pipe(Effect.map(() => out.length))
    )
  }

  // The body's Effect stream consumed with nothing done to it: what any `Stream` of it costs.
  const streamAlone = (chunks: ReadonlyArray<Buffer>): Promise<number> => {
    const out = counter()
    return Effect.runPromise(
      Stream.runForEach(bodyOf(chunks), (bytes) => Effect.sync(() => out.add(bytes))).pipe(
        Effect.map(() => out.length)
      )
    )
  }

  // By hand, a whole body in memory: one decipher call, and for gzip zlib's one-shot gunzip.
  const rawWhole = async (body: Buffer, compression: Compression): Promise<number> => {
    const dataKey = Crypto.privateDecrypt(oaep, body.subarray(0, 256))
    const decipher = Crypto.createDecipheriv("aes-256-cbc", dataKey, body.subarray(256, 272))
    const plain = Buffer.concat([decipher.update(body.subarray(272)), decipher.final()])
    return compression === "none" ? plain.length : (await gunzip(plain)).length
  }

  const nodeCipher = Effect.runSync(NodeFileCipher.make)
  const webCipher = Effect.runSync(FileCipher.makeWebCrypto)
  Effect.runSync(nodeCipher.prepare(contract))
  await Effect.runPromise(webCipher.prepare(contract))
  const library = (service: FileCipher.Service, chunks: ReadonlyArray<Buffer>, compression: Compression) => {
    const out = counter()
    return Effect.runPromise(
      service.decrypt({ contract, fileName: "bench.json", compression })(bodyOf(chunks)).pipe(
        Stream.runForEach((bytes) => Effect.sync(() => out.add(bytes))),
        Effect.map(() => out.length)
      )
    )
  }

  const libraryWhole = (body: Buffer, compression: Compression) =>
    Effect.runPromise(
      Effect.map(nodeCipher.decryptBytes({ contract, fileName: "bench.json", compression })(body), (bytes) =>
        bytes.length)
    )

  const large = options.quick ? { label: "1 MiB", size: MiB } : { label: "4 MiB", size: 4 * MiB }
  const files = [
    { name: "small file", label: "64 KiB", size: 64 * KiB, compression: "none" },
    { name: "large file", ...large, compression: "none" },
    { name: "small gzip file", label: "64 KiB", size: 64 * KiB, compression: "gzip" },
    { name: "large gzip file", ...large, compression: "gzip" }
  ] as const
  const prepared = files.map((file) => {
    const plain = content(file.size)
    const body = seal(file.compression === "gzip" ? Zlib.gzipSync(plain) : plain, publicKey)
    return { ...file, plain, body, chunks: chunksOf(body) }
  })

  // Each way must give the content back: a benchmark of a decryption that goes wrong measures nothing.
  for (const file of prepared) {
    const lengths = {
      raw: await raw(file.chunks, file.compression),
      byHandOnEffect: await byHandOnEffect(file.chunks, file.compression),
      node: await library(nodeCipher, file.chunks, file.compression),
      web: await library(webCipher, file.chunks, file.compression),
      rawWhole: await rawWhole(file.body, file.compression),
      nodeWhole: await libraryWhole(file.body, file.compression)
    }
    for (const [name, length] of Object.entries(lengths)) {
      if (length !== file.plain.length) {
        throw new Error(`decrypt: ${name} gave ${length} of the ${file.plain.length} bytes of the ${file.name}`)
      }
    }
    const decrypted = await Effect.runPromise(
      Stream.runCollect(
        nodeCipher.decrypt({ contract, fileName: "bench.json", compression: file.compression })(bodyOf(file.chunks))
      )
    )
    if (!Buffer.concat(Chunk.toReadonlyArray(decrypted)).equals(file.plain)) {
      throw new Error(`decrypt: NodeFileCipher changed the content of the ${file.name}`)
    }
    const whole = await Effect.runPromise(
      nodeCipher.decryptBytes({ contract, fileName: "bench.json", compression: file.compression })(file.body)
    )
    if (!Buffer.from(whole).equals(file.plain)) {
      throw new Error(`decrypt: NodeFileCipher.decryptBytes changed the content of the ${file.name}`)
    }
  }

  const settings = options.quick
    ? { rounds: 2, time: 100, warmupTime: 50 }
    : { rounds: 10, time: 400, warmupTime: 300 }
  for (const file of prepared) {
    const isLarge = file.name.startsWith("large")
    const names = {
      raw: `raw node:crypto + node:zlib (${file.name})`,
      node: `NodeFileCipher (${file.name})`,
      byHandOnEffect: `by hand on the Effect stream (${file.name})`,
      streamAlone: `the body's Effect stream alone (${file.name})`,
      web: `FileCipher.layerWebCrypto (${file.name})`,
      rawWhole: `raw node:crypto + node:zlib, whole body (${file.name})`,
      nodeWhole: `NodeFileCipher.decryptBytes (${file.name})`
    }
    const tasks: Record<string, () => Promise<number>> = {
      [names.raw]: () => raw(file.chunks, file.compression),
      [names.node]: () => library(nodeCipher, file.chunks, file.compression),
      [names.byHandOnEffect]: () => byHandOnEffect(file.chunks, file.compression),
      [names.streamAlone]: () => streamAlone(file.chunks),
      [names.rawWhole]: () => rawWhole(file.body, file.compression),
      [names.nodeWhole]: () => libraryWhole(file.body, file.compression)
    }
    if (isLarge) tasks[names.web] = () => library(webCipher, file.chunks, file.compression)
    const results = await interleaved(tasks, settings)
    // Envelope bytes per second, in MiB.
    const throughput = (name: string) => file.body.length / MiB / (results.p50(name) / 1_000)
    // A rate ratio is the inverse of the latency ratio.
    const rateRatio = (a: string, b: string) => 1 / results.ratio(a, b)
    const detailsOf = (...tasks: ReadonlyArray<string>) => ({
      rounds: results.rounds,
      envelopeBytes: file.body.length,
      contentBytes: file.plain.length,
      chunkBytes: chunkSize,
      samples: Object.fromEntries(tasks.map((name) => [name, results.samples(name)]))
    })
    const ratio = rateRatio(names.node, names.byHandOnEffect)
    options.report.record({
      section,
      name: `decryption throughput, ${file.name} streamed (${file.label}, NodeFileCipher)`,
      value: throughput(names.node),
      unit: "MiB/s",
      floor: throughput(names.byHandOnEffect),
      floorName: "MiB/s by hand on the body's Effect stream",
      ratio,
      target: "≥ 0.9× by hand",
      pass: ratio >= 0.9,
      details: detailsOf(names.node, names.byHandOnEffect)
    })
    // Context: the same against code without Effect, and the bound the body's stream sets on it.
    const rawMillis = results.p50(names.raw)
    const aloneMillis = results.p50(names.streamAlone)
    options.report.record({
      section,
      name: `${file.name} streamed, against raw node:crypto without Effect`,
      value: throughput(names.node),
      unit: "MiB/s",
      floor: throughput(names.raw),
      floorName: "MiB/s raw node:crypto + node:zlib",
      ratio: rateRatio(names.node, names.raw),
      details: {
        ...detailsOf(names.node, names.raw, names.streamAlone),
        // The body's Effect stream consumed with nothing done: no `Stream` does better than this.
        streamAloneMillis: aloneMillis,
        rawMillis,
        bestRatioOfAnyStream: rawMillis / (rawMillis + aloneMillis)
      }
    })
    options.report.record({
      section,
      name: `${file.name}: the body's Effect stream alone, against raw node:crypto's whole work`,
      value: aloneMillis,
      unit: "ms",
      floor: rawMillis,
      floorName: "ms raw node:crypto + node:zlib",
      ratio: aloneMillis / rawMillis,
      details: {
        ...detailsOf(names.streamAlone, names.raw),
        bestRatioOfAnyStream: rawMillis / (rawMillis + aloneMillis)
      }
    })
    const wholeRatio = rateRatio(names.nodeWhole, names.rawWhole)
    options.report.record({
      section,
      name: `decryption throughput, ${file.name} read whole (${file.label}, decryptBytes)`,
      value: throughput(names.nodeWhole),
      unit: "MiB/s",
      floor: throughput(names.rawWhole),
      floorName: "MiB/s raw node:crypto + node:zlib on the whole body",
      ratio: wholeRatio,
      target: "≥ 0.9× raw",
      pass: wholeRatio >= 0.9,
      details: detailsOf(names.nodeWhole, names.rawWhole)
    })
    if (isLarge) {
      options.report.record({
        section,
        name: `decryption throughput, ${file.name} (${file.label}, FileCipher.layerWebCrypto)`,
        value: throughput(names.web),
        unit: "MiB/s",
        floor: throughput(names.raw),
        floorName: "MiB/s raw node:crypto + node:zlib",
        ratio: rateRatio(names.web, names.raw),
        details: detailsOf(names.web, names.raw)
      })
    }
  }
}
