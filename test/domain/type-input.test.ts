import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../../src/errors.js';
import { FLAG_BIT } from '../../src/domain/smart-process-type/fields.js';
import { isAllowedEntityTypeId, parsePatchBody } from '../../src/domain/smart-process-type/input.js';
import { checkRelations } from '../../src/domain/smart-process-type/relations.js';

const entry = (entityTypeId: number, i = 0, side = 'parent') => ({ entityTypeId, isChildrenListEnabled: false, location: `body.relations.${side}[${i}]` });

describe('relation rules (contract §3.1)', () => {
  const portalTypes = new Set([1032, 1034]);

  it('accepts the base set and other smart processes of the portal', () => {
    const result = checkRelations({ parent: [1, 2, 7, 14, 31, 1034].map((e, i) => entry(e, i)), child: [1, 2, 3, 4, 7, 31, 1034].map((e, i) => entry(e, i, 'child')) }, 0, 1032, portalTypes);
    assert.equal(result.parent!.length, 6);
    assert.equal(result.child!.length, 7);
  });

  it('refuses Contact/Company as parents and Order as a child unless a flag makes them predefined', () => {
    assert.throws(() => checkRelations({ parent: [entry(3)] }, 0, 1032, portalTypes), ApiError);
    assert.throws(() => checkRelations({ child: [entry(14, 0, 'child')] }, 0, 1032, portalTypes), ApiError);
    assert.deepEqual(checkRelations({ parent: [entry(3), entry(4, 1)] }, FLAG_BIT.isClientEnabled, 1032, portalTypes).parent, []);
    assert.deepEqual(checkRelations({ child: [entry(14, 0, 'child')] }, FLAG_BIT.isPaymentsEnabled, 1032, portalTypes).child, []);
  });

  it('refuses the type itself and types that are neither base nor of the portal, naming every entry', () => {
    try {
      checkRelations({ parent: [entry(1032), entry(5, 1), entry(2, 2), entry(1036, 3)] }, 0, 1032, portalTypes);
      assert.fail('should throw');
    } catch (error) {
      assert.ok(error instanceof ApiError);
      assert.equal(error.code, 'BITRIX_ERROR');
      assert.deepEqual(error.details!.map((d) => d.location), ['body.relations.parent[0].entityTypeId', 'body.relations.parent[1].entityTypeId', 'body.relations.parent[3].entityTypeId']);
    }
  });
});

describe('entityTypeId range (contract §3.2)', () => {
  it('is 128..191 or an even number ≥ 1030', () => {
    for (const ok of [128, 150, 191, 1030, 1032, 5000]) assert.equal(isAllowedEntityTypeId(ok), true, String(ok));
    for (const bad of [0, 1, 127, 192, 1000, 1029, 1031, 1033]) assert.equal(isAllowedEntityTypeId(bad), false, String(bad));
  });
});

describe('PATCH body', () => {
  it('keeps only what was sent, and records flag changes as a mask', () => {
    const patch = parsePatchBody({ isStagesEnabled: true, isClientEnabled: false, id: 5 } as never, 1050);
    assert.deepEqual(patch, { flags: { mask: FLAG_BIT.isStagesEnabled | FLAG_BIT.isClientEnabled, values: FLAG_BIT.isStagesEnabled } });
    assert.deepEqual(parsePatchBody({}, 1050), {});
  });

  it('empty code means no code', () => {
    assert.equal(parsePatchBody({ code: '' }, 1050).code, null);
  });
});
