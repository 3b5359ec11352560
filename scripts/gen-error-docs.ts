// Writes docs/errors.md from the one error table (src/errors.ts). `npm run docs`; a test checks it is current.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_TABLE } from '../src/errors.js';

export function errorDocs(): string {
  const rows = Object.entries(ERROR_TABLE).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.when} | ${e.action} |`);
  return [
    '# Errors',
    '',
    '<!-- generated from src/errors.ts by `npm run docs`: do not edit by hand -->',
    '',
    'Every failure answers with one envelope:',
    '',
    '```json',
    '{"success": false, "error": {"code": "VALIDATION_ERROR", "message": "...", "hint": "...", "details": [{"location": "body.title", "message": "...", "fix": "..."}], "retryAfter": 1, "requestId": "req_..."}}',
    '```',
    '',
    '`hint`, `details` and `retryAfter` appear when they apply; `details` lists every problem found, not only the first.',
    '`retryAfter` is mirrored in the `Retry-After` header. `requestId` equals the `X-Request-Id` header and is in the server log.',
    '',
    '| code | HTTP | when | what the caller should do |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const target = new URL('../docs/errors.md', import.meta.url);
  fs.writeFileSync(target, errorDocs());
  console.log(`wrote ${fileURLToPath(target)}`);
}
