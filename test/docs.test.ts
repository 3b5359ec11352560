import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { errorDocs } from '../scripts/gen-error-docs.js';
import { NODE_FLAGS } from '../src/cli/node-flags.js';

describe('docs', () => {
  it('docs/errors.md is generated from the error table and current (npm run docs)', () => {
    assert.equal(fs.readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8'), errorDocs());
  });

  it('npm start and the smartproc shebang give the V8 flags of src/cli/node-flags.ts', () => {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    const shebang = fs.readFileSync(new URL('../src/cli/bin.ts', import.meta.url), 'utf8').split('\n')[0];
    for (const flag of NODE_FLAGS) {
      assert.ok(pkg.scripts.start.includes(flag), `npm start gives ${flag}`);
      assert.ok(shebang.includes(flag), `the shebang gives ${flag}`);
    }
  });

  it('the README keeps exactly the two set-up commands', () => {
    const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    assert.match(readme, /npm install && npm start/);
    assert.match(readme, /npm test/);
  });
});
