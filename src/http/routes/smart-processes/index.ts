import type { FastifyInstance } from 'fastify';
import create from './create.js';
import remove from './delete.js';
import fields from './fields.js';
import get from './get.js';
import history from './history.js';
import list from './list.js';
import search from './search.js';
import batch from './batch.js';
import update from './update.js';

/** /v1/smart-processes: one file per operation. */
export default async function smartProcessRoutes(app: FastifyInstance) {
  for (const register of [list, search, fields, get, history, create, update, remove, batch]) await app.register(register);
}
