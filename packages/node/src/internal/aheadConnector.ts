/**
 * Connections opened ahead of a client's first request (the warm-up of `NodeDigime.layer`): undici's
 * own connector, which can also open a connection to an origin before any request needs one and
 * hand it to the first request there while it is fresh.
 */
import * as Undici from "@effect/platform-node/Undici"
import * as Net from "node:net"

/**
 * How long a connection opened ahead waits for a request before it is closed: half of what undici
 * keeps an idle connection open (its default `keepAliveTimeout`, 4 s), so that the request that
 * takes it (possibly a refresh, which is never repeated) does not meet a connection a server or a
 * load balancer has given up on.
 */
const aheadMillis = 2_000

interface Ahead {
  readonly socket: Net.Socket
  readonly timer: ReturnType<typeof setTimeout>
}

const defaultPorts: Readonly<Record<string, string>> = { "http:": "80", "https:": "443" }
const originKey = (protocol: string, hostname: string, port: string) =>
  `${protocol}//${hostname}:${port === "" ? defaultPorts[protocol] ?? "" : port}`

/**
 * undici's own connector (its defaults, as the `Agent` would build it), which can also open a
 * connection ahead (`preconnect`: TCP, and TLS with the same session cache) and hand it to the
 * first request to that origin that needs a connection, while it is fresh. A connection opened
 * ahead never keeps the process alive, opening or open, and is closed when unused after
 * `aheadMillis` or when the client is closed.
 */
/** @internal */
export const makeConnector = () => {
  const connect = Undici.buildConnector({})
  const ready = new Map<string, Ahead>()
  const opening = new Map<Net.Socket, () => void>()
  let closed = false
  const take = (key: string): Net.Socket | undefined => {
    const ahead = ready.get(key)
    if (ahead === undefined) return undefined
    ready.delete(key)
    clearTimeout(ahead.timer)
    if (!ahead.socket.destroyed && ahead.socket.readyState === "open") return ahead.socket
    ahead.socket.destroy()
    return undefined
  }
  const connector: Undici.buildConnector.connector = (options, callback) => {
    const socket = take(originKey(options.protocol, options.hostname, options.port))
    if (socket === undefined) return connect(options, callback)
    // From now on it is one of undici's connections, which keep the process alive while in use.
    socket.ref()
    // undici expects its callback once the connector has returned, as a connection takes time.
    queueMicrotask(() => callback(null, socket))
  }
  const preconnect = (url: URL): Promise<void> =>
    new Promise((resolve, reject) => {
      if (closed) return resolve()
      // undici hands its connector an IPv6 address without its brackets.
      const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname
      const key = originKey(url.protocol, hostname, url.port)
      let opened: Net.Socket | undefined
      const done = () => {
        if (opened !== undefined) opening.delete(opened)
      }
      // undici's connector returns the socket it opens (its type does not say so). It calls back
      // later, once connected or failed.
      const returned: unknown = connect({ protocol: url.protocol, hostname, host: url.host, port: url.port }, (
        error,
        socket
      ) => {
        done()
        if (error !== null) return reject(error)
        if (closed) {
          socket.destroy()
          return resolve()
        }
        take(key)?.destroy()
        const timer = setTimeout(() => {
          if (ready.get(key)?.socket === socket) take(key)?.destroy()
        }, aheadMillis)
        timer.unref()
        ready.set(key, { socket, timer })
        resolve()
      })
      if (returned instanceof Net.Socket) {
        opened = returned
        opened.unref()
        // Closed while opening: no callback comes then.
        opening.set(opened, resolve)
      }
    })
  const close = () => {
    closed = true
    for (const key of [...ready.keys()]) take(key)?.destroy()
    for (const [socket, settle] of opening) {
      socket.destroy()
      settle()
    }
    opening.clear()
  }
  return { connector, preconnect, close }
}
