import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { errorDocs } from '../scripts/gen-error-docs.js';

describe('docs', () => {
  it('docs/errors.md is generated from the error table and current (npm run docs)', () => {
    assert.equal(fs.readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8'), errorDocs());
  });

  it('the README keeps exactly the two set-up commands', () => {
    const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    assert.match(readme, /npm install && npm start/);
    assert.match(readme, /npm test/);
  });
});
