use std::hash::BuildHasher;
use std::io::Write;
use std::sync::Arc;

use hashbrown::HashTable;

use idempotency_catalog::hash::DigestState;
use idempotency_catalog::{Catalog, CatalogKind, Digest, Limit, Reservation, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blocks::Blocks;
use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::key_input::{KeyInput, Keys};
use crate::payload::{Fingerprint, Payload};
use crate::sdk::Sdk;
use crate::wire::{WireItem, WireOptions, write_ndjson};
use idempotency_catalog::Ttl;

/// What a batch does when items end up without their key options (a bare digest the
/// catalog no longer knew).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossPolicy {
    /// Build the batch and say nothing (the report still counts the loss).
    Ignore,
    /// Build the batch and emit one aggregated `WARN` naming the count, the catalog's
    /// capacity and the remedy.
    #[default]
    Warn,
    /// Refuse to build the batch: [`Error::OptionsLost`], before anything is sent.
    Fail,
}

/// An item's idempotency options: its key and TTL.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{ItemOptions, Ttl};
///
/// let options = ItemOptions::new().key("order-123").ttl("7d".parse::<Ttl>()?);
/// # let _ = options;
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemOptions {
    key: Option<KeyInput>,
    ttl: Option<Ttl>,
}

impl ItemOptions {
    /// No key, no TTL.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key: an [`IdempotencyKey`], a raw string or a list (see [`KeyInput`]).
    #[must_use]
    pub fn key(mut self, key: impl Into<KeyInput>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets how long the key deduplicates; the server's default is [`Ttl::DEFAULT`].
    #[must_use]
    pub fn ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Collects the items of a batch while holding room for them in the catalog; see
/// [`Sdk::batch`].
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{ItemOptions, Scope, Sdk};
/// use serde_json::json;
///
/// let sdk = Sdk::from_env()?;
/// let mut batch = sdk.batch("child-task", 3);
/// for i in 0..3 {
///     let key = sdk.create_key(["item", &i.to_string()], Scope::Global)?;
///     // Passing the digest alone, as a caller relaying keys through a payload would.
///     batch.item(json!({ "i": i }), ItemOptions::new().key(key.to_string()));
/// }
/// let batch = batch.build()?;
/// assert_eq!(batch.report().with_options, 3);
/// let third = batch.keys().nth(2).flatten().unwrap();
/// assert_eq!(third.options().unwrap().key(), "item-2");
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
///
/// A builder owns what it needs (a handle to the SDK and its reservation), so it can
/// be moved into a spawned task and held across an `.await`: it is `Send + Sync +
/// 'static`. Building a very large batch is CPU work (hashing and registering keys);
/// in an async service, add its items on a blocking thread (`spawn_blocking`) rather
/// than on the runtime's workers.
#[derive(Debug)]
pub struct BatchBuilder {
    sdk: Sdk,
    task: String,
    batch_key: Option<KeyInput>,
    /// Items, their keys resolved as they were added.
    entries: Blocks<Entry>,
    /// Where each payload is serialised before it is kept (see [`Payload`]).
    buffer: Vec<u8>,
    /// The first item whose key did not resolve; `build` reports it.
    failed: Option<Error>,
    room: Reservation<'static>,
    /// The catalog's eviction count when the batch opened: keys created for it since
    /// then may have been evicted before `build` resolves them.
    evictions_at_open: u64,
    /// Items added without options so far, by cause, as found when each was added.
    lost: Lost,
}

/// Items without options, by cause, and by the limit that dropped the evicted ones.
#[derive(Debug, Default, Clone, Copy)]
struct Lost {
    evicted_before_open: usize,
    evicted_while_building: usize,
    never_registered: usize,
    by_limit: [usize; 4],
}

impl BatchBuilder {
    pub(crate) fn new(sdk: &Sdk, task: String, expected_items: usize) -> Self {
        let evictions_at_open = sdk.catalog().stats().evicted;
        let room = Reservation::shared(Arc::clone(sdk.catalog()), expected_items);
        BatchBuilder {
            sdk: sdk.clone(),
            task,
            batch_key: None,
            entries: Blocks::with_capacity(expected_items),
            buffer: Vec::new(),
            failed: None,
            room,
            evictions_at_open,
            lost: Lost::default(),
        }
    }

    /// Counts why `key`, just resolved, has no options: what the catalog remembers of
    /// dropping its digest, now, when it was looked up.
    fn count_lost(&mut self, key: &IdempotencyKey) {
        match self.sdk.catalog().forgotten(&key.digest()) {
            Some(forgotten) => {
                if forgotten.evicted <= self.evictions_at_open {
                    self.lost.evicted_before_open += 1;
                } else {
                    self.lost.evicted_while_building += 1;
                }
                if let Some(count) = self.lost.by_limit.get_mut(limit_index(forgotten.limit)) {
                    *count += 1;
                }
            }
            None => self.lost.never_registered += 1,
        }
    }

    /// Where this batch registers the keys it makes: the run's reservation inside a
    /// run (the keys outlive the batch), else the batch's own.
    fn keys(&self) -> Keys<'_> {
        keys(&self.sdk, &self.room)
    }

    /// Gives the batch a key. Items without a key of their own (none, or an empty
    /// string) then get one derived from it and their index exactly as the reference
    /// SDK derives it: `makeIdempotencyKey(flattenIdempotencyKey([batchKey, index]))`,
    /// i.e. the batch key's own material and the index, hashed with scope `run`.
    ///
    /// | batch key | material of item 0 |
    /// |---|---|
    /// | `"nightly"` | `["nightly", "0"]` |
    /// | `""` | `["0"]` |
    /// | `vec!["a", "b"]` | `["a,b", "0"]` (a list is one element, joined with commas; its empty parts drop out) |
    /// | an [`IdempotencyKey`] | `["<its 64 hex digits>", "0"]` |
    ///
    /// Unlike the reference, the derived keys carry readable options: the material
    /// joined with `-` (`nightly-0`), scope `run`.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{ItemOptions, RunContext, Sdk};
    ///
    /// let sdk = Sdk::from_env()?.with_run(RunContext::new("run_abc123", 1));
    /// let mut batch = sdk.batch("child-task", 1);
    /// batch.batch_key("nightly").item(None, ItemOptions::new());
    /// let batch = batch.build()?;
    /// let key = batch.keys().next().flatten().unwrap();
    /// // SHA-256 of "nightly-0-run_abc123".
    /// assert!(key.to_string().starts_with("c018a900"));
    /// assert_eq!(key.options().map(|o| o.key()), Some("nightly-0"));
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn batch_key(&mut self, key: impl Into<KeyInput>) -> &mut Self {
        self.batch_key = Some(key.into());
        self
    }

    /// Adds an item, resolving its key now: a digest string finds its options in the
    /// catalog at once, so creating a key and adding it straight away never loses its
    /// options, however small the catalog. A key that does not resolve fails
    /// [`build`](Self::build), naming the item's index.
    ///
    /// The payload is serialized to JSON text now, as the reference SDK serializes
    /// each item's payload when the batch is made: the batch keeps the text it will
    /// send (a few dozen bytes for a small object, where a `Value` object costs
    /// hundreds), and the engine stores it as is.
    pub fn item(&mut self, payload: impl Into<Option<Value>>, options: ItemOptions) -> &mut Self {
        let index = self.entries.len();
        let buffer = &mut self.buffer;
        let payload = match payload.into().as_ref().map(|value| Payload::of_value(value, buffer)).transpose() {
            Ok(payload) => payload,
            Err(err) => {
                let error = Error::Wire { path: "payload".to_owned(), message: err.to_string() };
                self.failed.get_or_insert(Error::Item { index, error: Box::new(error) });
                None
            }
        };
        let key = match options.key.map(|input| input.into_key(&self.keys(), self.sdk.run())) {
            // No key, or one that is no key (an empty string): derived from the batch
            // key, if the batch gets one, as the reference does.
            None | Some(Ok(None)) => Key::FromBatch,
            Some(Ok(key)) => {
                if let Some(key) = key.as_ref().filter(|key| key.options().is_none()) {
                    self.count_lost(key);
                }
                Key::Given(key)
            }
            Some(Err(error)) => {
                self.failed.get_or_insert(Error::Item { index, error: Box::new(error) });
                Key::Given(None)
            }
        };
        // Fingerprinted here, beside the serialisation, rather than in the engine's
        // trigger: it is what lets a trigger compare payloads for a few instructions.
        let fingerprint = Fingerprint::of(payload.as_ref().map(Payload::text));
        self.entries.push(Entry { payload, key, ttl: options.ttl, fingerprint });
        self
    }

    /// How many items have been added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no item has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Derives the keys of items that have none from the batch key, and returns the
    /// batch with its report. The room is released when this returns.
    ///
    /// # Errors
    ///
    /// [`Error::Item`] naming the index of the first item whose key did not resolve,
    /// or, under [`LossPolicy::Fail`], [`Error::OptionsLost`]. (Keys are always
    /// 64-character digests on the wire, so none is ever too long.)
    pub fn build(mut self) -> Result<Batch, Error> {
        let _span =
            tracing::info_span!("idempotency.batch.build", task = %self.task, items = self.entries.len()).entered();
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let keys = keys(&self.sdk, &self.room);
        let run = self.sdk.run();
        if let Some(KeyInput::Invalid { value, reason }) = &self.batch_key {
            return Err(Error::InvalidKeyMaterial { value: value.clone(), reason: reason.clone() });
        }
        if let Some(batch_key) = &self.batch_key {
            let head = flattened(batch_key);
            for (at, entry) in self.entries.iter_mut().enumerate() {
                if matches!(entry.key, Key::FromBatch) {
                    let index = at.to_string();
                    let derived = match &head {
                        Some(head) => IdempotencyKey::derive([head.as_str(), &index], Scope::Run, run),
                        None => IdempotencyKey::derive([index.as_str()], Scope::Run, run),
                    };
                    entry.key = Key::Given(Some(keys.register(derived)));
                }
            }
        }

        let catalog = keys.catalog();
        let mut report = BatchReport { items: self.entries.len(), ..BatchReport::default() };
        let mut seen = Seen::with_capacity(self.entries.len());
        let entries = &self.entries;
        for (index, key) in entries.iter().enumerate().filter_map(|(index, entry)| Some((index, entry.key()?))) {
            report.keyed += 1;
            match key.options() {
                Some(_) => report.with_options += 1,
                None => report.without_options += 1,
            }
            if let Some(first) = seen.insert(entries, index, key.digest()) {
                report.repeated += 1;
                // The same key with another payload in one batch: the engine answers
                // it with the first's run, under its payload policy.
                if entries.get(first).map(|e| e.fingerprint) != entries.get(index).map(|e| e.fingerprint) {
                    report.payload_conflicts += 1;
                    report.first_payload_conflict.get_or_insert(index);
                }
            }
        }
        // Counted as each item was added, when its digest was looked up.
        report.evicted_before_open = self.lost.evicted_before_open;
        report.evicted_while_building = self.lost.evicted_while_building;
        report.never_registered = self.lost.never_registered;
        report.limit = LIMITS
            .into_iter()
            .zip(self.lost.by_limit)
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n)
            .map(|(limit, _)| limit);
        let stats = catalog.stats();
        report.evictions = stats.evicted.saturating_sub(self.evictions_at_open);
        report.catalog_kind = catalog.kind();
        report.catalog_capacity = stats.capacity;
        // What the reservation said would not fit, and did not: a batch whose keys
        // carry their options, or fit after all, lacked no room.
        report.shortfall = self.room.shortfall().min(report.without_options);
        crate::meter::batch_built(report.items, report.without_options);

        if report.without_options > 0 {
            match self.sdk.loss_policy() {
                LossPolicy::Ignore => {}
                LossPolicy::Warn => report.warn(&self.task, catalog),
                LossPolicy::Fail => {
                    return Err(Error::OptionsLost {
                        lost: report.without_options,
                        items: report.items,
                        kind: report.catalog_kind,
                        capacity: report.catalog_capacity,
                        cause: report.cause(),
                        remedy: report.remedy(catalog),
                    });
                }
            }
        }
        Ok(Batch { task: self.task, entries: self.entries, report })
    }
}

/// Where a batch registers the keys it makes: the run's reservation inside a run (the
/// keys outlive the batch), else the batch's own.
fn keys<'b>(sdk: &'b Sdk, room: &Reservation<'static>) -> Keys<'b> {
    match sdk.run() {
        Some(_) => sdk.keys(),
        None => Keys::new(sdk.catalog().as_ref(), Some(room.id())),
    }
}

/// What the reference's `flattenIdempotencyKey([batchKey, index])` makes of the batch
/// key: the element before the index, or `None` when it drops out (an empty string).
/// JavaScript turns a list inside the outer list into a string with commas, after
/// flattening drops its empty parts.
fn flattened(batch_key: &KeyInput) -> Option<String> {
    match batch_key {
        KeyInput::Raw(raw) if raw.is_empty() => None,
        KeyInput::Raw(raw) => Some(raw.clone()),
        KeyInput::Parts(parts) => {
            Some(parts.iter().filter(|part| !part.is_empty()).map(String::as_str).collect::<Vec<_>>().join(","))
        }
        KeyInput::Key(key) => Some(key.digest().to_hex_string()),
        // Refused by `build` before any key is derived from it.
        KeyInput::Invalid { .. } => None,
    }
}

/// The digests a batch has seen so far, for counting repeats.
///
/// The table holds item indices, not digests: 8 bytes a slot instead of 32, so that at
/// a million items it is 18 MB instead of 66 MB, which is the difference between
/// fitting in the CPU's last-level cache or not. A digest is compared only when the
/// table's 7-bit tag matches, which for a new digest is rare.
struct Seen {
    table: HashTable<usize>,
    hasher: DigestState,
}

impl Seen {
    fn with_capacity(items: usize) -> Self {
        Seen { table: HashTable::with_capacity(items), hasher: DigestState::default() }
    }

    /// Records that entry `index` has `digest`; the index of the earlier entry that
    /// had it, if one did.
    fn insert(&mut self, entries: &Blocks<Entry>, index: usize, digest: Digest) -> Option<usize> {
        let digest_at = |i: &usize| entries.get(*i).and_then(Entry::key).map(IdempotencyKey::digest);
        let hash = self.hasher.hash_one(digest);
        let hasher = &self.hasher;
        // The rehash closure must hash a `Digest` exactly as above, or entries moved by
        // a growing table could no longer be found.
        let rehash = |i: &usize| digest_at(i).map_or(0, |digest| hasher.hash_one(digest));
        match self.table.entry(hash, |i| digest_at(i) == Some(digest), rehash) {
            hashbrown::hash_table::Entry::Occupied(first) => Some(*first.get()),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(index);
                None
            }
        }
    }
}

/// Every limit, in the order `limit_index` counts them.
const LIMITS: [Limit; 4] = [Limit::Entries, Limit::Ceiling, Limit::Bytes, Limit::Retention];

fn limit_index(limit: Limit) -> usize {
    LIMITS.iter().position(|l| *l == limit).unwrap_or(0)
}

/// An iterator of a known length, for the public iterators over a batch's blocks.
struct Counted<I>(I, usize);

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next()?;
        self.1 = self.1.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

/// What building a batch found. Serializes as an object of its fields, for a status
/// endpoint or a log line, and reads back.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{BatchReport, ItemOptions, Sdk};
///
/// let sdk = Sdk::from_env()?;
/// let mut batch = sdk.batch("child-task", 1);
/// batch.item(None, ItemOptions::new().key("0".repeat(64))); // a digest never registered here
/// let report = *batch.build()?.report();
/// assert_eq!((report.without_options, report.never_registered), (1, 1));
/// let json = serde_json::to_string(&report).unwrap();
/// assert!(json.contains(r#""never_registered":1"#));
/// assert_eq!(serde_json::from_str::<BatchReport>(&json).unwrap(), report);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchReport {
    /// Items in the batch.
    pub items: usize,
    /// Items with an idempotency key.
    pub keyed: usize,
    /// Keyed items whose key and scope travel with them.
    pub with_options: usize,
    /// Keyed items without them: bare digests the catalog no longer knew. Their runs
    /// will show the digest instead of the key.
    pub without_options: usize,
    /// Keyed items whose digest appeared earlier in the same batch.
    pub repeated: usize,
    /// Repeated items whose payload differs from their key's first item in the batch
    /// (as JSON text): the engine answers them with the first's run, under its
    /// [`PayloadPolicy`](crate::PayloadPolicy) (one `WARN` by default, an error under
    /// `Fail`).
    pub payload_conflicts: usize,
    /// The index of the first of them.
    pub first_payload_conflict: Option<usize>,
    /// Of `without_options`, items whose digest the catalog dropped (at a limit, or
    /// when its retention ended) before the batch was opened: the keys were created,
    /// then pushed out before they were added.
    pub evicted_before_open: usize,
    /// Of `without_options`, items whose digest the catalog dropped after the batch was
    /// opened, before the item was added.
    pub evicted_while_building: usize,
    /// Of `without_options`, items whose digest this process's catalog never held, as
    /// far as it remembers (see [`Catalog::forgotten`](idempotency_catalog::Catalog::forgotten)):
    /// minted in another process, released when the run that held it ended, or dropped
    /// too long ago to be remembered. The three causes add up to `without_options`.
    pub never_registered: usize,
    /// The limit that dropped most of the evicted items, when any was.
    pub limit: Option<Limit>,
    /// Catalog evictions between opening the batch and building it (by any thread),
    /// of this batch's keys or others.
    pub evictions: u64,
    /// Items the catalog said would not fit when the batch reserved its room, and that
    /// did lose their options: never more than `without_options`.
    pub shortfall: usize,
    /// The catalog's kind.
    pub catalog_kind: CatalogKind,
    /// The catalog's capacity while the batch was built (its reservation included),
    /// `None` when unbounded.
    pub catalog_capacity: Option<usize>,
}

impl BatchReport {
    /// The cause of most lost items: `evicted before open`, `evicted while building`
    /// or `never registered`.
    pub fn cause(&self) -> &'static str {
        let causes = [
            (self.evicted_before_open, "evicted before open"),
            (self.evicted_while_building, "evicted while building"),
            (self.never_registered, "never registered"),
        ];
        // The first of the largest, by a stable rule.
        causes.iter().rev().max_by_key(|(n, _)| *n).map_or("never registered", |(_, name)| name)
    }

    /// What to change, for the cause of most lost items: the catalog's own remedy for
    /// the limit that dropped them (raised from where it was set), or for digests it
    /// never held, what makes them resolve.
    fn remedy(&self, catalog: &dyn Catalog) -> String {
        let typed = "pass IdempotencyKey values rather than digest strings (they carry their options)";
        match self.limit.filter(|_| self.never_registered < self.evicted_before_open + self.evicted_while_building) {
            Some(limit) => match catalog.remedy(limit) {
                Some(raise) => format!("{raise}; or {typed}, or add each key to the batch as it is created"),
                None => format!("{typed}, or add each key to the batch as it is created"),
            },
            None => format!(
                "{typed}, or create the keys in this process (Sdk::create_key), or share the catalog between \
                 processes (fleet mode: CatalogBuilder::redis)"
            ),
        }
    }

    fn warn(&self, task: &str, catalog: &dyn Catalog) {
        // Every field is documented in `docs/telemetry.md`.
        tracing::warn!(
            task,
            lost = self.without_options,
            items = self.items,
            kind = %self.catalog_kind,
            capacity = self.catalog_capacity.unwrap_or(usize::MAX),
            evictions = self.evictions,
            evicted_before_open = self.evicted_before_open,
            evicted_while_building = self.evicted_while_building,
            never_registered = self.never_registered,
            cause = self.cause(),
            limit = self.limit.map(Limit::as_str),
            remedy = self.remedy(catalog).as_str(),
            "batch items lost their idempotency key options; their runs will show digests instead of keys"
        );
    }
}

/// A built batch: its items with their resolved keys, ready to send, and the report.
///
/// Items are kept compact; [`wire_items`](Self::wire_items) and
/// [`write_ndjson`](Self::write_ndjson) produce the wire form.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    task: String,
    entries: Blocks<Entry>,
    report: BatchReport,
}

/// One item, its key resolved: what the engine triggers.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The payload as JSON text.
    pub(crate) payload: Option<Payload>,
    pub(crate) key: Key,
    pub(crate) ttl: Option<Ttl>,
    /// The payload's fingerprint, taken as it was serialised.
    pub(crate) fingerprint: Fingerprint,
}

/// An item's key: the one it was given (`None` for none, such as an empty string), or
/// one to derive from the batch key, if the batch gets one (once built, none).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Key {
    Given(Option<IdempotencyKey>),
    FromBatch,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.ttl == other.ttl && self.payload == other.payload
    }
}

impl Entry {
    pub(crate) fn key(&self) -> Option<&IdempotencyKey> {
        match &self.key {
            Key::Given(key) => key.as_ref(),
            Key::FromBatch => None,
        }
    }

    fn to_wire(&self, index: usize, task: &str) -> WireItem {
        let options = match (self.key(), self.ttl) {
            (None, None) => None,
            (key, ttl) => Some(WireOptions {
                idempotency_key: key.map(|key| key.digest().to_hex_string()),
                idempotency_key_ttl: ttl.map(|ttl| ttl.to_string()),
                idempotency_key_options: key.and_then(|key| key.options().cloned()),
            }),
        };
        WireItem::new(index, task, self.payload.as_ref().and_then(Payload::to_boxed), options)
    }
}

impl Batch {
    /// The task every item triggers.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// How many items the batch has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// The resolved key of each item, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = Option<&IdempotencyKey>> + '_ {
        Counted(self.entries.iter().map(Entry::key), self.entries.len())
    }

    /// The items in wire form, in order, built as they are iterated.
    pub fn wire_items(&self) -> impl ExactSizeIterator<Item = WireItem> + '_ {
        Counted(
            self.entries.iter().enumerate().map(|(index, entry)| entry.to_wire(index, &self.task)),
            self.entries.len(),
        )
    }

    /// The items, in order, for the engine.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The same, moved out, each block of them freed once read.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = Entry> {
        self.entries.into_iter()
    }

    /// What building found.
    pub fn report(&self) -> &BatchReport {
        &self.report
    }

    /// Writes the batch request as NDJSON, one item a line.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when writing fails.
    pub fn write_ndjson(&self, out: impl Write) -> Result<(), Error> {
        write_ndjson(self.wire_items(), out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use idempotency_catalog::UnboundedCatalog;
    use proptest::prelude::*;

    use super::*;

    /// Sized to the batch, the table never grows in `build`; here it starts empty, so
    /// that every insert past the first few rehashes what is already in it.
    #[test]
    fn repeats_are_found_after_the_table_grows() {
        let mut entries = Blocks::with_capacity(1_000);
        for i in 0..1_000 {
            entries.push(Entry {
                payload: None,
                key: Key::Given(Some(IdempotencyKey::derive(["k", &(i % 300).to_string()], Scope::Global, None))),
                ttl: None,
                fingerprint: Fingerprint::of(None),
            });
        }
        let mut seen = Seen { table: HashTable::new(), hasher: DigestState::default() };
        let digest = |i: usize| entries.get(i).and_then(Entry::key).unwrap().digest();
        let firsts: Vec<Option<usize>> = (0..entries.len()).map(|i| seen.insert(&entries, i, digest(i))).collect();
        assert_eq!(firsts.iter().filter(|first| first.is_none()).count(), 300);
        // A repeat names the first item with its key.
        assert!(firsts.iter().enumerate().all(|(i, first)| first.is_none_or(|first| first == i % 300)));
    }

    #[test]
    fn lengths_count_items_and_batches_compare_by_their_items() {
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        let build = |amount: u32, key: &str, ttl: Option<Ttl>| {
            let mut batch = sdk.batch("task", 2);
            assert!(batch.is_empty());
            assert_eq!(batch.len(), 0);
            let options = ItemOptions::new().key(key);
            batch.item(serde_json::json!({ "amount": amount }), ttl.map_or(options.clone(), |ttl| options.ttl(ttl)));
            batch.item(None, ItemOptions::new());
            assert!(!batch.is_empty() && batch.len() == 2);
            batch.build().unwrap()
        };
        let batch = build(1, "a", None);
        assert!(!batch.is_empty() && batch.len() == 2);
        assert_eq!(batch, build(1, "a", None));
        assert_ne!(batch, build(2, "a", None), "another payload");
        assert_ne!(batch, build(1, "b", None), "another key");
        assert_ne!(batch, build(1, "a", Some("5m".parse().unwrap())), "another ttl");
        let empty = sdk.batch("task", 0).build().unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
    }

    proptest! {
        /// Every keyed item whose digest appeared earlier counts as a repeat, whatever
        /// the mix of keyed and keyless items, and in whatever order.
        #[test]
        fn repeats_are_the_keyed_items_minus_the_distinct_digests(
            picks in proptest::collection::vec(proptest::option::of(0u8..40), 0..300),
        ) {
            let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
            let mut batch = sdk.batch("task", picks.len());
            for pick in &picks {
                let options = match pick {
                    Some(n) => ItemOptions::new().key(IdempotencyKey::derive(["k", &n.to_string()], Scope::Global, None)),
                    None => ItemOptions::new(),
                };
                batch.item(None, options);
            }
            let report = *batch.build().unwrap().report();
            let keyed = picks.iter().flatten().count();
            let distinct = picks.iter().flatten().collect::<HashSet<_>>().len();
            prop_assert_eq!(report.keyed, keyed);
            prop_assert_eq!(report.repeated, keyed - distinct);
        }
    }
}
