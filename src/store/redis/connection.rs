//! Where the Redis store's data lives: one Redis, or a Redis Cluster, and
//! the one connection type the store talks to either through.
//!
//! A Cluster is named by `redis+cluster://` (or `rediss+cluster://` for
//! TLS) and a comma-separated list of seed nodes; the rest of the cluster
//! is discovered from them (`CLUSTER SLOTS`), and redirections (`MOVED`,
//! `ASK`) are followed by redis-rs's cluster client.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ErrorKind, Pipeline, ProtocolVersion, RedisError, RedisFuture, TlsCertificates,
    Value,
};

/// The scheme prefixes of a Cluster URL, and the single-node scheme each
/// node is then reached with.
const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

/// What a `--store` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://…` or `rediss://…`.
    Single(String),
    /// The seed nodes of a Cluster, each as a single-node URL.
    Cluster(Vec<String>),
}

impl Target {
    /// Splits `redis+cluster://[USER:PASSWORD@]H1:P1,H2:P2` into one URL
    /// per seed node, each with the user and password; any other URL is a
    /// single Redis.
    pub fn parse(url: &str) -> Target {
        for (cluster, single) in CLUSTER_SCHEMES {
            if let Some(rest) = url.strip_prefix(cluster) {
                let (user_info, hosts) = match rest.rfind('@') {
                    Some(at) => (&rest[..=at], &rest[at + 1..]),
                    None => ("", rest),
                };
                let hosts = hosts.split('/').next().unwrap_or_default();
                return Target::Cluster(
                    hosts
                        .split(',')
                        .filter(|host| !host.is_empty())
                        .map(|host| format!("{single}{user_info}{host}"))
                        .collect(),
                );
            }
        }
        Target::Single(url.to_owned())
    }

    /// Whether the URL names a Cluster, by its scheme alone.
    pub fn is_cluster_url(url: &str) -> bool {
        CLUSTER_SCHEMES.iter().any(|(s, _)| url.starts_with(s))
    }

    /// Whether the URL asks for TLS (`rediss://`, `rediss+cluster://`).
    pub fn is_tls_url(url: &str) -> bool {
        url.starts_with("rediss://") || url.starts_with("rediss+cluster://")
    }
}

/// The commands connection: a reconnecting one to a single Redis, or the
/// cluster client's, which routes each script by its key's slot.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// Timeouts shared by every connection the store opens.
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
    pub max_reconnect_delay: Duration,
}

/// The clients of one target: they open connections, and are kept for the
/// subscription task, which opens its own.
#[derive(Clone)]
#[allow(clippy::large_enum_variant, reason = "one, made at start-up")]
pub enum Clients {
    Single(Client),
    Cluster {
        /// For commands (RESP2).
        commands: ClusterClient,
        /// The seed nodes, to build the subscription's client (RESP3, with
        /// a push sender) from.
        nodes: Vec<String>,
    },
}

impl Clients {
    pub fn open(target: &Target, ca_pem: Option<Vec<u8>>) -> Result<Clients, RedisError> {
        match target {
            Target::Single(url) => Ok(Clients::Single(match ca_pem {
                None => Client::open(url.as_str())?,
                Some(pem) => Client::build_with_tls(url.as_str(), certificates(pem))?,
            })),
            Target::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(RedisError::from((
                        ErrorKind::InvalidClientConfig,
                        "a redis+cluster:// URL needs at least one HOST:PORT",
                    )));
                }
                Ok(Clients::Cluster {
                    commands: cluster_builder(nodes, ca_pem).build()?,
                    nodes: nodes.clone(),
                })
            }
        }
    }

    /// A connection for commands, connecting (and reconnecting) in the
    /// background: a Redis that is not up yet costs 503s, not a failed start.
    pub fn commands(&self, timeouts: &Timeouts) -> Result<Connection, RedisError> {
        match self {
            Clients::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(Some(timeouts.response))
                    .set_max_delay(timeouts.max_reconnect_delay);
                Ok(Connection::Single(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?))
            }
            Clients::Cluster { commands, .. } => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeouts.connect)
                    .set_response_timeout(timeouts.response);
                Ok(Connection::Cluster(
                    commands.get_pending_async_connection_with_config(config),
                ))
            }
        }
    }

    /// One PING over a fresh connection (to any node of a Cluster): what
    /// tells a Redis that refuses our credentials or certificate from one
    /// that is not there yet.
    pub async fn ping(&self) -> Result<(), RedisError> {
        match self {
            Clients::Single(client) => {
                let mut connection = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await?;
            }
            Clients::Cluster { commands, .. } => {
                let mut connection = commands.get_async_connection().await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }
}

fn certificates(pem: Vec<u8>) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }
}

/// A cluster client's builder for `nodes`, trusting `ca_pem` when given.
/// Retries are few: a request waits at most about its response timeout
/// before it is answered 503, as with a single Redis.
pub fn cluster_builder(nodes: &[String], ca_pem: Option<Vec<u8>>) -> ClusterClientBuilder {
    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str)).retries(2);
    if let Some(pem) = ca_pem {
        builder = builder.certs(certificates(pem));
    }
    builder
}

/// The subscription's cluster client: RESP3, because sharded pub/sub
/// messages arrive as pushes, sent to `pushes`.
pub fn sharded_subscriber_client(
    nodes: &[String],
    ca_pem: Option<Vec<u8>>,
    timeouts: &Timeouts,
    pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> Result<ClusterClient, RedisError> {
    cluster_builder(nodes, ca_pem)
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(timeouts.connect)
        .response_timeout(timeouts.response)
        .push_sender(pushes)
        .build()
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn a_cluster_url_names_each_seed_with_the_credentials() {
        assert_eq!(
            Target::parse("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001/"),
            Target::Cluster(vec![
                "redis://u:p@127.0.0.1:7000".into(),
                "redis://u:p@127.0.0.1:7001".into(),
            ])
        );
        assert_eq!(
            Target::parse("rediss+cluster://h:1"),
            Target::Cluster(vec!["rediss://h:1".into()])
        );
        assert_eq!(
            Target::parse("redis://h:1/0"),
            Target::Single("redis://h:1/0".into())
        );
    }
}
