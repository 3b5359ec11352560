import { it } from 'node:test';
import { createTestApp, json } from './helpers/app.js';
it('probe', async () => {
  const t = await createTestApp();
  const chars = ['\r', '\u000b', '\u000c', '\u001b', '\u0008', '\u001f', '\u2028', '\u00a0', '\u200b', '\ufeff', '\u0009'];
  let i = 0;
  for (const c of chars) { const r = await t.call('POST', '/v1/smart-processes', { title: `T${i}${c}z`, code: `c${i}${c}z` }); i++; if (r.statusCode !== 201) console.log('create', JSON.stringify(c), r.statusCode, r.body.slice(0,200)); }
  i = 0;
  for (const c of chars) {
    for (const field of ['title', 'code']) {
      const needle = `${i}${c}Z`;
      const r = await t.call('POST', '/v1/smart-processes/search', { filter: { [field]: { $contains: needle } }, select: ['title'] });
      const q = await t.call('GET', `/v1/smart-processes?select=title&filter[%25${field}]=${encodeURIComponent(needle)}`);
      const a = JSON.stringify(json(r).data?.map((x: any) => x.title) ?? json(r).error); const b = JSON.stringify(json(q).data?.map((x: any) => x.title) ?? json(q).error);
      if (a !== JSON.stringify([`T${i}${c}z`]) || a !== b) console.log(field, JSON.stringify(c), a, b);
    }
    i++;
  }
  await t.close();
});
