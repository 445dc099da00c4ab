'use strict'
// Tests of the __GLOAM_NAME__ function: `npm test`.
const test = require('node:test')
const assert = require('node:assert')
const { greet } = require('./main')

test('greets the input or the world', () => {
  assert.strictEqual(greet(Buffer.from('Ada')), 'Hello, Ada!')
  assert.strictEqual(greet(Buffer.alloc(0)), 'Hello, World!')
})
