//! Without feature `tokio`: what the handle and the catalog keep for async calls
//! (`future/`), empty, so that neither names the feature.

/// No async connections: a field of this type is never read, as the lint knows.
pub(super) type AsyncLinks = std::marker::PhantomData<()>;

/// No background sender: a catalog never has one.
pub(super) enum Sender {}

impl Sender {
    pub(super) fn ring(&self) {
        match *self {}
    }

    pub(super) fn close(&self) {
        match *self {}
    }
}
