'use strict'
// Conformance cases of the Node SDK against a real engine (`target/debug/gloam up`) and real
// worker processes (examples/hello-node, target/debug/hello-rust), over real HTTP.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const REPO = path.resolve(__dirname, '..', '..', '..')
const GLOAM = process.env.GLOAM_BIN || path.join(REPO, 'target', 'debug', 'gloam')
const HELLO_RUST = path.join(REPO, 'target', 'debug', 'hello-rust')
const HELLO_NODE = path.join(REPO, 'examples', 'hello-node', 'main.js')
const MAX_PAYLOAD = 4 * 1024 * 1024
const T = { timeout: 60_000 }

/** Node functions of the example: name → extra TOML keys. */
const NODE_FUNCTIONS = {
  Foo: {},
  Bar: {},
  Nop: {},
  // Two logical workers in one process: handlers run concurrently on one JS thread.
  Echo: { min_workers: 2, workers_per_process: 2 },
  EchoAsync: {},
  Fail: {},
  FailAsync: {},
  BadResult: {},
  Crash: {},
  MaybeCrash: {},
  Sleep: { min_workers: 2, workers_per_process: 2 },
  Fanout: {},
  FanoutWide: {},
  InvokeOther: {},
  PassOn: {},
  PassOnSync: {},
  ThrowCode: {},
  // Sleep with its own timeout, far below the caller's (30 s): see 'passed on kind'.
  SleepShort: { handler: 'Sleep', timeout_ms: 200 },
  RepeatSync: {},
  InvokeSized: {},
  InvokeCatch: {},
  DeadlineProbe: {},
  Info: {},
  Method: {},
}

let engine
let base
let tmp
let probeFile

function toml(s) {
  return JSON.stringify(s)
}

function writeConfig(dir) {
  const lines = [
    '[engine]',
    `ipc_root = ${toml(path.join(dir, 'ipc'))}`,
    'listen = "127.0.0.1:0"',
    `log_dir = ${toml(path.join(dir, 'logs'))}`,
    `max_payload = ${MAX_PAYLOAD}`,
    '',
  ]
  for (const [name, extra] of Object.entries(NODE_FUNCTIONS)) {
    lines.push(`[functions.${name}]`, 'command = "node"', `args = [${toml(HELLO_NODE)}]`)
    const handler = extra.handler ? `, GLOAM_HANDLER = ${toml(extra.handler)}` : ''
    lines.push(`env = { HELLO_NODE_PROBE_FILE = ${toml(probeFile)}${handler} }`)
    lines.push(`min_workers = ${extra.min_workers ?? 1}`)
    if (extra.workers_per_process) lines.push(`workers_per_process = ${extra.workers_per_process}`)
    if (extra.timeout_ms) lines.push(`timeout_ms = ${extra.timeout_ms}`)
    lines.push('')
  }
  lines.push('[functions."grpc:conformance.Methods"]', 'command = "node"', `args = [${toml(HELLO_NODE)}]`)
  lines.push('env = { GLOAM_HANDLER = "Method" }', 'grpc_methods = ["First", "Second"]', '')
  lines.push('[functions.RustEcho]', `command = ${toml(HELLO_RUST)}`, 'env = { GLOAM_HANDLER = "Echo" }', 'min_workers = 1', '')
  // Rust → Node: hello-rust's Foo calls the function named Bar, served by Node here.
  lines.push('[functions.RustFoo]', `command = ${toml(HELLO_RUST)}`, 'env = { GLOAM_HANDLER = "Foo" }', 'min_workers = 1', '')
  const file = path.join(dir, 'gloam.toml')
  fs.writeFileSync(file, lines.join('\n'))
  return file
}

/** Starts `gloam up` and resolves with the gateway's base URL once it prints its ready line. */
function startEngine(config) {
  return new Promise((resolve, reject) => {
    const child = spawn(GLOAM, ['up', config], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr = (stderr + d.toString()).slice(-20_000)
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`engine not ready within 60 s; stderr:\n${stderr}`))
    }, 60_000)
    const lines = readline.createInterface({ input: child.stdout })
    lines.on('line', (line) => {
      const m = /^gloam: ready (http:\/\/\S+)$/.exec(line.trim())
      if (m) {
        clearTimeout(timer)
        resolve({ child, url: m[1], stderr: () => stderr })
      }
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`engine exited early (${code ?? signal}); stderr:\n${stderr}`))
    })
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** POST /function/<name>; resolves with { status, body: Buffer, json? }. */
async function call(name, body = '', headers = {}) {
  const res = await fetch(`${base}/function/${name}`, {
    method: 'POST',
    body: typeof body === 'string' ? Buffer.from(body) : body,
    headers,
    signal: AbortSignal.timeout(30_000),
  })
  const buf = Buffer.from(await res.arrayBuffer())
  let json
  if (res.status !== 200) {
    try {
      json = JSON.parse(buf.toString())
    } catch {}
  }
  return { status: res.status, body: buf, text: buf.toString(), json }
}

/**
 * POST with `Expect: 100-continue`: the body is only sent once the gateway asks for it. The
 * gateway refuses an oversized Content-Length before reading the body; a plain client that is
 * still uploading then races the connection's close (the 413 may be lost to a reset).
 */
function callExpectContinue(name, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/function/${name}`, {
      method: 'POST',
      headers: { 'Content-Length': body.length, Expect: '100-continue' },
      timeout: 30_000,
    })
    req.on('continue', () => req.end(body))
    req.on('response', (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let json
        try {
          json = JSON.parse(text)
        } catch {}
        req.destroy()
        resolve({ status: res.statusCode, text, json })
      })
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', reject)
    req.flushHeaders()
  })
}

async function ok(name, body, headers) {
  const r = await call(name, body, headers)
  assert.equal(r.status, 200, `${name}: HTTP ${r.status} ${r.text}`)
  return r
}

/** Polls `fn` until it returns a truthy value, at most `ms`. */
async function pollUntil(fn, ms, what) {
  const end = Date.now() + ms
  let last
  while (Date.now() < end) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(`${what}: not reached within ${ms} ms (last: ${last})`)
}

/** Whether function `name` has an idle worker, per the engine's `/_/status`. */
async function idle(name) {
  const res = await fetch(`${base}/_/status`, { signal: AbortSignal.timeout(10_000) })
  const status = await res.json()
  return (status.functions.find((f) => f.name === name)?.idle ?? 0) >= 1
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gloam-node-test-'))
  probeFile = path.join(tmp, 'probe.txt')
  for (const bin of [GLOAM, HELLO_RUST]) {
    assert.ok(fs.existsSync(bin), `${bin} is missing: run \`cargo build --workspace\` first`)
  }
  engine = await startEngine(writeConfig(tmp))
  base = engine.url
  // Never leave an engine (and its workers) behind, whatever happens to this test process.
  process.on('exit', () => {
    if (engine.child.exitCode === null && engine.child.signalCode === null) engine.child.kill('SIGKILL')
  })
})

after(async () => {
  if (!engine) return
  const exited = new Promise((resolve) => engine.child.once('exit', (code, signal) => resolve({ code, signal })))
  engine.child.kill('SIGTERM')
  const timer = setTimeout(() => engine.child.kill('SIGKILL'), 30_000)
  const { code, signal } = await exited
  clearTimeout(timer)
  try {
    assert.equal(code, 0, `engine exit: ${code ?? signal}; stderr:\n${engine.stderr()}`)
    const dir = path.join(tmp, 'ipc')
    const left = fs.existsSync(dir) ? fs.readdirSync(dir) : []
    assert.deepEqual(left, [], `${dir} not empty after a clean stop`)
  } finally {
    if (!process.env.GLOAM_TEST_KEEP) fs.rmSync(tmp, { recursive: true, force: true })
  }
})

describe('gloam node sdk', () => {
  it('echo', T, async () => {
    assert.equal((await ok('Echo', 'hello')).text, 'hello')
    const bin = Buffer.from([0, 1, 2, 255, 254, 0])
    assert.deepEqual((await ok('Echo', bin)).body, bin)
  })

  it('empty input', T, async () => {
    assert.equal((await ok('Echo', '')).body.length, 0)
    assert.equal((await ok('Bar', '')).text, 'Hello, World')
    assert.equal((await ok('Nop', 'ignored')).body.length, 0)
  })

  it('inline edge 960 and 961', T, async () => {
    for (const n of [959, 960, 961, 962]) {
      const input = Buffer.alloc(n, n % 251)
      for (let i = 0; i < n; i++) input[i] = (i * 7 + n) & 0xff
      assert.deepEqual((await ok('Echo', input)).body, input, `${n} bytes`)
    }
  })

  it('shm payload 2mib', T, async () => {
    const input = Buffer.alloc(2 * 1024 * 1024)
    for (let i = 0; i < input.length; i++) input[i] = (i * 31) & 0xff
    assert.deepEqual((await ok('Echo', input)).body, input)
    // Through an internal call too (Node → Node, input and output both by descriptor).
    const big = 'x'.repeat(2 * 1024 * 1024)
    assert.equal((await ok('InvokeOther', `Echo:${big}`)).text, big)
  })

  it('oversize', T, async () => {
    const r = await callExpectContinue('Echo', Buffer.alloc(MAX_PAYLOAD + 1))
    assert.equal(r.status, 413, r.text)
    assert.equal(r.json?.error, 'PAYLOAD_TOO_LARGE')
    const inner = await ok('InvokeSized', `Echo:${MAX_PAYLOAD + 1}`)
    assert.match(inner.text, /^GLOAM_E_PAYLOAD_TOO_LARGE: /)
    // At the limit exactly it goes through.
    assert.equal((await ok('InvokeSized', `Echo:${MAX_PAYLOAD}`)).text, `ok ${MAX_PAYLOAD}`)
  })

  it('handler error', T, async () => {
    for (let i = 0; i < 2; i++) {
      const r = await call('Fail', '')
      assert.equal(r.status, 500, r.text)
      assert.equal(r.json?.error, 'HANDLER_FAILED')
      assert.match(r.json?.message ?? '', /Fail was called/)
    }
    const a = await call('FailAsync', '')
    assert.equal(a.status, 500, a.text)
    assert.match(a.json?.message ?? '', /FailAsync was called/)
    const bad = await call('BadResult', '')
    assert.equal(bad.status, 500, bad.text)
    assert.match(bad.json?.message ?? '', /expected a Buffer, Uint8Array or string, got a number/)
    // The processes live on.
    assert.equal((await ok('Echo', 'after')).text, 'after')
    assert.equal((await call('Fail', '')).status, 500)
  })

  it('internal call', T, async () => {
    assert.equal((await ok('Foo', 'gloam')).text, 'From function Bar: Hello, gloam')
    assert.equal((await ok('Foo', '')).text, 'From function Bar: Hello, World')
    // Node → Rust.
    assert.equal((await ok('InvokeOther', 'RustEcho:from node')).text, 'from node')
    // Rust → Node (hello-rust's Foo calls Bar, which is the Node example here).
    assert.equal((await ok('RustFoo', 'rust')).text, 'From function Bar: Hello, rust')
  })

  it('invokeSync: repeated calls (direct lane), errors with codes', T, async () => {
    const payloads = Array.from({ length: 20 }, (_, i) => `p${i}`).join(',')
    assert.equal((await ok('RepeatSync', `RustEcho:${payloads}`)).text, payloads)
    assert.equal((await ok('RepeatSync', `Echo:a,b,c`)).text, 'a,b,c')
    const missing = await ok('RepeatSync', 'Nope:x')
    assert.match(missing.text, /^GLOAM_E_FUNCTION_NOT_FOUND: .*Nope/)
  })

  it('concurrent internal calls', T, async () => {
    assert.equal((await ok('Fanout', 'x')).text, 'x-1;x-2;x-3')
    // More invokes in flight than libuv's default pool (4) must not deadlock.
    const wide = await ok('FanoutWide', '16')
    assert.equal(wide.text, Array.from({ length: 16 }, (_, i) => String(i)).join(','))
    // Several external calls at once, on a process hosting two logical workers.
    const outs = await Promise.all(Array.from({ length: 8 }, (_, i) => ok('Echo', `c${i}`)))
    assert.deepEqual(outs.map((r) => r.text), Array.from({ length: 8 }, (_, i) => `c${i}`))
  })

  it('unknown function', T, async () => {
    const r = await call('Nope', 'x')
    assert.equal(r.status, 404, r.text)
    assert.equal(r.json?.error, 'FUNCTION_NOT_FOUND')
    assert.match(r.json?.message ?? '', /Nope/)
    const inner = await ok('InvokeCatch', 'Nope')
    assert.match(inner.text, /^GLOAM_E_FUNCTION_NOT_FOUND: .*Nope/)
  })

  it('worker crash', T, async () => {
    const r = await call('Crash', '')
    assert.equal(r.status, 502, r.text)
    assert.equal(r.json?.error, 'WORKER_CRASHED')
    const c = await call('MaybeCrash', 'crash')
    assert.equal(c.status, 502, c.text)
    // The launcher restarts the process; poll (bounded) until the function answers again.
    await pollUntil(
      async () => {
        const again = await call('MaybeCrash', 'back')
        return again.status === 200 && again.text === 'back'
      },
      30_000,
      'MaybeCrash answering after its restart',
    )
    assert.equal((await ok('Echo', 'still here')).text, 'still here')
  })

  it('deadline', T, async () => {
    const r = await call('Sleep', '2000', { 'X-Gloam-Timeout': '200' })
    assert.equal(r.status, 504, r.text)
    assert.equal(r.json?.error, 'TIMEOUT')
    // A nested call inherits the parent's deadline and fails with GLOAM_E_TIMEOUT in the handler.
    const p = await call('DeadlineProbe', '3000', { 'X-Gloam-Timeout': '300' })
    assert.equal(p.status, 504, p.text)
    await pollUntil(
      () => fs.existsSync(probeFile) && fs.readFileSync(probeFile, 'utf8').includes('GLOAM_E_TIMEOUT'),
      15_000,
      'DeadlineProbe reporting GLOAM_E_TIMEOUT',
    )
    // The Sleep workers are usable again afterwards.
    assert.equal((await ok('Sleep', '1')).text, 'slept 1 ms')
  })

  it('passed on kind', T, async () => {
    // SleepShort times out (its own 200 ms) while PassOn still runs: the uncaught rejection of
    // ctx.invoke (PassOn) or the throw of ctx.invokeSync (PassOnSync) keeps its kind.
    for (const fn of ['PassOn', 'PassOnSync']) {
      const r = await call(fn, 'SleepShort:2000')
      assert.equal(r.status, 504, `${fn}: ${r.text}`)
      assert.equal(r.json?.error, 'TIMEOUT')
      assert.match(r.json?.message ?? '', /SleepShort/)
      assert.doesNotMatch(r.json?.message ?? '', /^timeout: /)
      await pollUntil(() => idle('SleepShort'), 30_000, 'SleepShort idle again')
    }
    const crash = await call('PassOn', 'Crash:x')
    assert.equal(crash.status, 502, crash.text)
    assert.equal(crash.json?.error, 'WORKER_CRASHED')
    const missing = await call('PassOnSync', 'Nope:x')
    assert.equal(missing.status, 404, missing.text)
    assert.equal(missing.json?.error, 'FUNCTION_NOT_FOUND')
    // A plain handler error passed on stays HANDLER_FAILED with its message.
    const fail = await call('PassOn', 'Fail:x')
    assert.equal(fail.status, 500, fail.text)
    assert.equal(fail.json?.error, 'HANDLER_FAILED')
    assert.equal(fail.json?.message, 'Fail was called')
    // Only Gloam codes of call outcomes pass on: not one about this process, not a Node code.
    for (const [code, status, kind] of [
      ['GLOAM_E_OVERLOADED', 503, 'OVERLOADED'],
      ['GLOAM_E_PROTOCOL_ERROR', 500, 'HANDLER_FAILED'],
      ['ETIMEDOUT', 500, 'HANDLER_FAILED'],
    ]) {
      const r = await call('ThrowCode', code)
      assert.equal(r.status, status, `${code}: ${r.text}`)
      assert.equal(r.json?.error, kind)
      assert.equal(r.json?.message, `thrown with code ${code}`)
    }
    await pollUntil(() => idle('Crash'), 30_000, 'Crash restarted')
  })

  it('sync and async handlers', T, async () => {
    assert.equal((await ok('Bar', 'sync')).text, 'Hello, sync') // sync, returns a Buffer/string
    assert.equal((await ok('EchoAsync', 'async')).text, 'async') // async, Promise<Uint8Array>
    assert.equal((await ok('Sleep', '10')).text, 'slept 10 ms') // async, Promise<string>
    // Two calls at once on one process hosting two logical workers both finish.
    const both = await Promise.all([ok('Sleep', '300'), ok('Sleep', '300')])
    assert.deepEqual(both.map((r) => r.text), ['slept 300 ms', 'slept 300 ms'])
  })

  it('ctx fields', T, async () => {
    const before = Date.now()
    const info = JSON.parse((await ok('Info', '', { 'X-Gloam-Timeout': '10000' })).text)
    assert.equal(info.functionName, 'Info')
    assert.match(info.callId, /^\d+$/)
    assert.equal(typeof info.deadline, 'number')
    // Epoch milliseconds, about 10 s after the call started (generous bounds: no timing test).
    assert.ok(info.deadline > before && info.deadline <= before + 10_000 + 5_000, JSON.stringify(info))
  })

  it('method name', T, async () => {
    assert.equal((await ok('grpc:conformance.Methods', '', { 'X-Gloam-Method': 'Second' })).text, 'Second')
    assert.equal((await ok('grpc:conformance.Methods', '')).text, 'First')
    assert.equal((await ok('Method', '')).body.length, 0)
  })
})
