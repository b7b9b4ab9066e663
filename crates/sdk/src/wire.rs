use std::io::Write;

use idempotency_catalog::KeyOptions;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;

/// One item of a batch request, as the reference API accepts it; one NDJSON line each.
/// Absent fields are omitted, not `null`.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::WireItem;
///
/// let line = r#"{"index":0,"task":"child-task","payload":{"i":0},"options":{"idempotencyKey":"69b65bbed30ca00a0c4bbebbfd780cbd0d20cf36422420b8093fd92e47f3f9e9","idempotencyKeyTTL":"7d","idempotencyKeyOptions":{"key":"item-0","scope":"global"}}}"#;
/// let item = WireItem::from_json(line)?;
/// assert_eq!(item.options.as_ref().and_then(|o| o.idempotency_key_options.as_ref()).map(|o| o.key()), Some("item-0"));
/// assert_eq!(serde_json::to_string(&item).unwrap(), line);
///
/// let err = WireItem::from_json(r#"{"index":-1,"task":"t"}"#).unwrap_err();
/// assert!(err.to_string().starts_with("invalid batch item at index: "), "{err}");
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WireItem {
    /// The item's position in the batch.
    pub index: u64,
    /// The task to trigger.
    pub task: String,
    /// The payload, if any, as JSON text: serialized once, when the item was made (as
    /// the reference SDK does), and sent as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<RawValue>>,
    /// The options, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<WireOptions>,
}

/// The idempotency part of an item's options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WireOptions {
    /// The key that deduplicates: a digest, or a raw key passed through verbatim.
    #[serde(rename = "idempotencyKey", default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How long the key deduplicates, such as `"7d"`.
    #[serde(rename = "idempotencyKeyTTL", default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key_ttl: Option<String>,
    /// The original key and scope, for run records and dashboards.
    #[serde(rename = "idempotencyKeyOptions", default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key_options: Option<KeyOptions>,
}

impl PartialEq for WireItem {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
            && self.task == other.task
            && self.payload.as_deref().map(RawValue::get) == other.payload.as_deref().map(RawValue::get)
            && self.options == other.options
    }
}

impl WireItem {
    /// The longest `idempotencyKey` the server accepts, in characters (UTF-16 code
    /// units, as the reference schema counts them); [`validate`](Self::validate), and so
    /// [`from_json`](Self::from_json), refuse a longer one.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::WireItem;
    ///
    /// let item = |key: &str| WireItem::from_json(&format!(r#"{{"index":0,"task":"t","options":{{"idempotencyKey":"{key}"}}}}"#));
    /// assert!(item(&"k".repeat(WireItem::MAX_KEY_LEN))?.validate().is_ok());
    /// let err = item(&"k".repeat(WireItem::MAX_KEY_LEN + 1)).unwrap_err();
    /// assert!(err.to_string().ends_with("the server accepts at most 2048"), "{err}");
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub const MAX_KEY_LEN: usize = 2_048;

    pub(crate) fn new(index: usize, task: &str, payload: Option<Box<RawValue>>, options: Option<WireOptions>) -> Self {
        WireItem { index: index as u64, task: task.to_owned(), payload, options }
    }

    /// Parses one NDJSON line and [validates](Self::validate) it.
    ///
    /// # Errors
    ///
    /// [`Error::Wire`] naming the path of the first bad field (`index`,
    /// `options.idempotencyKeyOptions.scope`, …) and what was expected, or
    /// [`Error::KeyTooLong`].
    pub fn from_json(line: &str) -> Result<Self, Error> {
        let mut de = serde_json::Deserializer::from_str(line);
        let item: WireItem = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let mut path = err.path().to_string();
            let message = tamed(&err.into_inner().to_string());
            // A missing field is reported at its parent; name the field itself.
            if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                path = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
            }
            Error::Wire { path, message }
        })?;
        de.end().map_err(|err| Error::Wire { path: ".".to_owned(), message: tamed(&err.to_string()) })?;
        item.validate()?;
        Ok(item)
    }

    /// Checks what the server would refuse and the types cannot express: a key longer
    /// than [`MAX_KEY_LEN`](Self::MAX_KEY_LEN).
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLong`] naming the item's index.
    pub fn validate(&self) -> Result<(), Error> {
        let key = self.options.as_ref().and_then(|o| o.idempotency_key.as_deref()).unwrap_or_default();
        // Cheap first: a key of at most 2,048 bytes is at most 2,048 UTF-16 units.
        if key.len() > Self::MAX_KEY_LEN {
            let len = key.encode_utf16().count();
            if len > Self::MAX_KEY_LEN {
                return Err(Error::KeyTooLong { index: usize::try_from(self.index).unwrap_or(usize::MAX), len });
            }
        }
        Ok(())
    }
}

/// A parser's message as an error shows it: serde quotes some values (a string where
/// a number was expected) but not others (an unknown variant, in backticks), and
/// quotes them whole: control characters are escaped here, and the message is cut at
/// 256 characters with its length shown, as `shown` does for a value.
fn tamed(message: &str) -> String {
    const MAX: usize = 256;
    let mut out = String::with_capacity(message.len().min(MAX + 32));
    for (n, c) in message.chars().enumerate() {
        if n == MAX {
            out.push_str(&format!("… ({} characters)", message.chars().count()));
            break;
        }
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

/// Writes `items` as NDJSON: one JSON object a line.
pub(crate) fn write_ndjson(items: impl IntoIterator<Item = WireItem>, mut out: impl Write) -> Result<(), Error> {
    for item in items {
        serde_json::to_writer(&mut out, &item).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_message_shows_no_raw_control_character_and_stays_short() {
        // serde names an unknown variant in backticks, unescaped.
        let line = r#"{"index":0,"task":"t","options":{"idempotencyKeyOptions":{"key":"k","scope":"x\n\u001b[31m"}}}"#;
        let err = WireItem::from_json(line).unwrap_err().to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.contains(r"unknown variant `x\n\u{1b}[31m`"), "{err}");
        let long = format!(r#"{{"index":"{}","task":"t"}}"#, "9".repeat(100_000));
        let err = WireItem::from_json(&long).unwrap_err().to_string();
        assert!(err.len() < 400 && err.contains(" characters)"), "{} bytes", err.len());
    }
}
