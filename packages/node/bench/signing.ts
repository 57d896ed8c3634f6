/**
 * 4. Signing client assertions: `NodeSigner` (through `Signer.sign`, an Effect run per assertion)
 * against raw `node:crypto` doing the same work with a key parsed once (the JWS built from the same
 * claims, one RSASSA-PSS SHA-512 signature, base64url). Target ≥ 0.9× the raw rate. For context:
 * the same signature with the PEM parsed on every call (what a signer that keeps no key object
 * pays), and the Web Crypto signer of `@digime-effect/core` against raw `crypto.subtle.sign`.
 */
import { Signer } from "@digime-effect/core"
import { Effect, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { NodeSigner } from "../src/index.js"
import { applicationId, contractId, interleaved, type SectionOptions, testContract } from "./support.js"

const section = "4 signing"

// The claims of a refresh, the call that signs the most: 32-character nonce, millisecond timestamp.
const claims = {
  client_id: `${applicationId}_${contractId}`,
  nonce: "Zr8kQ2vN0aXbT5mLwY7cE3hJ9uP1sGdF",
  timestamp: 1_764_000_000_000,
  grant_type: "refresh_token",
  refresh_token: "c2ltdWxhdGVkLXJlZnJlc2gtdG9rZW4tdmFsdWUtNDM"
}

const base64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64url")
const header = base64url(JSON.stringify({ alg: "PS512", typ: "JWT" }))

export const run = async (options: Omit<SectionOptions, "pgUrl">) => {
  const contract = testContract.contract
  const pem = Redacted.value(contract.privateKey)
  const keyObject = Crypto.createPrivateKey({ key: pem, format: "pem" })
  const pss = { padding: Crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: Crypto.constants.RSA_PSS_SALTLEN_DIGEST }
  const rawSign = (key: Crypto.KeyObject | string) => {
    const input = `${header}.${base64url(JSON.stringify(claims))}`
    const options = typeof key === "string" ? { key, format: "pem" as const, ...pss } : { key, ...pss }
    return `${input}.${base64url(Crypto.sign("sha512", Buffer.from(input), options))}`
  }

  const nodeSigner = Effect.runSync(NodeSigner.make)
  const webSigner = await Effect.runPromise(Effect.provide(Signer.Signer, Signer.layerWebCrypto))
  const pkcs8 = keyObject.export({ type: "pkcs8", format: "der" })
  const cryptoKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "RSA-PSS", hash: "SHA-512" }, false, ["sign"])
  // Every key is prepared before anything is timed.
  Effect.runSync(nodeSigner.prepare(contract))
  await Effect.runPromise(webSigner.prepare(contract))

  // Each signature must verify: a benchmark of a signer that signs wrongly measures nothing.
  const publicKey = Crypto.createPublicKey(keyObject)
  const verifies = (jws: string) => {
    const [h, p, s] = jws.split(".")
    const options = { key: publicKey, ...pss, saltLength: 64 }
    return Crypto.verify("sha512", Buffer.from(`${h}.${p}`), options, Buffer.from(s!, "base64url"))
  }
  const samples = {
    raw: rawSign(keyObject),
    nodeSigner: Redacted.value(Effect.runSync(nodeSigner.sign(contract, claims))),
    webSigner: Redacted.value(await Effect.runPromise(webSigner.sign(contract, claims)))
  }
  for (const [name, jws] of Object.entries(samples)) {
    if (!verifies(jws)) throw new Error(`signing: the ${name} signature does not verify`)
  }

  const names = {
    raw: "raw node:crypto, key parsed once",
    node: "NodeSigner",
    perCallPem: "node:crypto, PEM parsed per call",
    rawWeb: "raw crypto.subtle.sign, key imported once",
    web: "Signer.layerWebCrypto"
  }
  const results = await interleaved({
    [names.raw]: () => rawSign(keyObject),
    [names.node]: () => Effect.runSync(nodeSigner.sign(contract, claims)),
    [names.perCallPem]: () => rawSign(pem),
    [names.rawWeb]: async () => {
      const input = `${header}.${base64url(JSON.stringify(claims))}`
      const signature = await crypto.subtle.sign({ name: "RSA-PSS", saltLength: 64 }, cryptoKey, Buffer.from(input))
      return `${input}.${base64url(new Uint8Array(signature))}`
    },
    [names.web]: () => Effect.runPromise(webSigner.sign(contract, claims))
  }, { rounds: options.quick ? 2 : 10, time: options.quick ? 100 : 300, warmupTime: options.quick ? 50 : 500 })
  const perSecond = (name: string) => 1_000 / results.p50(name)
  // A rate ratio is the inverse of the latency ratio.
  const rateRatio = (a: string, b: string) => 1 / results.ratio(a, b)
  const detailsOf = (...tasks: ReadonlyArray<string>) => ({
    rounds: results.rounds,
    samples: Object.fromEntries(tasks.map((name) => [name, results.samples(name)]))
  })

  options.report.record({
    section,
    name: "client assertions per second (NodeSigner)",
    value: perSecond(names.node),
    unit: "/s",
    floor: perSecond(names.raw),
    floorName: "/s raw node:crypto",
    ratio: rateRatio(names.node, names.raw),
    target: "≥ 0.9× raw node:crypto",
    pass: rateRatio(names.node, names.raw) >= 0.9,
    details: detailsOf(names.node, names.raw)
  })
  options.report.record({
    section,
    name: "node:crypto with the PEM parsed on every call",
    value: perSecond(names.perCallPem),
    unit: "/s",
    floor: perSecond(names.raw),
    floorName: "/s key parsed once",
    ratio: rateRatio(names.perCallPem, names.raw),
    details: detailsOf(names.perCallPem, names.raw)
  })
  options.report.record({
    section,
    name: "client assertions per second (Signer.layerWebCrypto)",
    value: perSecond(names.web),
    unit: "/s",
    floor: perSecond(names.rawWeb),
    floorName: "/s raw crypto.subtle.sign",
    ratio: rateRatio(names.web, names.rawWeb),
    details: detailsOf(names.web, names.rawWeb)
  })
}
