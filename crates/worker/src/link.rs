//! What the hand-offs of one session share ([`Link`]): the session, the
//! writers that gather lane hand-offs, the signal that draining ran out of
//! time, and the topology declared again when a publish finds its queue
//! gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alertpost_seam::Session;
use tokio_util::sync::CancellationToken;

use crate::lane_writer::LaneWriters;
use crate::runtime::Ctx;

/// A topology declared this recently is not declared again for another
/// missing queue (many hand-offs find it missing at once).
const REDECLARE_AFTER: Duration = Duration::from_secs(1);

/// What the hand-offs of one session share.
pub(crate) struct Link<S> {
    pub session: Arc<S>,
    /// Hand-offs to lanes, gathered per lane.
    pub lanes: LaneWriters<S>,
    /// Cancelled when draining runs out of time: the session's tasks stop
    /// where they are (hand-offs stop retrying) and their messages go back.
    pub lost: CancellationToken,
    /// When the topology was last declared again.
    redeclared: tokio::sync::Mutex<Option<Instant>>,
}

impl<S: Session> Link<S> {
    pub fn new(session: S, lost: CancellationToken) -> Link<S> {
        let session = Arc::new(session);
        Link {
            lanes: LaneWriters::new(session.clone()),
            session,
            lost,
            redeclared: tokio::sync::Mutex::new(None),
        }
    }

    /// Declares the topology, every integration's lane and `lane` (the
    /// one a hand-off goes to: its integration may have left the config
    /// since) again; true when it is declared (now, or by another hand-off
    /// a moment ago).
    pub async fn redeclare(&self, ctx: &Ctx, lane: Option<&str>) -> bool {
        let mut last = self.redeclared.lock().await;
        if last.is_some_and(|at| at.elapsed() < REDECLARE_AFTER) {
            return true;
        }
        let mut lanes = ctx.current.get().lanes();
        if let Some(lane) = lane
            && !lanes.iter().any(|l| l == lane)
        {
            lanes.push(lane.to_owned());
        }
        match self.session.declare(&lanes).await {
            Ok(()) => {
                ctx.metrics.topology_redeclared.inc();
                tracing::warn!(
                    "a queue was missing (deleted under the worker?); declared the topology again"
                );
                *last = Some(Instant::now());
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "a queue is missing and the topology cannot be declared again");
                false
            }
        }
    }
}
