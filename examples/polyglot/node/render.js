'use strict'
// The polyglot stack's Node.js functions: Render (the third step of the chain) and Echo.
//
// Render turns the order's items into receipt lines, applies the discount decided by Go's
// Auth, and asks C's Digest for a digest of every line at once (the fan-out: one internal call
// per line, all in flight together). It adds a `render` section and passes the order on with an
// internal call to Checksum (C), whose answer it returns.

const gloam = require('../../../bindings/node')

const cents = (n) => `${Math.floor(n / 100)}.${String(n % 100).padStart(2, '0')}`

gloam
  .serve({
    Render: async (ctx, input) => {
      const order = JSON.parse(input.toString())
      const discountPct = order.auth?.discount_pct ?? 0
      const lines = order.items.map((i) => `${i.qty} x ${i.sku} @ ${cents(i.price_cents)} = ${cents(i.qty * i.price_cents)}`)
      const subtotal = order.items.reduce((s, i) => s + i.qty * i.price_cents, 0)
      const total = Math.round((subtotal * (100 - discountPct)) / 100)
      // Fan-out: every line's digest at once.
      const digests = await Promise.all(lines.map((l) => ctx.invoke('Digest', l)))
      order.render = {
        lang: 'node',
        lines: lines.map((l, n) => `${l}  [${digests[n].toString()}]`),
        total: cents(total),
        total_cents: total,
      }
      return ctx.invoke('Checksum', JSON.stringify(order))
    },
    Echo: (ctx, input) => input,
  })
  .catch((err) => {
    console.error(`polyglot-node: ${err.code}: ${err.message}`)
    process.exitCode = 1
  })
