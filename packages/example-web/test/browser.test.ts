/**
 * End to end in a real browser: headless Chromium (Debian's, driven by playwright-core) against the
 * example backend and the simulated digi.me over real HTTP. Connect, approve on the consent page,
 * see the accounts; wait out the access token and see a silent refresh; wait out the refresh token
 * and see the reconnect path work. Then a consent link forwarded to other browsers (one without a
 * session, one with its own) completes nothing. Then the user's files: listed, one opened, and a
 * note pushed through the write contract's consent, then listed too. A screenshot of each step goes
 * to test-artifacts/.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import type { Browser, Page, Response } from "playwright-core"
import { inject } from "vitest"
import * as Example from "../src/Example.js"

const artifacts = fileURLToPath(new URL("../test-artifacts/", import.meta.url))
const executablePath = inject("chromium")
const missing = inject("chromiumMissing")

const shot = (page: Page, name: string) => page.screenshot({ path: `${artifacts}${name}.png`, fullPage: true })

/** Waits (real time) until the instant held by the element's data-at has passed. */
const waitPast = async (page: Page, selector: string) => {
  const at = Number(await page.getAttribute(selector, "data-at"))
  const wait = at - Date.now() + 150
  if (wait > 0) await page.waitForTimeout(wait)
}

const launch = () =>
  chromium.launch({
    executablePath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync"
    ]
  })

/** The `data-name` of each file listed on the user's page. */
const listedNames = (page: Page) =>
  page.locator("#file-list .file").evaluateAll((items) => items.map((item) => item.getAttribute("data-name") ?? ""))

/** Clicks Allow and returns the answer of the app's callback the browser is sent to. */
const allowAndCallback = (page: Page, callbackUrl: string): Promise<Response> =>
  Promise.all([
    page.waitForResponse((response) => response.url().startsWith(`${callbackUrl}?`)),
    page.click("#allow")
  ]).then(([response]) => response)

const suite = executablePath === "" ? describe.skip : describe

suite("example-web in Chromium", () => {
  it("connect, silent refresh, reconnect", async () => {
    mkdirSync(artifacts, { recursive: true })
    const scope = Effect.runSync(Scope.make())
    let browser: Browser | undefined
    try {
      const running = await Effect.runPromise(
        Scope.extend(
          Example.start({ accessTokenLifetime: Duration.seconds(3), refreshTokenLifetime: Duration.seconds(9) }),
          scope
        )
      )
      browser = await launch()
      const page = await browser.newPage()

      // 1. home: not connected
      await page.goto(`${running.appUrl}/`)
      assert.include(await page.textContent("#status"), "Not connected")
      await shot(page, "01-home")

      // 2. Connect → the simulator's consent page
      await page.click("#connect")
      await page.waitForSelector("#allow")
      assert.include(await page.textContent("#prompt"), "digime-effect example asks to read your data")
      assert.isTrue(page.url().startsWith(running.digime.onboardUrl))
      // The session that binds this authorization to this browser.
      const cookies = await page.context().cookies(running.appUrl)
      assert.strictEqual(cookies.length, 1)
      assert.include(cookies[0], { name: "session", path: "/", httpOnly: true, secure: false, sameSite: "Lax" })
      await shot(page, "02-consent")

      // 3. Allow → back on the app, accounts listed
      await page.click("#allow")
      await page.waitForSelector("#account-list")
      assert.isTrue(page.url().startsWith(`${running.appUrl}/accounts`))
      assert.isAtLeast(await page.locator(".account").count(), 1)
      assert.strictEqual(await page.textContent("#refresh-count"), "0")
      await shot(page, "03-accounts")

      // 4. the access token expires: the next read refreshes silently
      await waitPast(page, "#access-expiry")
      await page.click("#reload")
      await page.waitForSelector("#account-list")
      assert.strictEqual(await page.textContent("#refresh-count"), "1")
      assert.strictEqual((await Effect.runPromise(running.digime.simulator.stats)).refreshes, 1)
      await shot(page, "04-silent-refresh")

      // 5. the refresh token expires: the app offers to reconnect
      await waitPast(page, "#refresh-expiry")
      await page.click("#reload")
      await page.waitForSelector("#reconnect")
      assert.strictEqual(await page.getAttribute("#error", "data-tag"), "RefreshTokenExpired")
      await shot(page, "05-reconnect")

      // 5b. the operator's page, in another tab: the user needs to reconnect; the events so far
      const operator = await browser.newPage()
      await operator.goto(`${running.appUrl}/operator`)
      assert.strictEqual(await operator.textContent("#count-reconnect"), "1")
      assert.strictEqual(await operator.textContent("#count-healthy"), "0")
      assert.strictEqual(await operator.textContent("#count-due"), "0")
      const tags = await operator.locator("#events .event").evaluateAll((items) =>
        items.map((item) => item.getAttribute("data-tag") ?? "")
      )
      // Newest first: the refusal by the Clock; upkeep's warning for the refreshed token (the
      // example's refresh tokens do not slide: it expires when the first one did); the refresh;
      // upkeep's warning for the first token; the first token.
      assert.deepStrictEqual(tags, [
        "ReauthorizationRequired",
        "RefreshTokenExpiring",
        "Refreshed",
        "RefreshTokenExpiring",
        "Stored"
      ])
      const bars = await operator.locator("#refresh-chart .bar").evaluateAll((items) =>
        items.map((item) => Number(item.getAttribute("data-count")))
      )
      assert.strictEqual(bars.length, 30)
      assert.strictEqual(bars.reduce((sum, n) => sum + n, 0), 1)
      await shot(operator, "05b-operator")

      // 6. Reconnect → a reauthorization consent page → Allow → accounts again
      await page.click("#reconnect")
      await page.waitForSelector("#allow")
      assert.include(page.url(), "/user-reauth?code=")
      await shot(page, "06-reauthorize")
      await page.click("#allow")
      await page.waitForSelector("#account-list")
      assert.isAtLeast(await page.locator(".account").count(), 1)
      await shot(page, "07-reconnected")

      // 7b. the operator's page again: nobody needs to reconnect any more
      await operator.goto(`${running.appUrl}/operator`)
      assert.strictEqual(await operator.textContent("#count-reconnect"), "0")
      assert.strictEqual(
        Number(await operator.textContent("#count-healthy")) + Number(await operator.textContent("#count-due")),
        1
      )
      const later = await operator.locator("#events .event").evaluateAll((items) =>
        items.map((item) => item.getAttribute("data-tag") ?? "")
      )
      // The reauthorization's token, stored after the refusal (and perhaps warned of since).
      assert.isBelow(later.indexOf("Stored"), later.indexOf("ReauthorizationRequired"))

      const stats = await Effect.runPromise(running.digime.simulator.stats)
      assert.strictEqual(stats.exchanges, 2)
      assert.strictEqual(stats.replays, 0)
      assert.strictEqual(stats.requests.reference, 1)
    } finally {
      await browser?.close()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 120_000)

  it("a consent link forwarded to another browser completes nothing", async () => {
    mkdirSync(artifacts, { recursive: true })
    const scope = Effect.runSync(Scope.make())
    let browser: Browser | undefined
    try {
      const running = await Effect.runPromise(Scope.extend(Example.start(), scope))
      browser = await launch()
      const alice = await (await browser.newContext()).newPage()
      const stranger = await (await browser.newContext()).newPage()
      const bob = await (await browser.newContext()).newPage()

      // 1. Alice starts Connect and sends the consent page's link to someone else.
      await alice.goto(`${running.appUrl}/`)
      await alice.click("#connect")
      await alice.waitForSelector("#allow")
      const forwarded = alice.url()

      // 2. A browser with no session here consents: the callback is refused, nothing exchanged.
      await stranger.goto(forwarded)
      const refused = await allowAndCallback(stranger, running.callbackUrl)
      assert.strictEqual(refused.status(), 403)
      assert.strictEqual(await stranger.getAttribute("#error", "data-reason"), "NoSession")
      await shot(stranger, "08-forwarded-no-session")

      // 3. Bob, with a session of his own, consents on a second link of Alice's: refused too.
      await bob.goto(`${running.appUrl}/`)
      await bob.click("#connect")
      await bob.waitForSelector("#allow")
      await alice.goto(`${running.appUrl}/connect`)
      await alice.waitForSelector("#allow")
      await bob.goto(alice.url())
      const unexpected = await allowAndCallback(bob, running.callbackUrl)
      assert.strictEqual(unexpected.status(), 403)
      assert.strictEqual(await bob.getAttribute("#error", "data-reason"), "UnexpectedKey")
      await shot(bob, "09-forwarded-other-session")

      // Nothing was stored: no code was exchanged, and neither Alice nor Bob is connected.
      assert.strictEqual((await Effect.runPromise(running.digime.simulator.stats)).exchanges, 0)
      for (const page of [alice, bob]) {
        await page.goto(`${running.appUrl}/`)
        assert.include(await page.textContent("#status"), "Not connected")
      }

      // 4. Alice's own browser still connects.
      await alice.click("#connect")
      await alice.waitForSelector("#allow")
      await alice.click("#allow")
      await alice.waitForSelector("#account-list")
      assert.strictEqual((await Effect.runPromise(running.digime.simulator.stats)).exchanges, 1)
      await bob.goto(`${running.appUrl}/`)
      assert.include(await bob.textContent("#status"), "Not connected")
    } finally {
      await browser?.close()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 120_000)
})

suite("example-web in Chromium: files", () => {
  it("lists the files, shows one, pushes a note through the write contract's consent", async () => {
    mkdirSync(artifacts, { recursive: true })
    const scope = Effect.runSync(Scope.make())
    let browser: Browser | undefined
    try {
      const running = await Effect.runPromise(Scope.extend(Example.start(), scope))
      const simulator = running.digime.simulator
      browser = await launch()
      const page = await browser.newPage()

      // 1. Connect → Allow → the user's page lists the files seeded into their library
      await page.goto(`${running.appUrl}/`)
      await page.click("#connect")
      await page.waitForSelector("#allow")
      await page.click("#allow")
      await page.waitForSelector("#file-list")
      assert.isTrue(page.url().startsWith(`${running.appUrl}/accounts`))
      assert.sameMembers(await listedNames(page), Example.libraryFiles.map((file) => file.name))
      assert.strictEqual(await page.getAttribute("#sync-status", "data-state"), "completed")
      assert.include(await page.textContent(`.file[data-name="steps.json"] .file-meta`), "gzip inside")
      assert.include(await page.textContent("#write-status"), "asks your consent")
      await shot(page, "10-files")

      // 2. A file's page: its decrypted content, markup shown as text
      await page.click(`.file[data-name="posts.json"] a`)
      await page.waitForSelector("#file-content")
      assert.strictEqual(new URL(page.url()).pathname, "/file")
      const posts = await page.textContent("#file-content")
      assert.include(posts, "Hello from a simulated social network")
      assert.include(posts, "<em>not emphasised</em> & <script>alert(1)</script>")
      assert.strictEqual(await page.locator("#file-content em, #file-content script").count(), 0)
      assert.strictEqual(await page.textContent("#file-compression"), "none")
      await shot(page, "11-file")
      // The gzip-compressed one too
      await page.click("#back")
      await page.click(`.file[data-name="steps.json"] a`)
      await page.waitForSelector("#file-content")
      assert.include(await page.textContent("#file-content"), "10512")
      assert.strictEqual(await page.textContent("#file-compression"), "gzip")

      // 3. Push a note: no write token yet, so the write contract's consent comes first
      await page.click("#back")
      await page.waitForSelector("#push-form")
      await page.fill("#note", "Remember the <b>milk</b>")
      await page.click("#push")
      await page.waitForSelector("#allow")
      assert.isTrue(page.url().startsWith(running.digime.onboardUrl))
      await shot(page, "12-write-consent")
      await page.click("#allow")
      await page.waitForSelector("#pushed")
      assert.isTrue(page.url().startsWith(`${running.appUrl}/accounts`))
      const pushed = await Effect.runPromise(simulator.pushed)
      assert.strictEqual(pushed.length, 1)
      assert.strictEqual(pushed[0]!.contractId, Example.writeContractId)
      assert.strictEqual(pushed[0]!.metadata.mimeType, "application/json")
      // The new read lists it, with its raw metadata
      const first = pushed[0]!.fileName
      assert.include(await listedNames(page), first)
      assert.include(await page.textContent(`.file[data-name="${first}"] .file-meta`), "application/json")
      assert.include(await page.textContent("#write-status"), "pushed at once")
      await shot(page, "13-pushed")

      // 4. Its page shows the note, markup as text
      await page.click(`.file[data-name="${first}"] a`)
      await page.waitForSelector("#file-content")
      assert.include(await page.textContent("#file-content"), `"note": "Remember the <b>milk</b>"`)
      assert.strictEqual(await page.locator("#file-content b").count(), 0)
      assert.include(await page.textContent("#file-type"), "application/json")

      // 5. A second note goes at once: the write token is kept
      await page.click("#back")
      await page.fill("#note", "A second note")
      await page.click("#push")
      await page.waitForSelector("#pushed")
      const both = await Effect.runPromise(simulator.pushed)
      assert.strictEqual(both.length, 2)
      assert.includeMembers(await listedNames(page), both.map((file) => file.fileName))
      await shot(page, "14-pushed-again")

      // One consent per contract, no refresh needed, the same digi.me library for both.
      const stats = await Effect.runPromise(simulator.stats)
      assert.strictEqual(stats.exchanges, 2)
      assert.strictEqual(stats.requests.push, 2)
      assert.strictEqual(both[0]!.digimeUserId, both[1]!.digimeUserId)
    } finally {
      await browser?.close()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 120_000)
})

if (executablePath === "") {
  describe("example-web in Chromium: no browser", () => {
    it.skip(`skipped: ${missing}`, () => {})
  })
}
