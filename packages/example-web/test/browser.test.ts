/**
 * End to end in a real browser: headless Chromium (Debian's, driven by playwright-core) against the
 * example backend and the simulated digi.me over real HTTP. Connect, approve on the consent page,
 * see the accounts; wait out the access token and see a silent refresh; wait out the refresh token
 * and see the reconnect path work. A screenshot of each step goes to test-artifacts/.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import type { Browser, Page } from "playwright-core"
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
      browser = await chromium.launch({
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

      // 6. Reconnect → a reauthorization consent page → Allow → accounts again
      await page.click("#reconnect")
      await page.waitForSelector("#allow")
      assert.include(page.url(), "/user-reauth?code=")
      await shot(page, "06-reauthorize")
      await page.click("#allow")
      await page.waitForSelector("#account-list")
      assert.isAtLeast(await page.locator(".account").count(), 1)
      await shot(page, "07-reconnected")

      const stats = await Effect.runPromise(running.digime.simulator.stats)
      assert.strictEqual(stats.exchanges, 2)
      assert.strictEqual(stats.replays, 0)
      assert.strictEqual(stats.requests.reference, 1)
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
