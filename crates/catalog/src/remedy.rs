//! What a warning tells its reader to change: the limit that bound, raised from where
//! it was set. A builder call wins over its variable, so a remedy that named the
//! variable while code set the value would change nothing; each setting keeps its
//! source (builder, environment, default) to name the right one.

use std::fmt::Write as _;
use std::time::Duration;

use crate::budget::show_bytes;
use crate::env;
use crate::kind::CatalogKind;
use crate::telemetry::{Limit, Source, Sources};

/// Where one setting came from, and the call that sets it in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) source: Source,
    /// The builder method, or the constructor the catalog was made with.
    pub(crate) call: &'static str,
    /// Whether the catalog was built by a builder that reads the variable: a catalog
    /// made by its constructor reads none.
    pub(crate) reads_env: bool,
}

impl Origin {
    const fn new(source: Source, call: &'static str) -> Self {
        Origin { source, call, reads_env: true }
    }
}

/// Where each setting of a catalog came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origins {
    pub(crate) kind: Origin,
    pub(crate) capacity: Origin,
    pub(crate) max_capacity: Origin,
    pub(crate) max_bytes: Origin,
    pub(crate) retain: Origin,
}

impl Origins {
    /// A catalog made by `call` (`LruCatalog::with_capacity`): every setting given in
    /// code, or left at what that constructor gives; no variable read.
    pub(crate) const fn constructed(call: &'static str, source: Source) -> Self {
        let origin = Origin { source, call, reads_env: false };
        Origins { kind: origin, capacity: origin, max_capacity: origin, max_bytes: origin, retain: origin }
    }

    /// A catalog of `CatalogBuilder` with every setting at its default.
    pub(crate) const fn builder() -> Self {
        Origins {
            kind: Origin::new(Source::Default, "CatalogBuilder::kind"),
            capacity: Origin::new(Source::Default, "CatalogBuilder::capacity"),
            max_capacity: Origin::new(Source::Default, "CatalogBuilder::max_capacity"),
            max_bytes: Origin::new(Source::Default, "CatalogBuilder::max_bytes"),
            retain: Origin::new(Source::Default, "CatalogBuilder::retain"),
        }
    }

    pub(crate) fn sources(&self) -> Sources {
        Sources {
            kind: self.kind.source,
            capacity: self.capacity.source,
            max_capacity: self.max_capacity.source,
            max_bytes: self.max_bytes.source,
            retain: self.retain.source,
        }
    }
}

/// The values a remedy quotes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Values {
    pub(crate) kind: CatalogKind,
    /// An LRU's capacity, a batch-scaled catalog's base.
    pub(crate) capacity: Option<usize>,
    pub(crate) ceiling: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) retain: Option<Duration>,
}

/// How to raise `limit`, from where it was set.
pub(crate) fn remedy(limit: Limit, values: Values, origins: &Origins) -> String {
    let base = values.capacity.map_or_else(|| "none".to_owned(), |n| n.to_string());
    match limit {
        Limit::Entries => {
            let mut text = raise("capacity", env::CAPACITY, origins.capacity, &base);
            if values.kind == CatalogKind::Lru {
                let switch = match (origins.kind.source, origins.kind.reads_env) {
                    (_, false) => "BatchScaledCatalog".to_owned(),
                    (Source::Env, _) => format!("{}=batch-scaled", env::KIND),
                    _ => "CatalogBuilder::kind(CatalogKind::BatchScaled)".to_owned(),
                };
                let _ = write!(text, ", or use a batch-scaled catalog, which keeps a run's keys ({switch})");
            }
            text
        }
        Limit::Ceiling => {
            let ceiling = values.ceiling.map_or_else(|| "none".to_owned(), |n| n.to_string());
            raise("ceiling", env::MAX_CAPACITY, origins.max_capacity, &ceiling)
        }
        Limit::Bytes => {
            let budget = values.max_bytes.map_or_else(|| "none".to_owned(), show_bytes);
            raise("byte budget", env::MAX_BYTES, origins.max_bytes, &budget)
        }
        Limit::Retention => match values.retain {
            Some(retain) => raise("retention", env::RETAIN, origins.retain, &duration(retain)),
            None => keeps_none(origins.retain, &base),
        },
    }
}

/// "raise X" from where the setting's value `now` was set.
fn raise(setting: &str, variable: &str, origin: Origin, now: &str) -> String {
    let call = origin.call;
    match (origin.source, origin.reads_env) {
        (Source::Env, _) => format!("raise {variable} (set to {now})"),
        (Source::Builder, true) => {
            format!("raise {call} (set in code to {now}; {variable} is not read while code sets it)")
        }
        (Source::Builder, false) => format!("raise the {setting} given to {call} ({now})"),
        (_, true) => format!("raise the {setting} with {variable} or {call} (the default, {now})"),
        (_, false) => format!("raise the {setting} with {call} (the default, {now})"),
    }
}

/// The remedy when no retention is kept: what turned it off, and how to turn it on.
fn keeps_none(origin: Origin, base: &str) -> String {
    let run = "or register keys through a run (Sdk::with_run, Reservation::register)";
    let variable = env::RETAIN;
    match (origin.source, origin.reads_env) {
        (Source::Env, _) => format!(
            "{variable}=0s keeps no free key past the base of {base}: set it to a duration such as 10m, or unset it \
             for the default (10m); {run}"
        ),
        (_, true) => format!(
            "{}(0s) in code keeps no free key past the base of {base}: give it a duration such as 10m ({variable} \
             is not read while code sets it); {run}",
            origin.call
        ),
        (_, false) => format!(
            "{} keeps no free key past its base of {base}: build the catalog with CatalogBuilder, which keeps them \
             10m by default (CatalogBuilder::retain), or raise the capacity given to {}; {run}",
            origin.call, origin.call
        ),
    }
}

/// A duration as the variable takes it: `10m`, `2h`, `90s`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (suffix, unit) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= unit && secs.is_multiple_of(unit) {
            return format!("{}{suffix}", secs / unit);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_written_as_the_variables_take_them() {
        assert_eq!(
            (show_bytes(16 << 20), show_bytes(1 << 30), show_bytes(65_536), show_bytes(100_000)),
            ("16MiB".into(), "1GiB".into(), "64KiB".into(), "100000".into())
        );
        let d = |s| duration(Duration::from_secs(s));
        assert_eq!(
            (d(600), d(7_200), d(86_400), d(90), d(0)),
            ("10m".into(), "2h".into(), "1d".into(), "90s".into(), "0s".into())
        );
    }
}
