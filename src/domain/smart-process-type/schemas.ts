import { Type, type Static } from 'typebox';
import { Int32, MAX_RELATIONS_PER_SIDE, Nullable, PositiveInt32Param } from '../input-rules.js';
import { FIELD_TYPES, type FieldSpec, type FieldType } from '../field-table.js';
import { CODE_MAX_LENGTH, ECHOED_READ_ONLY_FIELDS, FLAG_FIELDS, LINKED_USER_FIELDS, TYPE_FIELDS } from './fields.js';


const flagProperties = Object.fromEntries(FLAG_FIELDS.map((f) => [f.name, Type.Boolean({ description: f.title })])) as Record<(typeof FLAG_FIELDS)[number]['name'], ReturnType<typeof Type.Boolean>>;
const optionalFlagProperties = Object.fromEntries(FLAG_FIELDS.map((f) => [f.name, Type.Optional(Type.Boolean({ description: f.title }))])) as Record<(typeof FLAG_FIELDS)[number]['name'], ReturnType<typeof Type.Optional<ReturnType<typeof Type.Boolean>>>>;

export const RelationSchema = Type.Object(
  {
    entityTypeId: Type.Integer(),
    isChildrenListEnabled: Type.Boolean(),
    isPredefined: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type Relation = Static<typeof RelationSchema>;

export const RelationsSchema = Type.Object({ parent: Type.Array(RelationSchema), child: Type.Array(RelationSchema) }, { additionalProperties: false });

export const LinkedUserFieldsSchema = Type.Object(
  Object.fromEntries(LINKED_USER_FIELDS.map((k) => [k, Type.Boolean()])) as Record<(typeof LINKED_USER_FIELDS)[number], ReturnType<typeof Type.Boolean>>,
  { additionalProperties: false },
);

const BooleanLike = Type.Unsafe<boolean | 'true' | 'false' | 'Y' | 'N'>({
  type: ['boolean', 'string'],
  enum: [true, false, 'true', 'false', 'Y', 'N'],
  description: 'JSON boolean; the strings "true", "false", "Y", "N" are accepted for Bitrix24 habits',
});

export const RelationInputSchema = Type.Object(
  {
    entityTypeId: Int32({ minimum: 1 }),
    isChildrenListEnabled: Type.Optional(BooleanLike),
    isPredefined: Type.Optional(Type.Unknown({ description: 'read-only; accepted and ignored so that a card read with GET can be sent back' })),
  },
  { additionalProperties: false },
);
export type RelationInput = Static<typeof RelationInputSchema>;

export const RelationsInputSchema = Type.Object(
  {
    parent: Type.Optional(Type.Array(RelationInputSchema, { maxItems: MAX_RELATIONS_PER_SIDE, description: `replaces the non-predefined parent edges (at most ${MAX_RELATIONS_PER_SIDE})` })),
    child: Type.Optional(Type.Array(RelationInputSchema, { maxItems: MAX_RELATIONS_PER_SIDE, description: `replaces the non-predefined child edges (at most ${MAX_RELATIONS_PER_SIDE})` })),
  },
  { additionalProperties: false },
);
export type RelationsInput = Static<typeof RelationsInputSchema>;

export const LinkedUserFieldsInputSchema = Type.Object(
  Object.fromEntries(LINKED_USER_FIELDS.map((k) => [k, Type.Optional(Type.Boolean())])) as Record<(typeof LINKED_USER_FIELDS)[number], ReturnType<typeof Type.Optional<ReturnType<typeof Type.Boolean>>>>,
  { additionalProperties: false, description: 'full overwrite: keys not sent become false' },
);
export type LinkedUserFieldsInput = Static<typeof LinkedUserFieldsInputSchema>;

const echoedReadOnly = Object.fromEntries(
  ECHOED_READ_ONLY_FIELDS.filter((n) => n !== 'customSectionId').map((n) => [n, Type.Optional(Type.Unknown({ description: 'read-only: accepted and ignored' }))]),
) as Record<string, ReturnType<typeof Type.Optional<ReturnType<typeof Type.Unknown>>>>;

const TitleInput = Type.String({ description: 'trimmed; 1..255 characters after trimming' });
const CodeInput = Nullable(Type.String({ maxLength: CODE_MAX_LENGTH }), { description: 'unique within the portal; null clears it' });

export const CreateTypeBodySchema = Type.Object(
  {
    title: TitleInput,
    entityTypeId: Type.Optional(Int32({ description: '128..191 or an even number ≥ 1030; allocated when omitted' })),
    code: Type.Optional(CodeInput),
    customSectionId: Type.Optional(Nullable(Int32({ minimum: 1 }))),
    ...optionalFlagProperties,
    relations: Type.Optional(RelationsInputSchema),
    linkedUserFields: Type.Optional(LinkedUserFieldsInputSchema),
    ...echoedReadOnly,
  },
  // The example of the OpenAPI document (/docs): the README's first type, the one the seed's PATCH example edits.
  { additionalProperties: false, examples: [{ title: 'Supply contracts', entityTypeId: 1050, isStagesEnabled: true }] },
);
export type CreateTypeBody = Static<typeof CreateTypeBodySchema>;

export const PatchTypeBodySchema = Type.Object(
  {
    title: Type.Optional(TitleInput),
    entityTypeId: Type.Optional(Int32({ description: 'immutable: equal to the path value or absent' })),
    code: Type.Optional(CodeInput),
    customSectionId: Type.Optional(Type.Unknown({ description: 'write-once: ignored on update' })),
    ...optionalFlagProperties,
    relations: Type.Optional(RelationsInputSchema),
    linkedUserFields: Type.Optional(LinkedUserFieldsInputSchema),
    ...echoedReadOnly,
  },
  // The example of the OpenAPI document (/docs): the seed's PATCH body, as the hosted API's guide sends it.
  { additionalProperties: false, examples: [{ title: 'Supply contracts (updated name)', code: 'supply_contracts', isAutomationEnabled: false }] },
);
export type PatchTypeBody = Static<typeof PatchTypeBodySchema>;

const listItemProperties = {
  id: Type.Integer(),
  entityTypeId: Type.Integer(),
  title: Type.String(),
  code: Nullable(Type.String()),
  createdBy: Type.Integer(),
  createdTime: Type.String({ format: 'date-time' }),
  updatedBy: Type.Integer(),
  updatedTime: Type.String({ format: 'date-time' }),
  customSectionId: Nullable(Type.Integer()),
  ...flagProperties,
  isInitialized: Type.Boolean(),
};

/** A list item; with `select` only some of its fields are present. */
export const TypeListItemSchema = Type.Partial(Type.Object(listItemProperties));
export const TypeCardSchema = Type.Object({ ...listItemProperties, relations: RelationsSchema, linkedUserFields: LinkedUserFieldsSchema });
export type TypeCardJson = Static<typeof TypeCardSchema>;
export type TypeListItemJson = Static<typeof TypeListItemSchema>;

export const FieldDescriptionSchema = Type.Object({
  type: Type.Unsafe<FieldType>(Type.Union(FIELD_TYPES.map((t) => Type.Literal(t)))),
  isRequired: Type.Boolean(),
  isReadOnly: Type.Boolean(),
  isImmutable: Type.Boolean(),
  isMultiple: Type.Boolean(),
  isDynamic: Type.Boolean(),
  title: Type.String(),
});
export const FieldsAnswerSchema = Type.Object({
  fields: Type.Object(Object.fromEntries(TYPE_FIELDS.map((f: FieldSpec) => [f.name, FieldDescriptionSchema]))),
});

export const EntityTypeIdParamsSchema = Type.Object({
  entityTypeId: PositiveInt32Param({ description: 'Entity type ID. List: GET /v1/smart-processes', example: 1050 }),
});
