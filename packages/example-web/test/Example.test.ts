/**
 * The example backend over real HTTP, without a browser: the callback URL comes from configuration
 * whatever the request's Host says, the session cookie binds each authorization to the browser
 * that started it, the push form needs its session's CSRF token, and what digi.me sends is
 * rendered as text.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import * as NodeHttp from "node:http"
import * as App from "../src/App.js"
import * as Example from "../src/Example.js"

interface Answer {
  readonly status: number
  readonly location: string | undefined
  readonly setCookie: ReadonlyArray<string>
  readonly text: string
}

/** One request through node:http, which (unlike fetch) sends the `Host` header it is given. */
const request = (url: string, headers: Record<string, string> = {}, form?: Record<string, string>) =>
  Effect.async<Answer, Error>((resume) => {
    const body = form === undefined ? undefined : new URLSearchParams(form).toString()
    const outgoing = NodeHttp.request(url, {
      headers: body === undefined ? headers : { ...headers, "content-type": "application/x-www-form-urlencoded" },
      method: body === undefined ? "GET" : "POST",
      timeout: 5_000
    }, (response) => {
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
    outgoing.end(body)
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

/** A browser that connected: its session cookie. */
const connected = (running: Example.Running) =>
  Effect.gen(function*() {
    const { cookie, onboardingUrl } = yield* connect(running)
    const completed = yield* request(yield* allow(running, onboardingUrl), { cookie: cookie! })
    assert.strictEqual(completed.status, 303, completed.text)
    return cookie!
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

  it.scopedLive("the push form needs the session's CSRF token and a note of 1 to 280 characters; nothing is pushed otherwise", () =>
    Effect.gen(function*() {
      const running = yield* Example.start()
      const cookie = yield* connected(running)
      const accounts = yield* request(`${running.appUrl}/accounts`, { cookie })
      assert.strictEqual(accounts.status, 200)
      const csrf = /name="csrf" value="([\w-]{43})"/.exec(accounts.text)?.[1]
      assert.isDefined(csrf)
      const push = (headers: Record<string, string>, form: Record<string, string>) =>
        request(`${running.appUrl}/files/push`, headers, form)

      // Without a session: back home. Without the token, or another one: refused.
      const noSession = yield* push({}, { csrf: csrf!, note: "hi" })
      assert.strictEqual(noSession.status, 303)
      assert.strictEqual(noSession.location, "/")
      for (const form of [{ note: "hi" }, { csrf: "x".repeat(43), note: "hi" }, { csrf: "", note: "hi" }]) {
        const refused = yield* push({ cookie }, form)
        assert.strictEqual(refused.status, 403, JSON.stringify(form))
        assert.include(refused.text, `data-reason="InvalidForm"`)
      }
      // Another browser's token does not do either.
      const other = yield* connected(running)
      const otherCsrf = /name="csrf" value="([\w-]{43})"/.exec(
        (yield* request(`${running.appUrl}/accounts`, { cookie: other })).text
      )?.[1]
      assert.notStrictEqual(otherCsrf, csrf)
      assert.strictEqual((yield* push({ cookie }, { csrf: otherCsrf!, note: "hi" })).status, 403)
      for (const note of ["", "   ", "x".repeat(App.maxNoteLength + 1)]) {
        const invalid = yield* push({ cookie }, { csrf: csrf!, note })
        assert.strictEqual(invalid.status, 400)
        assert.include(invalid.text, `data-reason="InvalidNote"`)
      }
      const before = yield* running.digime.simulator.stats
      assert.strictEqual(before.requests.push, 0)
      assert.strictEqual(before.requests.authorize, 2) // the two Connects, no write consent started

      // The right token: the write contract's consent first, then the push.
      const started = yield* push({ cookie }, { csrf: csrf!, note: "  a note  " })
      assert.strictEqual(started.status, 303)
      assert.isTrue(started.location!.startsWith(running.digime.onboardUrl))
      const pushedAfterConsent = yield* request(yield* allow(running, started.location!), { cookie })
      assert.strictEqual(pushedAfterConsent.status, 303, pushedAfterConsent.text)
      assert.strictEqual(pushedAfterConsent.location, "/accounts#files")
      const [pushed] = yield* running.digime.simulator.pushed
      assert.strictEqual(pushed?.contractId, Example.writeContractId)
      assert.strictEqual(JSON.parse(new TextDecoder().decode(pushed!.body)).note, "a note")
      // Shown once.
      assert.include((yield* request(`${running.appUrl}/accounts`, { cookie })).text, `id="pushed"`)
      assert.notInclude((yield* request(`${running.appUrl}/accounts`, { cookie })).text, `id="pushed"`)
    }))

  it.scopedLive("file names and contents from digi.me are escaped; an unknown file is a 404", () =>
    Effect.gen(function*() {
      const name = `<img src=x onerror=alert(1)>"'.json`
      const running = yield* Example.start({
        libraryFiles: [{ name, content: `{"text":"</pre><script>alert(2)</script>"}`, compression: "gzip" }]
      })
      const cookie = yield* connected(running)
      const accounts = yield* request(`${running.appUrl}/accounts`, { cookie })
      assert.strictEqual(accounts.status, 200)
      assert.notInclude(accounts.text, "<img")
      assert.include(accounts.text, "&#60;img src=x onerror=alert(1)&#62;&#34;&#39;.json")
      assert.include(accounts.text, `href="/file?name=${encodeURIComponent(name).replace(/'/g, "&#39;")}"`)

      const file = yield* request(`${running.appUrl}/file?name=${encodeURIComponent(name)}`, { cookie })
      assert.strictEqual(file.status, 200, file.text)
      assert.notInclude(file.text, "<img")
      assert.notInclude(file.text, "<script>")
      assert.include(file.text, "&#60;/pre&#62;&#60;script&#62;alert(2)&#60;/script&#62;")
      assert.include(file.text, `<dd id="file-compression">gzip</dd>`)

      const missing = yield* request(`${running.appUrl}/file?name=${encodeURIComponent("<b>none</b>")}`, { cookie })
      assert.strictEqual(missing.status, 404)
      assert.include(missing.text, `data-reason="FileNotFound"`)
      assert.notInclude(missing.text, "<b>")
      // Without a session, no file is read.
      const anonymous = yield* request(`${running.appUrl}/file?name=${encodeURIComponent(name)}`)
      assert.strictEqual(anonymous.status, 303)
      assert.strictEqual(anonymous.location, "/")
    }))
})
