//! Interruption: a request (SIGINT/SIGTERM in the binary) to stop at the next safe point, and
//! what to do then.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// What an interrupted run does once production's image was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInterrupt {
    /// Roll production back and report `rolled_back` (exit 3).
    #[default]
    Rollback,
    /// Record the state, leave production as it is, report `interrupted` (exit 4); a re-run
    /// (`promote` or `resume`) carries on.
    Leave,
}

/// A shared stop request. Cloning shares it; [`Interrupt::trigger`] is seen by every clone.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    why: Arc<OnceLock<String>>,
}

impl Interrupt {
    /// A request nobody has made yet.
    pub fn new() -> Self {
        Interrupt::default()
    }

    /// Asks the run to stop at its next safe point; the first reason is kept.
    pub fn trigger(&self, why: impl Into<String>) {
        let _ = self.why.set(why.into());
        self.token.cancel();
    }

    /// Why, once triggered.
    pub fn reason(&self) -> Option<&str> {
        self.why.get().map(String::as_str)
    }

    /// Resolves once triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }
}
