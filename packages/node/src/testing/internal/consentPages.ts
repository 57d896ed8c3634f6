/**
 * The consent pages of the simulator served over HTTP (see the module header of
 * `NodeDigimeSimulator`): `GET {onboardPath}authorize|user-reauth|onboard|reauthorize|revoke?code=…`
 * shows what the onboarding URL asks for with the buttons `#allow` and `#deny`; the form posts to
 * `{onboardPath}consent`, which answers `303` to the application's callback. A URL or form that
 * `DigimeSimulator.Service.consent` refuses gives a `400` page saying why.
 */
import type * as DigimeSimulator from "@digime-effect/core/testing/DigimeSimulator"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { withProblem } from "./requestLog.js"

/** @internal */
export const onboardPath = "/apps/saas/"

const consentPages: ReadonlyArray<string> = ["authorize", "user-reauth", "onboard", "reauthorize", "revoke"]

/**
 * Whether the path is one of the consent pages (whatever the method).
 *
 * @internal
 */
export const isConsentPage = (path: string): boolean => consentPages.some((name) => path === `${onboardPath}${name}`)

/**
 * Whether the consent pages answer this request: a `GET` of a page or the `POST` of its form.
 *
 * @internal
 */
export const isConsentRequest = (method: string, path: string): boolean =>
  isConsentPage(path)
    ? method === "GET"
    : path === `${onboardPath}consent` && method === "POST"

const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (char) =>
      char === "&" ? "&amp;" : char === "<" ? "&lt;" : char === ">" ? "&gt;" : char === "\"" ? "&quot;" : "&#39;"
  )

const pageHeaders = {
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY"
}

const page = (status: number, title: string, body: string): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.html(
    `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }
main { max-width: 28rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 0.5rem; }
.note { color: #555; font-size: 0.9rem; }
button { font-size: 1rem; padding: 0.5rem 1.5rem; margin-right: 0.5rem; border-radius: 0.25rem; }
button { border: 1px solid #999; }
#allow { background: #1a7f37; color: #fff; border-color: #1a7f37; }
</style>
</head>
<body>
<main>
${body}
<p class="note">Simulated digi.me: for development and tests only.</p>
</main>
</body>
</html>
`
  ).pipe(HttpServerResponse.setStatus(status), HttpServerResponse.setHeaders(pageHeaders))

const errorPage = (message: string): HttpServerResponse.HttpServerResponse =>
  withProblem(
    page(
      400,
      "digi.me: this link cannot be used",
      `<h1 id="error">This consent link cannot be used</h1>\n<p id="reason">${escapeHtml(message)}</p>`
    ),
    message
  )

const asksFor: Record<DigimeSimulator.ConsentRequest["kind"], string> = {
  authorize: "It asks for access to your digi.me library",
  reauth: "It asks to renew its access to your digi.me library",
  onboard: "It asks you to add a service to your digi.me library",
  reauthorize: "It asks you to reconnect one of the services of your digi.me library",
  revoke: "It asks to withdraw its permission for one of the services of your digi.me library"
}

const consentPage = (
  appName: string,
  onboardingUrl: string,
  request: DigimeSimulator.ConsentRequest
): HttpServerResponse.HttpServerResponse => {
  const callback = new URL(request.redirectUri)
  const asks = asksFor[request.kind]
  return page(
    200,
    `digi.me: ${appName} asks to read your data`,
    `<h1 id="prompt">${escapeHtml(appName)} asks to read your data</h1>
<p>${asks} (contract <code>${escapeHtml(request.contractId)}</code>).</p>
<p class="note">Your answer is sent to ${escapeHtml(`${callback.origin}${callback.pathname}`)}.</p>
<form method="post" action="${onboardPath}consent">
<input type="hidden" name="url" value="${escapeHtml(onboardingUrl)}">
<button id="allow" type="submit" name="choice" value="allow">Allow</button>
<button id="deny" type="submit" name="choice" value="deny">Deny</button>
</form>`
  )
}

/**
 * The handler of the consent pages (a request `isConsentRequest` accepts), `appName` on the page.
 *
 * @internal
 */
export const makeConsentPages = (
  simulator: DigimeSimulator.Service,
  appName: string
): (
  request: HttpServerRequest.HttpServerRequest,
  url: URL
) => Effect.Effect<HttpServerResponse.HttpServerResponse, HttpServerError.RequestError> =>
(request, url) =>
  Effect.gen(function*() {
    if (request.method === "GET") {
      const described = yield* Effect.either(simulator.describeConsent(url.href))
      return Either.isLeft(described)
        ? errorPage(described.left.reason)
        : consentPage(appName, url.href, described.right)
    }
    const params = yield* request.urlParamsBody
    const onboardingUrl = Option.getOrUndefined(UrlParams.getFirst(params, "url"))
    const choice = Option.getOrUndefined(UrlParams.getFirst(params, "choice"))
    if (onboardingUrl === undefined || (choice !== "allow" && choice !== "deny")) {
      return errorPage("the form needs the onboarding URL and a choice, allow or deny")
    }
    const errorCode = Option.getOrUndefined(UrlParams.getFirst(params, "errorCode"))
    const callback = yield* Effect.either(
      simulator.consent(onboardingUrl, { allow: choice === "allow", errorCode })
    )
    return Either.isLeft(callback)
      ? errorPage(callback.left.reason)
      : HttpServerResponse.redirect(callback.right, { status: 303, headers: { "cache-control": "no-store" } })
  })
