//! One connection type for one Redis node and for a Redis Cluster.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A reconnecting connection to one node, or a cluster connection that routes each command by
/// its keys (and follows `MOVED` and `ASK`, and retries `TRYAGAIN` and `CLUSTERDOWN` a few
/// times, itself). Clones share the connection.
#[derive(Clone)]
pub(crate) enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(connection) => connection.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Connection {
    /// `WAIT replicas timeout` on the node that holds `key` (the master of its slot, in a
    /// cluster), on the connection that wrote: how many replicas have acknowledged every write
    /// this connection made to that node.
    pub(crate) async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: std::time::Duration,
    ) -> redis::RedisResult<u64> {
        let mut wait = redis::cmd("WAIT");
        // 0 would wait forever.
        wait.arg(replicas).arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1));
        match self {
            Connection::Node(connection) => wait.query_async(connection).await,
            Connection::Cluster(connection) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let reply = connection
                    .route_command(wait, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
                    .await?;
                Ok(redis::from_redis_value(reply)?)
            }
        }
    }
}
