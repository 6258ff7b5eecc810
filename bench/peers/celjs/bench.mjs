#!/usr/bin/env node
// Peer benchmark: the csrgate ten-policy decision and the lone `matches()` rule, evaluated by
// @marcbachmann/cel-js over the values csrgate's own bench writes to cel-fixture.json.
//
// Usage: node bench.mjs OUT.json [FIXTURE]
//   FIXTURE defaults to $CEL_FIXTURE, then <repo>/target/bench/cel-fixture.json.
//
// Every expression is parsed once; the context object is built once; the timed loop only
// evaluates. Before timing, each expression must return boolean `true`, or the script exits 1.

import {readFileSync, writeFileSync, mkdirSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Environment} from '@marcbachmann/cel-js'

const PACKAGE = '@marcbachmann/cel-js'
const WARMUP_NS = 500_000_000n // 0.5 s
const SAMPLE_NS = 75_000_000 // target length of one sample batch: 75 ms
const SAMPLES = 31

const here = dirname(fileURLToPath(import.meta.url))
// The installed version (the package's "exports" hide its package.json from import/require).
const version = JSON.parse(
  readFileSync(resolve(here, 'node_modules', PACKAGE, 'package.json'), 'utf8')
).version

function fail (message) {
  console.error(`cel-js peer: ${message}`)
  process.exit(1)
}

const [outPath, fixtureArg] = process.argv.slice(2)
if (!outPath) fail('usage: node bench.mjs OUT.json [FIXTURE]')
const fixturePath = resolve(
  fixtureArg || process.env.CEL_FIXTURE || resolve(here, '../../../target/bench/cel-fixture.json')
)

// JSON integers become CEL `int` (BigInt); other numbers stay `double`. Where the runtime
// hands the reviver the source text (Node >= 21), the literal decides; on Node 20 an
// integral value is taken as an int (serde_json writes floats with a '.', e.g. 1.0, which
// this fallback would misread as an int; the current fixture has no float).
function reviver (_key, value, context) {
  if (typeof value !== 'number') return value
  if (context && typeof context.source === 'string') {
    return /^-?\d+$/.test(context.source) ? BigInt(context.source) : value
  }
  return Number.isInteger(value) ? BigInt(value) : value
}

let fixture
try {
  fixture = JSON.parse(readFileSync(fixturePath, 'utf8'), reviver)
} catch (err) {
  fail(`cannot read fixture ${fixturePath}: ${err.message}`)
}
const {activation, policies, matchesRule} = fixture
if (!activation || !Array.isArray(policies) || typeof matchesRule !== 'string') {
  fail(`fixture ${fixturePath} lacks activation/policies/matchesRule`)
}

// The three variables csrgate declares for a CSR. `object` and `x509` are maps; `node` is
// null here (no Node object), so it is declared dyn.
const env = new Environment()
  .registerVariable('object', 'map')
  .registerVariable('x509', 'map')
  .registerVariable('node', 'dyn')

const context = {object: activation.object, x509: activation.x509, node: activation.node}

const errors = []
function compile (where, text) {
  try {
    const program = env.parse(text)
    const checked = program.check()
    if (checked && checked.valid === false) {
      errors.push(`${where}: type check failed: ${checked.error?.message ?? checked.error}\n    ${text}`)
    }
    return program
  } catch (err) {
    errors.push(`${where}: parse failed: ${err.message}\n    ${text}`)
    return null
  }
}

const compiled = policies.map((p) => ({
  name: p.name,
  matchConditions: p.matchConditions.map((t, i) => compile(`${p.name} matchConditions[${i}]`, t)),
  validations: p.validations.map((t, i) => compile(`${p.name} validations[${i}]`, t))
}))
const matchesProgram = compile('matchesRule', matchesRule)
if (errors.length) fail(`expressions rejected:\n  ${errors.join('\n  ')}`)

// Each expression once, outside the timed loop: it must be the boolean true.
function checkTrue (where, text, program) {
  let value
  try {
    value = program(context)
  } catch (err) {
    errors.push(`${where}: evaluation error: ${err.message}\n    ${text}`)
    return
  }
  if (value !== true) {
    errors.push(`${where}: returned ${typeof value} ${String(value)}, not true\n    ${text}`)
  }
}
policies.forEach((p, pi) => {
  p.matchConditions.forEach((t, i) =>
    checkTrue(`${p.name} matchConditions[${i}]`, t, compiled[pi].matchConditions[i]))
  p.validations.forEach((t, i) =>
    checkTrue(`${p.name} validations[${i}]`, t, compiled[pi].validations[i]))
})
checkTrue('matchesRule', matchesRule, matchesProgram)
if (errors.length) fail(`expressions did not evaluate to true:\n  ${errors.join('\n  ')}`)

const expressions = policies.reduce((n, p) => n + p.matchConditions.length + p.validations.length, 0)

// One decision: per policy, all matchConditions must hold, then every validation.
// Returns the number of policies that matched and passed.
function decision () {
  let approved = 0
  for (let p = 0; p < compiled.length; p++) {
    const policy = compiled[p]
    let matched = true
    for (let i = 0; i < policy.matchConditions.length; i++) {
      if (policy.matchConditions[i](context) !== true) { matched = false; break }
    }
    if (!matched) continue
    let ok = true
    for (let i = 0; i < policy.validations.length; i++) {
      if (policy.validations[i](context) !== true) { ok = false; break }
    }
    if (ok) approved++
  }
  return approved
}

function matchesOnce () {
  return matchesProgram(context) === true ? 1 : 0
}

// Runs `fn` n times; returns elapsed ns. `expected` is what fn returns each time.
function batch (fn, n, expected) {
  let sink = 0
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) sink += fn()
  const t1 = process.hrtime.bigint()
  if (sink !== expected * n) fail(`benchmark loop saw a non-true result (${sink} != ${expected * n})`)
  return Number(t1 - t0)
}

function measure (fn, expected) {
  // Warm up for ~0.5 s (lets the JIT settle) while estimating the cost of one call.
  let calls = 0
  let n = 1
  const start = process.hrtime.bigint()
  while (process.hrtime.bigint() - start < WARMUP_NS) {
    batch(fn, n, expected)
    calls += n
    if (n < 1 << 20) n *= 2
  }
  const perCallNs = Number(process.hrtime.bigint() - start) / calls
  const batchSize = Math.max(1, Math.round(SAMPLE_NS / perCallNs))
  const perCallUs = []
  for (let s = 0; s < SAMPLES; s++) {
    perCallUs.push(batch(fn, batchSize, expected) / batchSize / 1000)
  }
  perCallUs.sort((a, b) => a - b)
  const mid = perCallUs.length >> 1
  const median = perCallUs.length % 2 ? perCallUs[mid] : (perCallUs[mid - 1] + perCallUs[mid]) / 2
  return {median, min: perCallUs[0], max: perCallUs[perCallUs.length - 1], batchSize}
}

const d = measure(decision, compiled.length)
const m = measure(matchesOnce, 1)

const round = (x) => Math.round(x * 1000) / 1000
const result = {
  engine: 'cel-js',
  package: PACKAGE,
  version,
  runtime: `node ${process.version}`,
  fixture: fixturePath,
  policies: policies.length,
  expressions,
  decision_us_median: round(d.median),
  decision_us_min: round(d.min),
  decision_us_max: round(d.max),
  decision_batch: d.batchSize,
  matches_rule_us_median: round(m.median),
  matches_rule_us_min: round(m.min),
  matches_rule_us_max: round(m.max),
  matches_rule_batch: m.batchSize,
  samples: SAMPLES
}
mkdirSync(dirname(resolve(outPath)), {recursive: true})
writeFileSync(outPath, JSON.stringify(result, null, 2) + '\n')
console.log(
  `cel-js ${version} (node ${process.version}): decision of ${policies.length} policies / ` +
  `${expressions} expressions ${result.decision_us_median} us median, ` +
  `matchesRule ${result.matches_rule_us_median} us median (${SAMPLES} samples)`
)
