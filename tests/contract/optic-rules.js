// Stockroom's additions to Optic's `breaking-changes` ruleset (optic.yml
// runs both): the breaking changes Optic 1.0.9 lets through on our document,
// each proven by a mutated copy in tests/contract/lint.rs.
//
// - Removed query/header/cookie parameters: Optic calls them compatible, but
//   the API refuses unknown query parameters (400 `invalid_parameter`), so a
//   client still sending one would start failing, and a header it stops
//   reading (`Idempotency-Key`) silently changes what a request does.
// - Enum values anywhere in a body schema: Optic checks enums only on plain
//   object properties; it skips array items (`events: [SubscribableEventType]`)
//   and `oneOf`/`anyOf` branches (utoipa writes `Option<UploadFormat>` as
//   `oneOf: [{type: null}, {$ref}]`). A request may not drop a value; a
//   response may not add one.
// - Closed request schemas (`additionalProperties: false`: the API refuses
//   unknown fields): closing one, or removing a property from one, refuses
//   bodies that were accepted before.
// - Webhooks: Optic does not read the `webhooks` section; an event type may
//   not disappear from it.
'use strict';

const {
  Ruleset,
  OperationRule,
  RequestRule,
  ResponseBodyRule,
  SpecificationRule,
  RuleError,
} = require('@useoptic/rulesets-base');

const decode = (pointer) =>
  pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));

// Where in the body a schema node is, for messages: `body`, `events.items`, `format.oneOf.1`.
const bodyPath = (jsonPath) => {
  const parts = decode(jsonPath);
  const content = parts.indexOf('content');
  const rest = content < 0 ? parts : parts.slice(content + 3); // content, media type, schema
  const named = rest.filter((p) => p !== 'properties');
  return named.length ? named.join('.') : 'body';
};

const enumValues = (schema) => {
  if (!schema || typeof schema !== 'object') return null;
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v));
  if ('const' in schema) return [JSON.stringify(schema.const)];
  return null;
};

// Optic's own `request and response property enums` rule covers a property
// outside any union: leave those to it (one report per change).
const coveredByOptic = (jsonPath, schema) => {
  const parts = decode(jsonPath);
  const isProperty = parts.length >= 2 && parts[parts.length - 2] === 'properties';
  const inUnion = parts.some((p) => p === 'oneOf' || p === 'anyOf');
  const isUnion = !!(schema && (schema.oneOf || schema.anyOf));
  return isProperty && !inUnion && !isUnion;
};

// Added and removed operations are Optic's business (removal is breaking).
const existingOperation = (_value, context) =>
  context.operation.change !== 'added' && context.operation.change !== 'removed';

const checkEnum = (where) => (before, after) => {
  const was = enumValues(before.raw);
  const now = enumValues(after.raw);
  if (!was && !now) return;
  if (coveredByOptic(after.location.jsonPath, after.raw)) return;
  const at = bodyPath(after.location.jsonPath);
  if (where === 'request') {
    if (!was) {
      throw new RuleError({
        message: `cannot restrict request schema ${at} to an enum. This is a breaking change.`,
      });
    }
    const removed = now ? was.filter((v) => !now.includes(v)) : [];
    if (removed.length) {
      throw new RuleError({
        message: `cannot remove enum value(s) ${removed.join(', ')} from request schema ${at}. This is a breaking change.`,
      });
    }
  } else {
    if (!now) {
      throw new RuleError({
        message: `cannot drop the enum of response schema ${at}. This is a breaking change.`,
      });
    }
    const added = was ? now.filter((v) => !was.includes(v)) : [];
    if (added.length) {
      throw new RuleError({
        message: `cannot add enum value(s) ${added.join(', ')} to response schema ${at}. This is a breaking change.`,
      });
    }
  }
};

const preventParameterRemoval = (kind) =>
  new OperationRule({
    name: `stockroom: prevent removing ${kind} parameters`,
    matches: existingOperation,
    rule: (operation) => {
      operation[`${kind}Parameter`].removed((parameter) => {
        throw new RuleError({
          message: `cannot remove ${kind} parameter '${parameter.value.name}': the API refuses unknown parameters. This is a breaking change.`,
        });
      });
    },
  });

const requestEnums = new RequestRule({
  name: 'stockroom: request enums in items and unions',
  matches: existingOperation,
  rule: (request) => request.schema.changed(checkEnum('request')),
});

const responseEnums = new ResponseBodyRule({
  name: 'stockroom: response enums in items and unions',
  matches: existingOperation,
  rule: (response) => response.schema.changed(checkEnum('response')),
});

const closedRequestSchemas = new RequestRule({
  name: 'stockroom: closed request schemas',
  matches: existingOperation,
  rule: (request) =>
    request.schema.changed((before, after) => {
      if (!after.raw || after.raw.additionalProperties !== false) return;
      const at = bodyPath(after.location.jsonPath);
      if (before.raw && before.raw.additionalProperties !== false) {
        throw new RuleError({
          message: `cannot close request schema ${at} (additionalProperties: false): bodies with other fields were accepted. This is a breaking change.`,
        });
      }
      const kept = Object.keys(after.raw.properties || {});
      const gone = Object.keys((before.raw && before.raw.properties) || {}).filter(
        (p) => !kept.includes(p),
      );
      if (gone.length) {
        throw new RuleError({
          message: `cannot remove ${gone.join(', ')} from closed request schema ${at}: bodies sending it are now refused. This is a breaking change.`,
        });
      }
    }),
});

const webhookEvents = new SpecificationRule({
  name: 'stockroom: prevent removing webhooks',
  rule: (specification) =>
    specification.changed((before, after) => {
      const now = Object.keys((after.raw && after.raw.webhooks) || {});
      const gone = Object.keys((before.raw && before.raw.webhooks) || {}).filter(
        (w) => !now.includes(w),
      );
      if (gone.length) {
        throw new RuleError({
          message: `cannot remove webhook(s) ${gone.join(', ')}. This is a breaking change.`,
        });
      }
    }),
});

module.exports = {
  configSchema: { type: 'object' },
  rulesetConstructor: () =>
    new Ruleset({
      name: 'Stockroom breaking changes',
      rules: [
        preventParameterRemoval('query'),
        preventParameterRemoval('header'),
        preventParameterRemoval('cookie'),
        requestEnums,
        responseEnums,
        closedRequestSchemas,
        webhookEvents,
      ],
    }),
};
