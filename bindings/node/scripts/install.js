'use strict'
// `npm install` hook: builds the native addon from source with cargo (no prebuilt binary is
// downloaded). The napi CLI comes from this package's devDependencies; when the package is
// installed as a dependency (`npm install ./bindings/node`) those are not installed, so this
// script installs them here first, from the committed package-lock.json.
//
// Environment:
//   GLOAM_NODE_SKIP_BUILD=1      do nothing (test.sh builds the debug addon itself)
//   GLOAM_NODE_PROFILE=debug     build without --release (faster to compile, slower to run)
//
// A packed package (`npm pack` after `npm run build`, as bindings/install.sh makes it) has no
// sources: it carries the addon built where it was packed, used as it is.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' })
  if (r.error) throw r.error
  if (r.status !== 0) {
    console.error(`gloam: \`${cmd} ${args.join(' ')}\` failed with status ${r.status}`)
    process.exit(r.status || 1)
  }
}

// Packed (`npm pack`): no sources, the addon built for the packing platform.
function prebuilt() {
  return !fs.existsSync(path.join(root, 'Cargo.toml'))
}

function napiCli() {
  const cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'scripts', 'index.js')
  return fs.existsSync(cli) ? cli : null
}

if (process.env.GLOAM_NODE_SKIP_BUILD) process.exit(0)

if (prebuilt()) {
  if (!fs.readdirSync(root).some((f) => f.endsWith('.node'))) {
    console.error('gloam: this package has neither sources nor a native addon: pack it again after `npm run build`')
    process.exit(1)
  }
  process.exit(0)
}

if (!napiCli()) {
  const npm = process.env.npm_execpath
  const args = ['ci', '--ignore-scripts', '--no-audit', '--no-fund']
  if (npm && npm.endsWith('.js')) run(process.execPath, [npm, ...args])
  else run('npm', args)
}
const cli = napiCli()
if (!cli) {
  console.error('gloam: @napi-rs/cli is still missing after installing the devDependencies')
  process.exit(1)
}
const build = ['build', '--platform', '--js', 'index.js', '--dts', 'index.d.ts']
if (process.env.GLOAM_NODE_PROFILE !== 'debug') build.push('--release')
run(process.execPath, [cli, ...build])
run(process.execPath, [path.join(__dirname, 'dts-header.js')])
