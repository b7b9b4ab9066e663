//! The task SDK layer over [`idempotency_catalog`]. Empty until its own issue lands.
