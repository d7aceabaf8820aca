//! The names of alertpost's queues for one prefix, and the delay tiers:
//! their default, their rule, and which one a wait goes to. Every backend
//! names its queues so (the embedded queue too); how RabbitMQ declares them
//! is the RabbitMQ backend's.
//!
//! | name | what |
//! | --- | --- |
//! | `<p>.events` | topic exchange producers publish to |
//! | `<p>.events` | quorum queue bound with `#`: first attempts |
//! | `<p>.retry.<tier>` | quorum queues with a queue TTL, dead-lettering into `<p>.deliveries` |
//! | `<p>.deliveries` | quorum queue: delivery jobs back from the tiers, and replays |
//! | `<p>.dead` | quorum queue: dead letters |
//! | `<p>.lane.<id>` | quorum queue: one integration's deliveries that could not start when due |
//! | `<p>.members` | fanout exchange: workers announce themselves (each hears the others on an exclusive queue) |
//! | `<p>.shard.<n>` | quorum queues with a single active consumer: the events and jobs of the alerts whose key [`shard_of`] gives `n` |

use std::time::Duration;

use crate::message::{Destination, Source};

/// The delay tiers when the config names none (`delay_tiers`): 1s, 5s,
/// 30s, 2m, 10m, 30m, 1h, 3h. The one list: the config's default and the
/// tools' topology both come from here.
pub const DEFAULT_TIERS: [Duration; 8] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(10800),
];

/// How many shards the alerts with a key are spread over: fixed, since
/// producers and every worker must agree on an alert's shard.
pub const SHARDS: u16 = 16;

/// The shard of an alert's key: SHA-256, stable across processes,
/// versions and machines (a hasher seeded per process would not be).
pub fn shard_of(key: &str) -> u16 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The remainder is below SHARDS, so within u16.
    u16::try_from(u64::from_be_bytes(first) % u64::from(SHARDS)).unwrap_or(0)
}

/// The shards `me` holds among `members` (`me` among them): each shard
/// goes to the member that ranks highest for it (SHA-256 of the member and
/// the shard) among those not yet holding their share (16 ÷ members,
/// rounded up). Every worker that sees the same members comes to the same
/// answer; a member that comes or goes moves few shards.
pub fn shards_held(members: &[&str], me: &str) -> Vec<u16> {
    let mut members: Vec<&str> = members.to_vec();
    members.sort_unstable();
    members.dedup();
    if members.is_empty() {
        return Vec::new();
    }
    let share = usize::from(SHARDS).div_ceil(members.len());
    let mut held = vec![0usize; members.len()];
    let mut mine = Vec::new();
    for shard in 0..SHARDS {
        let mut ranked: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (rank(m, shard), i))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&(_, i)) = ranked.iter().find(|(_, i)| held[*i] < share) {
            held[i] += 1;
            if members[i] == me {
                mine.push(shard);
            }
        }
    }
    mine
}

fn rank(member: &str, shard: u16) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(member.as_bytes());
    h.update(shard.to_be_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Where an event goes: its alert's shard when it has a key, else the
/// events exchange under its routing key.
pub fn event_destination(event: &alertpost_event::Event) -> Destination {
    match event.key() {
        alertpost_event::AlertKey::Dedup(key) => Destination::Shard(shard_of(key)),
        alertpost_event::AlertKey::Event(_) => Destination::Events {
            routing_key: event.routing_key(),
        },
    }
}

/// Redeliveries after which RabbitMQ moves a work-queue message to the dead
/// queue (a message that crashes every worker that takes it).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    /// Ascending, no duplicates, at least one.
    tiers: Vec<Duration>,
    delivery_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("prefix `{0}` is not valid: use 1 to 100 letters, digits, `.`, `-`, `_`")]
    Prefix(String),
    #[error("delay tiers must be at least one duration, each {TIER_RULE}")]
    Tiers,
}

impl Topology {
    pub fn new(prefix: &str) -> Result<Topology, TopologyError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 100
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(TopologyError::Prefix(prefix.to_owned()));
        }
        Ok(Topology {
            prefix: prefix.to_owned(),
            tiers: DEFAULT_TIERS.to_vec(),
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        })
    }

    /// Replaces the delay tiers (sorted, deduplicated).
    pub fn with_tiers(mut self, mut tiers: Vec<Duration>) -> Result<Topology, TopologyError> {
        tiers.sort();
        tiers.dedup();
        if tiers.is_empty() || !tiers.iter().all(|t| tier_fits(*t)) {
            return Err(TopologyError::Tiers);
        }
        self.tiers = tiers;
        Ok(self)
    }

    /// Replaces the work queues' delivery limit (at least 1).
    pub fn with_delivery_limit(mut self, limit: u32) -> Topology {
        self.delivery_limit = limit.max(1);
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn tiers(&self) -> &[Duration] {
        &self.tiers
    }

    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// The topic exchange producers publish to.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn events_queue(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn deliveries_queue(&self) -> String {
        format!("{}.deliveries", self.prefix)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub fn retry_queue(&self, tier: Duration) -> String {
        format!("{}.retry.{}", self.prefix, tier_name(tier))
    }

    /// The lane of one integration: its deliveries that could not start
    /// when they were due, waiting their turn.
    pub fn lane_queue(&self, integration: &str) -> String {
        format!("{}.lane.{integration}", self.prefix)
    }

    /// The fanout exchange workers announce themselves on (RabbitMQ), to
    /// share the shards out.
    pub fn members_exchange(&self) -> String {
        format!("{}.members", self.prefix)
    }

    /// One shard's queue: see [`SHARDS`].
    pub fn shard_queue(&self, shard: u16) -> String {
        format!("{}.shard.{shard}", self.prefix)
    }

    /// The queue a source is consumed from (every backend names them so).
    pub fn queue_of(&self, source: &Source) -> String {
        match source {
            Source::Events => self.events_queue(),
            Source::Deliveries => self.deliveries_queue(),
            Source::Lane(id) => self.lane_queue(id),
            Source::Shard(n) => self.shard_queue(*n),
            Source::Dead => self.dead_queue(),
        }
    }

    /// Every queue, in declaration order (dead first: the others point to it).
    pub fn queues(&self) -> Vec<String> {
        let mut names = vec![
            self.dead_queue(),
            self.deliveries_queue(),
            self.events_queue(),
        ];
        names.extend(self.tiers.iter().map(|t| self.retry_queue(*t)));
        names.extend((0..SHARDS).map(|n| self.shard_queue(n)));
        names
    }

    /// The tier a delay waits in: see [`tier_index`].
    pub fn tier_for(&self, delay: Duration) -> Duration {
        self.tiers[tier_index(&self.tiers, delay)]
    }
}

/// What a delay tier must be, in words.
pub const TIER_RULE: &str = "whole seconds, from 1s to 24h";

/// Whether `tier` can be a delay tier ([`TIER_RULE`]): a queue's TTL in
/// whole seconds, long enough to be a wait, short enough to name.
pub fn tier_fits(tier: Duration) -> bool {
    tier.subsec_nanos() == 0
        && tier >= Duration::from_secs(1)
        && tier <= Duration::from_secs(24 * 3600)
}

/// Where a wait of `delay` goes among ascending `tiers`: the smallest tier
/// not shorter than it, or the largest (the job then comes back early and
/// waits again). `tiers` must not be empty.
pub fn tier_index(tiers: &[Duration], delay: Duration) -> usize {
    tiers
        .iter()
        .position(|t| *t >= delay)
        .unwrap_or(tiers.len().saturating_sub(1))
}

/// `5s`, `2m`, `1h`: the shortest exact name of a whole-second duration.
pub fn tier_name(tier: Duration) -> String {
    let s = tier.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("ap-test_1.x").unwrap();
        assert_eq!(t.exchange(), "ap-test_1.x.events");
        assert_eq!(
            t.retry_queue(Duration::from_secs(120)),
            "ap-test_1.x.retry.2m"
        );
        assert_eq!(
            t.retry_queue(Duration::from_secs(10800)),
            "ap-test_1.x.retry.3h"
        );
        assert_eq!(
            t.retry_queue(Duration::from_secs(90)),
            "ap-test_1.x.retry.90s"
        );
        assert_eq!(t.shard_queue(7), "ap-test_1.x.shard.7");
        assert_eq!(
            t.queues().len(),
            3 + DEFAULT_TIERS.len() + usize::from(SHARDS)
        );
        assert!(Topology::new("a b").is_err());
        assert!(Topology::new("").is_err());
    }

    /// Producers and workers of any version must agree: these values are
    /// a contract, not an implementation detail.
    #[test]
    fn a_key_has_one_shard_everywhere_and_keys_spread() {
        assert_eq!(shard_of("disk-full"), shard_of("disk-full"));
        let fixed: Vec<u16> = ["a", "disk-full", "db-down", ""]
            .iter()
            .map(|k| shard_of(k))
            .collect();
        assert_eq!(fixed, FIXED_SHARDS);
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..16_000 {
            counts[usize::from(shard_of(&format!("alert-{i}")))] += 1;
        }
        // 1 000 each on average.
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }

    // Checked against Python: int.from_bytes(sha256(k)[:8], "big") % 16.
    const FIXED_SHARDS: [u16; 4] = [10, 11, 7, 4];

    #[test]
    fn shards_are_shared_out_whole_and_fairly_and_move_little() {
        let fleet = ["w-a", "w-b", "w-c", "w-d"];
        for n in 1..=fleet.len() {
            let members = &fleet[..n];
            let mut all: Vec<u16> = Vec::new();
            for m in members {
                let held = shards_held(members, m);
                // 16 over n: at most the share, rounded up.
                let share = usize::from(SHARDS).div_ceil(n);
                assert!(held.len() <= share, "{n} members: {m} holds {held:?}");
                all.extend(held);
            }
            all.sort_unstable();
            assert_eq!(all, (0..SHARDS).collect::<Vec<_>>(), "{n} members");
        }
        // Alone: everything. Not a member: nothing.
        assert_eq!(shards_held(&["w-a"], "w-a").len(), usize::from(SHARDS));
        assert!(shards_held(&["w-a"], "w-z").is_empty());
        // The order members are seen in does not matter.
        assert_eq!(
            shards_held(&["w-c", "w-a", "w-b"], "w-b"),
            shards_held(&["w-a", "w-b", "w-c"], "w-b")
        );
        // A fourth member joining takes its share; most shards stay put.
        let moved = fleet[..3]
            .iter()
            .map(|m| {
                let before = shards_held(&fleet[..3], m);
                let after = shards_held(&fleet, m);
                before.iter().filter(|s| !after.contains(s)).count()
            })
            .sum::<usize>();
        assert!(moved <= 8, "{moved} shards moved for one new member");
    }

    #[test]
    fn tier_is_the_smallest_not_shorter() {
        let t = Topology::new("p").unwrap();
        assert_eq!(
            t.tier_for(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(t.tier_for(Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(t.tier_for(Duration::from_secs(6)), Duration::from_secs(30));
        assert_eq!(
            t.tier_for(Duration::from_secs(999_999)),
            Duration::from_secs(10800)
        );
    }

    #[test]
    fn tiers_are_checked() {
        let t = Topology::new("p").unwrap();
        assert!(t.clone().with_tiers(vec![]).is_err());
        assert!(
            t.clone()
                .with_tiers(vec![Duration::from_millis(1500)])
                .is_err()
        );
        let t = t
            .with_tiers(vec![
                Duration::from_secs(5),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ])
            .unwrap();
        assert_eq!(t.tiers(), [Duration::from_secs(1), Duration::from_secs(5)]);
    }
}
