import { cardJson, type TypeCard } from '../../../domain/smart-process-type/card.js';
import { cardAnswers, pathId } from '../../portal-route.js';

export { TYPE_READ as READ, TYPE_WRITE as WRITE } from '../../../operations/smart-process-types.js';
export const TAGS = ['Smart processes'];

/** Path parameter check (after access, before existence): a positive integer in the 32-bit range; /search and /fields are routes of their own. */
export const entityTypeIdFrom = pathId({
  param: 'entityTypeId',
  collection: '/v1/smart-processes',
  literals: new Map([['search', ['POST']], ['fields', ['GET', 'HEAD']], ['batch', ['POST']]]),
  fix: 'list the types: GET /v1/smart-processes',
});

/** Answers that carry a type's card and its ETag (GET: rendered once per cached card). */
export const { sendStored: sendStoredCard, send: sendCard } = cardAnswers<TypeCard>(cardJson);
