//! Where a room's keys are: in one of a fixed number of buckets, each a
//! hash tag (`sr:{B}:…`), so a bucket is one Cluster slot.
//!
//! A script may only touch keys of one slot, and the global limits
//! (`--max-rooms`, `--max-stored-bytes`) and gauges need counters beside
//! the room's own keys. So the counters are kept per bucket, in the
//! bucket's slot, where the room's script updates them atomically:
//!
//! ```text
//! sr:{B}:rooms      set: the bucket's rooms (what the sweep walks)
//! sr:{B}:bytes      what the bucket's rooms store
//! sr:{B}:mailboxes  the bucket's mailboxes
//! sr:{B}:<room>:…   the room's keys (see redis.lua)
//! ```
//!
//! A single Redis has one bucket, so every limit is exact there. A Cluster
//! has [`CLUSTER_BUCKETS`]: enough to spread over many masters and to move
//! in small steps when resharding, few enough that reading every bucket's
//! counters (the gauges, the limits' view of the other buckets) stays one
//! cheap round of commands.

use crate::name::Name;

/// Buckets in a Cluster. Fixed: every instance must agree, and changing it
/// moves every room.
pub const CLUSTER_BUCKETS: u16 = 256;

/// How rooms map to buckets, for one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Keyspace {
    buckets: u16,
}

impl Keyspace {
    pub fn single() -> Keyspace {
        Keyspace { buckets: 1 }
    }

    pub fn cluster() -> Keyspace {
        Keyspace {
            buckets: CLUSTER_BUCKETS,
        }
    }

    pub fn buckets(&self) -> u16 {
        self.buckets
    }

    /// The room's bucket: FNV-1a of its name, which every instance and
    /// version computes alike.
    pub fn bucket(&self, room: &Name) -> u16 {
        let hash = room.as_bytes().iter().fold(0x811c_9dc5_u32, |hash, &byte| {
            (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        });
        (hash % u32::from(self.buckets)) as u16
    }

    /// The bucket's room set: the key a script is routed by (`KEYS[1]`),
    /// from which redis.lua derives every other key it touches.
    pub fn rooms_key(bucket: u16) -> String {
        format!("sr:{{{bucket}}}:rooms")
    }

    pub fn bytes_key(bucket: u16) -> String {
        format!("sr:{{{bucket}}}:bytes")
    }

    pub fn mailboxes_key(bucket: u16) -> String {
        format!("sr:{{{bucket}}}:mailboxes")
    }

    /// The channel a mailbox's changes are published on (redis.lua's
    /// `publish`), in the room's slot as sharded pub/sub requires.
    pub fn channel(&self, room: &Name, peer: &Name) -> Box<str> {
        let bucket = self.bucket(room);
        format!("sr:{{{bucket}}}:{room}:w:{peer}").into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_the_cluster_buckets() {
        let keyspace = Keyspace::cluster();
        let mut used = std::collections::HashSet::new();
        for i in 0..4096 {
            let room = Name::parse(&format!("room-{i}")).unwrap();
            let bucket = keyspace.bucket(&room);
            assert!(bucket < CLUSTER_BUCKETS);
            used.insert(bucket);
        }
        assert_eq!(used.len(), usize::from(CLUSTER_BUCKETS));
        let room = Name::parse("r").unwrap();
        assert_eq!(Keyspace::single().bucket(&room), 0);
        assert_eq!(&*Keyspace::single().channel(&room, &room), "sr:{0}:r:w:r");
    }
}
