//! Async-friendliness, checked by the compiler: a batch builder held across an
//! `.await` inside a future with what `tokio::spawn` requires (`Send + 'static`), and the
//! SDK's handles shareable between threads. The future is driven here without a
//! runtime, so the test needs none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use idempotency_catalog::{Reservation, UnboundedCatalog};
use idempotency_sdk::{BatchBuilder, Engine, ItemOptions, RunContext, Scope, Sdk};

/// What `tokio::spawn` asks of a future.
fn spawnable<F: Future + Send + 'static>(future: F) -> F {
    future
}

fn shareable<T: Send + Sync + 'static>() {}

#[test]
fn the_sdk_types_can_cross_threads() {
    shareable::<Sdk>();
    shareable::<BatchBuilder>();
    shareable::<Engine>();
    shareable::<Reservation<'static>>();
}

#[test]
fn a_builder_is_held_across_an_await_in_a_spawnable_future() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new())).with_run(RunContext::new("run_abc123", 1));
    let future = spawnable(async move {
        let mut batch = sdk.batch("child-task", 2);
        batch.item(None, ItemOptions::new().key(sdk.create_key("a", Scope::Global).unwrap().to_string()));
        std::future::ready(()).await; // the builder lives across this point
        batch.item(None, ItemOptions::new().key(sdk.create_key("b", Scope::Global).unwrap().to_string()));
        batch.build()
    });
    let mut future = pin!(future);
    let Poll::Ready(built) = future.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("a future that awaits only a ready future finishes at the first poll");
    };
    assert_eq!(built.unwrap().report().with_options, 2);
}
