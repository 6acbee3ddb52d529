//! The record of committed changes: who changed what and when, with the
//! full configuration of the last [`HISTORY_LEN`] versions for rollback.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::diff::Change;
use crate::config::ClusterSpec;

/// Versions whose full configuration is kept.
pub const HISTORY_LEN: usize = 50;

/// Where a change came from, stamped by the node that proposes it (so every
/// node applies the same values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Milliseconds since the Unix epoch when it was proposed.
    pub time_ms: u64,
    /// Token identity or peer address of the caller; `bootstrap` for the seed.
    pub caller: String,
}

/// One committed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The version this change produced.
    pub version: u64,
    /// When and by whom.
    pub origin: Origin,
    /// What the command was, in one line.
    pub command: String,
    /// What it changed, in one line.
    pub summary: String,
    /// The configuration at this version.
    pub spec: ClusterSpec,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The version after the command.
    pub version: u64,
    /// The differences it made.
    pub changes: Vec<Change>,
}

/// The last [`HISTORY_LEN`] revisions, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    revisions: VecDeque<Revision>,
}

impl History {
    /// Records a revision, dropping the oldest beyond [`HISTORY_LEN`].
    pub fn record(&mut self, revision: Revision) {
        self.revisions.push_back(revision);
        while self.revisions.len() > HISTORY_LEN {
            self.revisions.pop_front();
        }
    }

    /// The revision that produced `version`, if still kept.
    pub fn get(&self, version: u64) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.version == version)
    }

    /// Every kept revision, oldest first.
    pub fn revisions(&self) -> impl Iterator<Item = &Revision> {
        self.revisions.iter()
    }

    /// The oldest version still kept.
    pub fn oldest(&self) -> Option<u64> {
        self.revisions.front().map(|r| r.version)
    }
}
