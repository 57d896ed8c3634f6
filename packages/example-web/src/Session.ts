/**
 * The browser sessions: each browser is a demo user of its own. "Connect digi.me" opens a session
 * (a random id in an HttpOnly cookie, mapped here to a new user id), where a real app has its
 * login. A session remembers the authorizations its browser started, so that a callback completes
 * only for the browser that started it, and holds the CSRF secret of the push form.
 */
import type { Authorization, TokenKey } from "@digime-effect/core"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Encoding, Option } from "effect"
import { timingSafeEqual } from "node:crypto"

/** An authorization this browser started: the key its callback must complete, and a note to push then. */
export interface Started {
  readonly key: TokenKey.TokenKey
  readonly note?: string | undefined
}

/** Kept server-side only: the browser holds the session id. */
export interface Session {
  readonly userId: string
  /** Goes with the push form: a cross-site form cannot know it. */
  readonly csrf: string
  /** By state (a secret, never rendered nor logged); the oldest dropped past `maxStarted`. */
  readonly started: Map<string, Started>
  /** The read session of the last file list: its files are read with it. */
  readSessionKey?: string | undefined
  /** Shown once, on the next view of the user's page. */
  pushed?: boolean | undefined
}

const maxStarted = 10

export const randomId = () => Encoding.encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)))

export const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Remembers an authorization the session's browser started, with the note to push once it completes. */
export const remember = (session: Session, started: Authorization.Started, note?: string) => {
  if (session.started.size >= maxStarted) session.started.delete(session.started.keys().next().value!)
  session.started.set(started.state, { key: started.key, note })
}

/** The sessions of one server; on https (`secure`) the cookie is `Secure`. */
export const makeSessions = (secure: boolean) => {
  // On https the __Host- prefix makes the browser take the cookie only from this host, Secure and
  // for Path=/: a sibling subdomain cannot plant its own session, which would bind a victim's
  // consent to the planter's user again.
  const cookieName = secure ? "__Host-session" : "session"
  const cookieOptions = { httpOnly: true, sameSite: "lax", secure, path: "/" } as const
  /** Session id → session. */
  const sessions = new Map<string, Session>()
  let users = 0

  /** The session of the request's browser, if it has one. */
  const current = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const id = request.cookies[cookieName]
    return Option.fromNullable(id === undefined ? undefined : sessions.get(id))
  })

  /** A session for a new demo user, not kept until `open`. */
  const create = (): Session => ({ userId: `demo-${++users}`, csrf: randomId(), started: new Map() })

  /** Keeps `session` under `sessionId` and gives its cookie to the browser with `response`. */
  const open = (response: HttpServerResponse.HttpServerResponse, sessionId: string, session: Session) => {
    sessions.set(sessionId, session)
    return HttpServerResponse.setCookie(response, cookieName, sessionId, cookieOptions)
  }

  return { current, create, open } as const
}

export type Sessions = ReturnType<typeof makeSessions>
