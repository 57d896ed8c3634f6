/**
 * The example backend over real HTTP, without a browser: the callback URL comes from configuration
 * whatever the request's Host says, and the session cookie binds each authorization to the browser
 * that started it.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import * as NodeHttp from "node:http"
import * as Example from "../src/Example.js"

interface Answer {
  readonly status: number
  readonly location: string | undefined
  readonly setCookie: ReadonlyArray<string>
  readonly text: string
}

/** One request through node:http, which (unlike fetch) sends the `Host` header it is given. */
const request = (url: string, headers: Record<string, string> = {}) =>
  Effect.async<Answer, Error>((resume) => {
    const outgoing = NodeHttp.request(url, { headers, timeout: 5_000 }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk) => (text += chunk))
      response.on("end", () =>
        resume(Effect.succeed({
          status: response.statusCode!,
          location: response.headers.location,
          setCookie: response.headers["set-cookie"] ?? [],
          text
        })))
    })
    outgoing.on("error", (error) => resume(Effect.fail(error)))
    outgoing.on("timeout", () => outgoing.destroy(new Error("timed out")))
    outgoing.end()
    return Effect.sync(() => outgoing.destroy())
  })

/** Clicks Allow on the simulator's consent page: the callback URL digi.me sends the browser to. */
const allow = (running: Example.Running, onboardingUrl: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${running.digime.onboardUrl}consent`, {
      method: "POST",
      redirect: "manual",
      body: new URLSearchParams({ url: onboardingUrl, choice: "allow" })
    })
    await response.text()
    assert.strictEqual(response.status, 303)
    return response.headers.get("location")!
  })

/** `GET /connect`: the onboarding URL and the session cookie (`name=value`) it set, if any. */
const connect = (running: Example.Running, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const answer = yield* request(`${running.appUrl}/connect`, headers)
    assert.strictEqual(answer.status, 303, answer.text)
    return { onboardingUrl: answer.location!, setCookie: answer.setCookie, cookie: answer.setCookie[0]?.split(";")[0] }
  })

const redirectUriOf = (running: Example.Running, onboardingUrl: string) =>
  Effect.map(running.digime.simulator.describeConsent(onboardingUrl), (consent) => consent.redirectUri)

describe("example-web over HTTP", () => {
  it.scopedLive("a forged Host header does not change the callback URL given to digi.me", () =>
    Effect.gen(function*() {
      const running = yield* Example.start()
      const port = new URL(running.appUrl).port
      assert.strictEqual(running.callbackUrl, `http://127.0.0.1:${port}/callback`)
      for (const host of ["evil.example", `evil.example:${port}`, `localhost:${port}`]) {
        const { onboardingUrl } = yield* connect(running, { host })
        assert.strictEqual(yield* redirectUriOf(running, onboardingUrl), running.callbackUrl, host)
      }
    }))

  it.scopedLive("EXAMPLE_CALLBACK_URL sets the callback URL and route; on https the cookie is Secure, __Host-", () =>
    Effect.gen(function*() {
      const callbackUrl = yield* Example.callbackUrlConfig.pipe(
        Effect.withConfigProvider(
          ConfigProvider.fromMap(new Map([["EXAMPLE_CALLBACK_URL", "https://app.example/digime/back"]]))
        )
      )
      const running = yield* Example.start({ callbackUrl })
      assert.strictEqual(running.callbackUrl, "https://app.example/digime/back")
      const { onboardingUrl, setCookie } = yield* connect(running, { host: "evil.example" })
      assert.strictEqual(yield* redirectUriOf(running, onboardingUrl), "https://app.example/digime/back")
      assert.strictEqual(setCookie.length, 1)
      const [pair, ...attributes] = setCookie[0]!.split("; ")
      assert.match(pair!, /^__Host-session=[\w-]{43}$/)
      assert.sameMembers(attributes.map((attribute) => attribute.toLowerCase()), [
        "path=/",
        "httponly",
        "secure",
        "samesite=lax"
      ])
      // The configured path is the callback route.
      assert.strictEqual((yield* request(`${running.appUrl}/digime/back?state=x`)).status, 403)
      assert.strictEqual((yield* request(`${running.appUrl}/callback?state=x`)).status, 404)

      const unset = yield* Example.callbackUrlConfig.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
      )
      assert.isUndefined(unset)
      const bad = yield* Effect.flip(Example.start({ callbackUrl: "javascript:alert(1)" }))
      assert.strictEqual((bad as Example.InvalidCallbackUrl)._tag, "InvalidCallbackUrl")
    }))

  it.scopedLive("on http the session cookie is HttpOnly, SameSite=Lax, Path=/, and set once per browser", () =>
    Effect.gen(function*() {
      const running = yield* Example.start()
      const first = yield* connect(running)
      assert.strictEqual(first.setCookie.length, 1)
      const [pair, ...attributes] = first.setCookie[0]!.split("; ")
      assert.match(pair!, /^session=[\w-]{43}$/)
      assert.sameMembers(attributes.map((attribute) => attribute.toLowerCase()), ["path=/", "httponly", "samesite=lax"])
      // The same browser connecting again keeps its session; another one gets another.
      const again = yield* connect(running, { cookie: first.cookie! })
      assert.deepStrictEqual(again.setCookie, [])
      const other = yield* connect(running)
      assert.notStrictEqual(other.cookie, first.cookie)
    }))

  it.scopedLive("a callback without the session → 403 and its state spent; with another session → 403", () =>
    Effect.gen(function*() {
      const running = yield* Example.start()
      const alice = yield* connect(running)
      const forwarded = yield* allow(running, alice.onboardingUrl)
      assert.isTrue(forwarded.startsWith(running.callbackUrl))

      // Someone else's browser, without a session, comes back with Alice's state and its own code.
      const noSession = yield* request(forwarded)
      assert.strictEqual(noSession.status, 403)
      assert.include(noSession.text, `data-reason="NoSession"`)
      assert.notInclude(noSession.text, new URL(forwarded).searchParams.get("state")!)
      // The state is spent: not even Alice's browser can complete that consent now.
      const late = yield* request(forwarded, { cookie: alice.cookie! })
      assert.strictEqual(late.status, 400)
      assert.include(late.text, `data-reason="ReusedState"`)

      // A browser with a session of its own: the authorization was started for another user.
      const bob = yield* connect(running)
      const second = yield* connect(running, { cookie: alice.cookie! })
      const otherSession = yield* request(yield* allow(running, second.onboardingUrl), { cookie: bob.cookie! })
      assert.strictEqual(otherSession.status, 403)
      assert.include(otherSession.text, `data-reason="UnexpectedKey"`)

      const stats = yield* running.digime.simulator.stats
      assert.strictEqual(stats.exchanges, 0)
      for (const cookie of [alice.cookie!, bob.cookie!]) {
        assert.include((yield* request(`${running.appUrl}/`, { cookie })).text, "Not connected")
      }

      // Alice's own browser still completes her own authorization.
      const own = yield* connect(running, { cookie: alice.cookie! })
      const completed = yield* request(yield* allow(running, own.onboardingUrl), { cookie: alice.cookie! })
      assert.strictEqual(completed.status, 303)
      assert.strictEqual(completed.location, "/accounts")
      assert.strictEqual((yield* running.digime.simulator.stats).exchanges, 1)
      assert.include((yield* request(`${running.appUrl}/`, { cookie: alice.cookie! })).text, "Connected.")
      assert.include((yield* request(`${running.appUrl}/`, { cookie: bob.cookie! })).text, "Not connected")
    }))
})
