'use strict'
// The __GLOAM_NAME__ function. `gloam up` installs its dependencies and serves it; then
// `gloam invoke __GLOAM_NAME__ --data World` answers `Hello, World!`.

const gloam = require('gloam')

/** What __GLOAM_NAME__ answers for `input` (a Buffer). */
function greet (input) {
  return `Hello, ${input.length > 0 ? input.toString() : 'World'}!`
}

module.exports = { greet }

if (require.main === module) {
  // Serves the function named by GLOAM_FUNCTION (set by `gloam up`) until the engine stops.
  // A handler may be async and call others: `await ctx.invoke('Other', input)`.
  gloam.serve({
    __GLOAM_NAME__: (ctx, input) => greet(input)
  })
}
