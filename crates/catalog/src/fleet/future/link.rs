//! The async client's connection to one node: the counterpart of `link.rs`.

use std::io;
use std::time::Duration;

use ::redis::{Client, RedisResult};

use crate::fleet::link::Single;

/// The async client's connection to one node: multiplexed, so clones share it and many
/// tasks send over it at once.
pub(in crate::fleet) type AsyncConn = ::redis::aio::MultiplexedConnection;

/// Opens an async connection to one node within `connect_timeout`, each answer awaited
/// at most `io_timeout`.
pub(in crate::fleet) async fn open_async(
    single: &Single,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> RedisResult<AsyncConn> {
    let opening = async {
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(io_timeout));
        #[cfg(feature = "tls")]
        let client = match &single.tls {
            Some(client) => client.clone(),
            None => Client::open(single.info.clone())?,
        };
        #[cfg(not(feature = "tls"))]
        let client = Client::open(single.info.clone())?;
        let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        if single.db != 0 {
            ::redis::cmd("SELECT").arg(single.db).query_async::<()>(&mut conn).await?;
        }
        Ok(conn)
    };
    within(connect_timeout, opening).await
}

/// `future`'s answer, or a timeout error after `left`.
pub(in crate::fleet) async fn within<T>(
    left: Duration,
    future: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(left, future).await {
        Ok(answer) => answer,
        Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
    }
}
