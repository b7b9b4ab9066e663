// What the reference SDK does at the edges of key material: an empty key, and key
// material longer than the wire's 2,048-character limit on `idempotencyKey`.
//
// Generates reference_edges.json beside it, which crates/sdk/tests/edges.rs reads.
// Run with the reference packages installed (npm is enough, no server):
//
//   npm install @trigger.dev/core@4.8.3 @trigger.dev/sdk@4.8.3
//   NODE_PATH=$PWD/node_modules node crates/sdk/tests/data/reference_edges.cjs
"use strict";
const fs = require("fs");
const path = require("path");
const core = require("@trigger.dev/core/v3");
const { createIdempotencyKey, flattenIdempotencyKey, makeIdempotencyKey } = core;
const { BatchItemNDJSON } = require("@trigger.dev/core/v3/schemas");

const version = require("@trigger.dev/core/package.json").version;
const sdkVersion = require("@trigger.dev/sdk/package.json").version;

function validates(item) {
  const parsed = BatchItemNDJSON.safeParse(item);
  return parsed.success ? { accepted: true } : { accepted: false, message: parsed.error.issues[0].message };
}

(async () => {
  const longMaterial = "k".repeat(100 * 1024);
  const longKey = await createIdempotencyKey(longMaterial, { scope: "global" });
  const emptyKey = await createIdempotencyKey("", { scope: "global" });
  const item = (idempotencyKey, options) => ({
    index: 0,
    task: "child-task",
    payload: {},
    options: { idempotencyKey, idempotencyKeyOptions: options },
  });
  const out = {
    core: version,
    sdk: sdkVersion,
    // createIdempotencyKey("") is the digest of the empty string, a real key...
    create_empty: { hash: emptyKey, length: emptyKey.length },
    // ...while an empty string given where a key is expected is no key.
    flatten_empty: flattenIdempotencyKey("") === undefined,
    make_empty: (await makeIdempotencyKey("")) === undefined,
    // 100 KiB of key material: hashed, and kept whole as the options' key.
    create_long: { material_chars: longMaterial.length, hash_length: longKey.length },
    // The schema caps `idempotencyKey` at 2,048 characters, not the options' key.
    wire_long_options_key: validates(item(longKey, { key: longMaterial, scope: "global" })),
    wire_long_idempotency_key: validates(item("k".repeat(2049), undefined)),
    wire_2048_idempotency_key: validates(item("k".repeat(2048), undefined)),
  };
  const file = path.join(__dirname, "reference_edges.json");
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  console.log(JSON.stringify(out));
})();
