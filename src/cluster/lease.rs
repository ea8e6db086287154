//! The lease state machine, sans-I/O: what a claim or a renewal's answer
//! means for a stream this node publishes. Time is an argument; Redis is
//! the caller's (`cluster::Cluster`).
//!
//! - A claim either takes the stream (a new fencing token, higher than any
//!   this node has seen) or is refused naming the holder ([`decide`]).
//! - A renewal that Redis answers extends the lease; one it answers with
//!   another token means the stream was taken: the lease is lost and the
//!   publish must end. A key gone (expired, or Redis restarted empty) is
//!   claimed again with a new token.
//! - A renewal Redis does not answer leaves the lease held until its expiry
//!   and then *unconfirmed*: the node keeps serving what it publishes (no
//!   node that cannot reach Redis can take it either) and the first answer
//!   after Redis comes back decides (issue 22: "a node that loses Redis
//!   keeps serving what it owns").

use std::time::{Duration, Instant};

use crate::hub::PublishConflict;

/// Who holds a stream, as stored in Redis (JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Holder {
    pub node: String,
    pub token: u64,
    #[serde(default)]
    pub http: String,
    #[serde(default)]
    pub rtmp: String,
}

impl Holder {
    /// Reads a stored value; `None` if it is not one of ours.
    pub fn parse(value: &str) -> Option<Holder> {
        serde_json::from_str(value).ok()
    }
}

/// How a claim asks Redis for the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimMode {
    /// Only if nobody holds it.
    IfFree,
    /// If nobody holds it, or this node does (a lease left behind by an
    /// earlier publish here whose release did not reach Redis).
    IfFreeOrOurs,
    /// Whoever holds it (takeover).
    Always,
}

impl ClaimMode {
    /// As sent to the claim script.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimMode::IfFree => "free",
            ClaimMode::IfFreeOrOurs => "own",
            ClaimMode::Always => "always",
        }
    }
}

/// How a new publish claims its stream under `rtmp.publish_conflict`.
pub fn claim_mode(conflict: PublishConflict) -> ClaimMode {
    match conflict {
        PublishConflict::Takeover => ClaimMode::Always,
        PublishConflict::Reject => ClaimMode::IfFreeOrOurs,
    }
}

/// Whether `mode` takes a stream `current` holds, for node `me` (the
/// claim script applies the same rule atomically; this is its statement).
pub fn decide(mode: ClaimMode, current: Option<&Holder>, me: &str) -> Decision {
    match (mode, current) {
        (_, None) => Decision::Take { from: None },
        (ClaimMode::Always, Some(h)) => Decision::Take {
            from: Some(h.node.clone()),
        },
        (ClaimMode::IfFreeOrOurs, Some(h)) if h.node == me => Decision::Take {
            from: Some(h.node.clone()),
        },
        (_, Some(h)) => Decision::Refuse {
            owner: h.node.clone(),
        },
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The stream is ours with a new token (`from`: the previous holder).
    Take { from: Option<String> },
    /// Another node holds it.
    Refuse { owner: String },
}

/// What Redis answered to a renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewAnswer {
    /// Still ours: extended by the lease time.
    Extended,
    /// No key: it expired, or Redis lost it (a restart without persistence).
    Missing,
    /// Another claim holds it.
    Taken(Holder),
    /// No answer (Redis unreachable, timeout).
    Unreachable,
}

/// What the caller does after a renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the lease goes on.
    Keep,
    /// Claim the stream again (if it is free) and call [`Lease::reclaimed`].
    Reclaim,
    /// The lease is lost: end the publish (the reason names the new owner).
    Lost(String),
}

/// Where a lease stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Confirmed by Redis; valid until `Lease::expires`.
    Held,
    /// Past its expiry with no answer from Redis: still served.
    Unconfirmed,
    /// Taken by another node: the publish must end.
    Lost,
}

/// One stream's lease, held by this node.
#[derive(Clone, Debug)]
pub struct Lease {
    token: u64,
    ttl: Duration,
    expires: Instant,
    state: State,
}

impl Lease {
    /// A lease Redis just granted with `token`.
    pub fn claimed(token: u64, ttl: Duration, now: Instant) -> Lease {
        Lease {
            token,
            ttl,
            expires: now + ttl,
            state: State::Held,
        }
    }

    pub fn token(&self) -> u64 {
        self.token
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Until when Redis keeps it without another renewal.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// A renewal's answer at `now`.
    pub fn on_renew(&mut self, answer: RenewAnswer, now: Instant) -> Step {
        if self.state == State::Lost {
            return Step::Lost("the lease was lost before".into());
        }
        match answer {
            RenewAnswer::Extended => {
                self.expires = now + self.ttl;
                self.state = State::Held;
                Step::Keep
            }
            RenewAnswer::Missing => Step::Reclaim,
            RenewAnswer::Taken(h) if h.token == self.token => {
                // The script compares tokens; equal means ours after all.
                self.expires = now + self.ttl;
                self.state = State::Held;
                Step::Keep
            }
            RenewAnswer::Taken(h) => {
                self.state = State::Lost;
                Step::Lost(format!(
                    "node {} took the stream (token {} after ours, {})",
                    h.node, h.token, self.token
                ))
            }
            RenewAnswer::Unreachable => {
                if now >= self.expires {
                    self.state = State::Unconfirmed;
                }
                Step::Keep
            }
        }
    }

    /// The answer to a [`Step::Reclaim`]: `Ok(token)` if the key was free
    /// and is ours again, `Err(holder)` if another node got it first.
    pub fn reclaimed(&mut self, answer: Result<u64, Holder>, now: Instant) -> Step {
        match answer {
            Ok(token) => {
                self.token = token;
                self.expires = now + self.ttl;
                self.state = State::Held;
                Step::Keep
            }
            Err(h) => self.on_renew(RenewAnswer::Taken(h), now),
        }
    }
}

/// How often leases are renewed: a third of the lease, at most a second.
pub fn renew_interval(lease: Duration) -> Duration {
    (lease / 3).min(Duration::from_secs(1))
}

/// The token of a new claim: Redis's counter after `INCR`, raised past the
/// highest token this node has seen (a Redis restarted empty counts from 1
/// again). The claim script does the same.
pub fn fence(counter: u64, seen: u64) -> u64 {
    if counter <= seen {
        seen + 1
    } else {
        counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    fn holder(node: &str, token: u64) -> Holder {
        Holder {
            node: node.into(),
            token,
            http: String::new(),
            rtmp: String::new(),
        }
    }

    #[test]
    fn a_free_stream_is_taken_whatever_the_policy() {
        for mode in [
            ClaimMode::IfFree,
            ClaimMode::IfFreeOrOurs,
            ClaimMode::Always,
        ] {
            assert_eq!(decide(mode, None, "n1"), Decision::Take { from: None });
        }
    }

    #[test]
    fn reject_refuses_naming_the_owner_and_takeover_takes() {
        let other = holder("n2", 7);
        assert_eq!(
            decide(claim_mode(PublishConflict::Reject), Some(&other), "n1"),
            Decision::Refuse { owner: "n2".into() }
        );
        assert_eq!(
            decide(claim_mode(PublishConflict::Takeover), Some(&other), "n1"),
            Decision::Take {
                from: Some("n2".into())
            }
        );
        assert_eq!(
            decide(ClaimMode::IfFree, Some(&holder("n1", 3)), "n1"),
            Decision::Refuse { owner: "n1".into() }
        );
    }

    #[test]
    fn reject_retakes_a_lease_this_node_left_behind() {
        assert_eq!(
            decide(
                claim_mode(PublishConflict::Reject),
                Some(&holder("n1", 3)),
                "n1"
            ),
            Decision::Take {
                from: Some("n1".into())
            }
        );
    }

    #[test]
    fn renewals_before_expiry_extend_it() {
        let t0 = Instant::now();
        let mut l = Lease::claimed(4, TTL, t0);
        assert_eq!(l.expires(), t0 + TTL);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.on_renew(RenewAnswer::Extended, t1), Step::Keep);
        assert_eq!(l.expires(), t1 + TTL);
        assert_eq!(l.state(), &State::Held);
        assert_eq!(l.token(), 4);
    }

    #[test]
    fn a_renewal_answered_with_another_token_loses_the_lease_for_good() {
        let t0 = Instant::now();
        let mut l = Lease::claimed(4, TTL, t0);
        let step = l.on_renew(RenewAnswer::Taken(holder("n2", 9)), t0);
        assert!(
            matches!(&step, Step::Lost(why) if why.contains("node n2")),
            "{step:?}"
        );
        assert_eq!(l.state(), &State::Lost);
        // Nothing brings it back.
        assert!(matches!(
            l.on_renew(RenewAnswer::Extended, t0),
            Step::Lost(_)
        ));
        assert_eq!(l.state(), &State::Lost);
    }

    #[test]
    fn unanswered_renewals_keep_serving_and_mark_it_unconfirmed_past_expiry() {
        let t0 = Instant::now();
        let mut l = Lease::claimed(4, TTL, t0);
        let before = t0 + TTL - Duration::from_millis(1);
        assert_eq!(l.on_renew(RenewAnswer::Unreachable, before), Step::Keep);
        assert_eq!(l.state(), &State::Held);
        assert_eq!(l.on_renew(RenewAnswer::Unreachable, t0 + TTL), Step::Keep);
        assert_eq!(l.state(), &State::Unconfirmed);
        // Redis back, still ours: held again.
        let back = t0 + Duration::from_secs(30);
        assert_eq!(l.on_renew(RenewAnswer::Extended, back), Step::Keep);
        assert_eq!(l.state(), &State::Held);
        assert_eq!(l.expires(), back + TTL);
    }

    #[test]
    fn past_expiry_the_first_answer_decides() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(60);
        // Taken meanwhile (a node that could reach Redis): lost.
        let mut l = Lease::claimed(4, TTL, t0);
        l.on_renew(RenewAnswer::Unreachable, late);
        assert!(matches!(
            l.on_renew(RenewAnswer::Taken(holder("n2", 5)), late),
            Step::Lost(_)
        ));
        // Gone (expired, or Redis restarted empty): claimed again, new token.
        let mut l = Lease::claimed(4, TTL, t0);
        l.on_renew(RenewAnswer::Unreachable, late);
        assert_eq!(l.on_renew(RenewAnswer::Missing, late), Step::Reclaim);
        assert_eq!(l.reclaimed(Ok(11), late), Step::Keep);
        assert_eq!((l.token(), l.state()), (11, &State::Held));
        // Gone, and another node claimed it first: lost.
        let mut l = Lease::claimed(4, TTL, t0);
        assert_eq!(l.on_renew(RenewAnswer::Missing, late), Step::Reclaim);
        assert!(matches!(
            l.reclaimed(Err(holder("n3", 12)), late),
            Step::Lost(why) if why.contains("n3")
        ));
    }

    #[test]
    fn an_answer_naming_our_own_token_is_a_renewal() {
        let t0 = Instant::now();
        let mut l = Lease::claimed(4, TTL, t0);
        assert_eq!(
            l.on_renew(RenewAnswer::Taken(holder("n1", 4)), t0),
            Step::Keep
        );
        assert_eq!(l.state(), &State::Held);
    }

    #[test]
    fn tokens_rise_on_every_new_claim() {
        // The claim script's counter restarts at 1 after an empty Redis
        // restart; the floor this node passes keeps tokens rising.
        let mut seen = 0;
        for counter in [1, 2, 3, 1, 2, 9] {
            let token = fence(counter, seen);
            assert!(token > seen, "token {token} after {seen}");
            seen = token;
        }
        assert_eq!(seen, 9);
    }

    #[test]
    fn renewals_come_at_most_a_second_apart_and_three_per_lease() {
        assert_eq!(
            renew_interval(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            renew_interval(Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
    }
}
