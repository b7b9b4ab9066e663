// Generates batch_key_vectors.jsonl: the idempotency key the reference SDK gives item
// `index` of a batch triggered with a batch-level `idempotencyKey`, computed by the
// reference's own code (@trigger.dev/core 4.8.3), exactly as its batch trigger does:
//
//   makeIdempotencyKey(flattenIdempotencyKey([options.idempotencyKey, `${index}`]))
//
// with the item's own key winning when it gives one: `(await makeIdempotencyKey(itemKey))
// ?? batchItemKey` (so an empty item key falls back to the derived one).
//
// Regenerate (from this folder):
//   npm install --no-save --prefix /tmp/ref @trigger.dev/core@4.8.3
//   NODE_PATH=/tmp/ref/node_modules node generate-batch-key-vectors.cjs > batch_key_vectors.jsonl
"use strict";

const {
  flattenIdempotencyKey,
  makeIdempotencyKey,
  createIdempotencyKey,
  getIdempotencyKeyOptions,
  resetIdempotencyKeyCatalog,
  taskContext,
} = require("@trigger.dev/core/v3");

function enterRun(runId, attempt) {
  taskContext.setGlobalTaskContext({
    ctx: { run: { id: runId }, attempt: { number: attempt } },
    worker: {},
    isWarmStart: false,
  });
}

function leaveRun() {
  taskContext.disable();
}

// Batch keys as a caller passes them: a string, a list, an empty string, a list with
// empty or nested parts, a key created with idempotencyKeys.create, or none.
const BATCH_KEYS = [
  { kind: "string", value: "nightly" },
  { kind: "string", value: "" },
  { kind: "string", value: "nightly-2026-11-28" },
  { kind: "list", value: ["a", "b"] },
  { kind: "list", value: ["a", "", "b"] },
  { kind: "list", value: [] },
  { kind: "list", value: ["only"] },
  { kind: "created", value: "nightly", scope: "global" },
  { kind: "created", value: "nightly", scope: "run" },
  { kind: "none", value: null },
];

const ITEM_KEYS = [null, ""];

async function main() {
  const contexts = [null, { run_id: "run_abc123", attempt: 2 }];
  for (const context of contexts) {
    if (context) enterRun(context.run_id, context.attempt);
    else leaveRun();
    for (const batchKey of BATCH_KEYS) {
      resetIdempotencyKeyCatalog();
      let passed = batchKey.value;
      let created = null;
      if (batchKey.kind === "created") {
        passed = await createIdempotencyKey(batchKey.value, { scope: batchKey.scope });
        created = { key: batchKey.value, scope: batchKey.scope, hash: passed };
      }
      for (const itemKey of ITEM_KEYS) {
        for (const index of [0, 1, 41]) {
          const derived = await makeIdempotencyKey(flattenIdempotencyKey([passed ?? undefined, `${index}`]));
          const own = await makeIdempotencyKey(itemKey ?? undefined);
          const hash = own ?? derived ?? null;
          const options = hash ? getIdempotencyKeyOptions(hash) ?? null : null;
          console.log(
            JSON.stringify({
              batch_key: batchKey.kind === "none" ? null : passed,
              batch_key_kind: batchKey.kind,
              created,
              item_key: itemKey,
              index,
              run_id: context ? context.run_id : null,
              attempt: context ? context.attempt : null,
              hash,
              user_key: options ? options.key : null,
              scope: options ? options.scope : null,
            }),
          );
        }
      }
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
