/**
 * The README's quick start is `examples/quickstart.ts`, line for line, and it completes a whole
 * authorization in one process: run as a real process against a simulated digi.me over HTTP,
 * configured from the environment as the README says (the private key with escaped line breaks,
 * as a `.env` file holds it).
 */
import { TestContract } from "@digime-effect/core/testing"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Redacted, Scope } from "effect"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { NodeDigimeSimulator } from "../src/testing/index.js"

const packageDir = fileURLToPath(new URL("..", import.meta.url))
const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8")
const example = readFileSync(new URL("../examples/quickstart.ts", import.meta.url), "utf8")

// The first ```ts block after `## Quick start`.
const quickStartBlock = (): string => {
  const section = readme.slice(readme.indexOf("\n## Quick start"))
  const start = section.indexOf("```ts\n") + "```ts\n".length
  return section.slice(start, section.indexOf("\n```", start) + 1)
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject())
    })
  })

describe("quick start", () => {
  it("the README's quick start is examples/quickstart.ts, line for line", () => {
    assert.strictEqual(quickStartBlock(), example)
  })

  it(
    "connect → consent → callback → accounts in one process; a user without a token is sent to authorize",
    async () => {
      const scope = Effect.runSync(Scope.make())
      const contract = await Effect.runPromise(TestContract.make("quickstart-contract"))
      const port = await freePort()
      let output = ""
      try {
        const digime = await Effect.runPromise(Scope.extend(
          NodeDigimeSimulator.make({
            applicationId: "quickstart-app",
            contracts: [{ contractId: "quickstart-contract", publicKeyPem: contract.publicKeyPem }]
          }),
          scope
        ))
        const child = spawn(process.execPath, ["--import", "tsx", "examples/quickstart.ts"], {
          cwd: packageDir,
          env: {
            ...process.env,
            PORT: String(port),
            DIGIME_APPLICATION_ID: "quickstart-app",
            DIGIME_CONTRACT_ID: "quickstart-contract",
            // As a .env file holds it: one line, with "\n" for each line break.
            DIGIME_PRIVATE_KEY: Redacted.value(contract.contract.privateKey).trim().split("\n").join("\\n"),
            DIGIME_BASE_URL: digime.baseUrl,
            DIGIME_ONBOARD_URL: digime.onboardUrl
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        Scope.addFinalizer(scope, Effect.sync(() => child.kill("SIGTERM"))).pipe(Effect.runSync)
        child.stdout.on("data", (chunk) => (output += String(chunk)))
        child.stderr.on("data", (chunk) => (output += String(chunk)))
        for (let waited = 0; !output.includes("Listening on"); waited += 50) {
          if (waited > 30_000 || child.exitCode !== null) assert.fail(`the quick start did not start:\n${output}`)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        const app = `http://127.0.0.1:${port}`

        // 1. /connect redirects to digi.me's consent.
        const connect = await fetch(`${app}/connect?user=alice`, { redirect: "manual" })
        assert.strictEqual(connect.status, 302)
        const consentUrl = connect.headers.get("location")!
        assert.isTrue(consentUrl.startsWith(digime.onboardUrl))
        // 2. The user allows; digi.me sends the browser to the callback, which stores the token.
        const callbackUrl = await Effect.runPromise(digime.simulator.consent(consentUrl))
        assert.isTrue(callbackUrl.startsWith(`http://127.0.0.1:${port}/callback?`))
        const callback = await fetch(callbackUrl, { redirect: "manual" })
        assert.strictEqual(callback.status, 302, output)
        assert.strictEqual(callback.headers.get("location"), "/accounts?user=alice")
        // 3. The accounts, read with the stored token.
        const accounts = await fetch(`${app}/accounts?user=alice`)
        assert.strictEqual(accounts.status, 200, output)
        const list = await accounts.json() as ReadonlyArray<{ readonly id: string }>
        assert.isAbove(list.length, 0)
        // Nothing stored for bob: nextStep starts an authorization, and he is sent to digi.me.
        const bob = await fetch(`${app}/accounts?user=bob`, { redirect: "manual" })
        assert.strictEqual(bob.status, 302)
        assert.isTrue(bob.headers.get("location")!.startsWith(digime.onboardUrl))
        const stats = await Effect.runPromise(digime.simulator.stats)
        assert.strictEqual(stats.exchanges, 1)
      } finally {
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    },
    60_000
  )
})
