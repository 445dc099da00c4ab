'use strict'
// The Node.js example functions of Gloam: the same set every language's example has.
// Started by `gloam up` with `command = "node"`, `args = ["<abs path>/examples/hello-node/main.js"]`;
// GLOAM_HANDLER (or GLOAM_FUNCTION) picks the handler.

const gloam = require('../../bindings/node')

const handlers = {
  /** Calls Bar internally and prefixes its output. */
  Foo: async (ctx, input) => {
    const out = await ctx.invoke('Bar', input)
    return Buffer.concat([Buffer.from('From function Bar: '), out])
  },
  /** `Hello, <input>`, or `Hello, World` for an empty input (synchronous). */
  Bar: (ctx, input) => (input.length === 0 ? 'Hello, World' : Buffer.concat([Buffer.from('Hello, '), input])),
  /** Empty output. */
  Nop: () => Buffer.alloc(0),
  // Answers the gRPC method the call is for ('' for a plain function).
  Method: (ctx) => Buffer.from(ctx.method),
  /** The input back. */
  Echo: (ctx, input) => input,
  /** Async variant of Echo (returns a Promise of a Uint8Array). */
  EchoAsync: async (ctx, input) => new Uint8Array(input),
  /** Throws: the caller sees HANDLER_FAILED with this message. */
  Fail: () => {
    throw new Error('Fail was called')
  },
  /** Rejects asynchronously. */
  FailAsync: async () => {
    await new Promise((resolve) => setImmediate(resolve))
    throw new Error('FailAsync was called')
  },
  /** Input `crash`: kills the process; anything else: echoed (shows the restarted worker). */
  MaybeCrash: (ctx, input) => {
    if (input.toString() === 'crash') process.abort()
    return input
  },
  /** Kills the whole process. */
  Crash: () => process.abort(),
  /** Input: milliseconds as decimal text; waits without blocking, then answers. */
  Sleep: async (ctx, input) => {
    const ms = Number.parseInt(input.toString() || '0', 10) || 0
    await new Promise((resolve) => setTimeout(resolve, ms))
    return `slept ${ms} ms`
  },
  /** Three concurrent internal calls to Echo, joined with `;`. */
  Fanout: async (ctx, input) => {
    const outs = await Promise.all([1, 2, 3].map((i) => ctx.invoke('Echo', `${input}-${i}`)))
    return outs.map((b) => b.toString()).join(';')
  },
  /** Input `Target:payload`: invokes Target with payload (bytes, split at the first ':'). */
  InvokeOther: async (ctx, input) => {
    const colon = input.indexOf(0x3a)
    const target = (colon < 0 ? input : input.subarray(0, colon)).toString()
    const payload = colon < 0 ? Buffer.alloc(0) : input.subarray(colon + 1)
    return ctx.invoke(target, payload)
  },
  /**
   * Input `Target:payload`: invokes Target and lets a failure through unchanged (the rejection
   * is not caught), so this call fails with the callee's kind and message: a callee's TIMEOUT
   * is HTTP 504 here, a crash 502; a plain handler error stays HANDLER_FAILED.
   */
  PassOn: async (ctx, input) => {
    const { target, payload } = splitTarget(input)
    return await ctx.invoke(target, payload)
  },
  /** PassOn with `ctx.invokeSync`: the error is thrown synchronously and not caught. */
  PassOnSync: (ctx, input) => {
    const { target, payload } = splitTarget(input)
    return ctx.invokeSync(target, payload)
  },
  /** Throws an Error whose `code` is the input: only a Gloam code of a call outcome passes on. */
  ThrowCode: (ctx, input) => {
    const err = new Error(`thrown with code ${input}`)
    err.code = input.toString()
    throw err
  },
  /**
   * Input `Target:p1,p2,...`: calls Target once per payload with `ctx.invokeSync` (the fast
   * path: repeated calls get a direct lane) and answers the outputs joined by `,`; an error
   * answers `<code>: <message>`.
   */
  RepeatSync: (ctx, input) => {
    const text = input.toString()
    const colon = text.indexOf(':')
    const target = text.slice(0, colon)
    try {
      return text
        .slice(colon + 1)
        .split(',')
        .map((p) => ctx.invokeSync(target, p).toString())
        .join(',')
    } catch (err) {
      return `${err.code}: ${err.message}`
    }
  },
  /** Input `Target:size`: invokes Target with `size` bytes; returns the error code or `ok`. */
  InvokeSized: async (ctx, input) => {
    const [target, size] = input.toString().split(':')
    try {
      const out = await ctx.invoke(target, Buffer.alloc(Number(size), 0x61))
      return `ok ${out.length}`
    } catch (err) {
      return `${err.code}: ${err.message}`
    }
  },
  /** Input = function name: invokes it with no input; returns the error code or `ok`. */
  InvokeCatch: async (ctx, input) => {
    try {
      const out = await ctx.invoke(input.toString())
      return `ok ${out.toString()}`
    } catch (err) {
      return `${err.code}: ${err.message}`
    }
  },
  /**
   * Input: milliseconds. Invokes Sleep with it under this call's deadline; the outcome (`ok` or
   * the error code) is also appended to `$HELLO_NODE_PROBE_FILE` when set, since by then the
   * caller of this call may have had its own TIMEOUT.
   */
  DeadlineProbe: async (ctx, input) => {
    let outcome
    try {
      await ctx.invoke('Sleep', input)
      outcome = 'ok'
    } catch (err) {
      outcome = String(err.code)
    }
    if (process.env.HELLO_NODE_PROBE_FILE) {
      require('node:fs').appendFileSync(process.env.HELLO_NODE_PROBE_FILE, `${outcome}\n`)
    }
    return outcome
  },
  /** Input N (default 16): N concurrent internal calls to Echo, more than libuv's pool size. */
  FanoutWide: async (ctx, input) => {
    const n = Number.parseInt(input.toString() || '16', 10)
    const outs = await Promise.all(Array.from({ length: n }, (_, i) => ctx.invoke('Echo', String(i))))
    return outs.map((b) => b.toString()).join(',')
  },
  /** What the handler sees of its call, as JSON. */
  Info: (ctx) =>
    JSON.stringify({
      functionName: ctx.functionName,
      callId: ctx.callId,
      deadline: ctx.deadline,
      now: Date.now(),
    }),
  /** Returns something that is not bytes: the call fails with a message saying so. */
  BadResult: () => 42,
  /**
   * Input `N` or `Target:N` (default 10000 calls to Nop): N/10 (at most 1000) unmeasured
   * internal calls, then N sequential `await ctx.invoke` calls timed with
   * process.hrtime.bigint(); answers the distribution as JSON like the Rust BenchInternal:
   * {"target","count","p50_us","p90_us","p99_us","p999_us","max_us","mean_us","per_s"}
   * (nearest-rank percentiles).
   */
  BenchInternal: async (ctx, input) => {
    const { target, n } = benchArgs(input)
    const empty = Buffer.alloc(0)
    for (let i = 0; i < Math.min(Math.floor(n / 10), 1000); i++) await ctx.invoke(target, empty)
    const ns = new Float64Array(n)
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint()
      await ctx.invoke(target, empty)
      ns[i] = Number(process.hrtime.bigint() - t0)
    }
    return benchReport(target, ns, start)
  },
  /** BenchInternal with `ctx.invokeSync` (the event loop waits for each answer). */
  BenchInternalSync: (ctx, input) => {
    const { target, n } = benchArgs(input)
    const empty = Buffer.alloc(0)
    for (let i = 0; i < Math.min(Math.floor(n / 10), 1000); i++) ctx.invokeSync(target, empty)
    const ns = new Float64Array(n)
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint()
      ctx.invokeSync(target, empty)
      ns[i] = Number(process.hrtime.bigint() - t0)
    }
    return benchReport(target, ns, start)
  },
}

/** Splits `Target:payload` at the first ':' (bytes; no ':' means an empty payload). */
function splitTarget(input) {
  const colon = input.indexOf(0x3a)
  return {
    target: (colon < 0 ? input : input.subarray(0, colon)).toString(),
    payload: colon < 0 ? Buffer.alloc(0) : input.subarray(colon + 1),
  }
}

/** Parses BenchInternal's input `N` or `Target:N`. */
function benchArgs(input) {
  const text = input.toString().trim()
  const colon = text.lastIndexOf(':')
  const target = colon < 0 ? 'Nop' : text.slice(0, colon)
  const num = colon < 0 ? text : text.slice(colon + 1)
  const n = num === '' ? 10000 : Number(num)
  if (!/^\d*$/.test(num) || !Number.isSafeInteger(n)) {
    throw new Error(`BenchInternal: N is not a number: ${num}`)
  }
  if (n < 1) throw new Error('BenchInternal: N must be at least 1')
  return { target, n }
}

/** The JSON answer of BenchInternal from per-call times in ns. */
function benchReport(target, ns, start) {
  const n = ns.length
  const totalS = Number(process.hrtime.bigint() - start) / 1e9
  ns.sort()
  const at = (q) => ns[Math.min(Math.max(Math.ceil(q * n), 1), n) - 1] / 1e3
  const mean = ns.reduce((a, b) => a + b, 0) / n / 1e3
  const f = (x) => x.toFixed(2)
  return (
    `{"target":"${target}","count":${n},"p50_us":${f(at(0.5))},"p90_us":${f(at(0.9))},` +
    `"p99_us":${f(at(0.99))},"p999_us":${f(at(0.999))},"max_us":${f(at(1))},` +
    `"mean_us":${f(mean)},"per_s":${(n / totalS).toFixed(0)}}`
  )
}

gloam.serve(handlers).catch((err) => {
  console.error(`gloam: ${err.code}: ${err.message}`)
  process.exitCode = 1
})
