//! Releasing: promote, staged rollouts, rollback — each a new index sequence.
//!
//! `apply` decides (pure, tested as a table); `Service::change_channel` reads the one package's
//! state, releases and history, decides, computes that package's index entry, and commits it with
//! compare-and-swap on the channel's sequence, retrying if another change won the race. Nothing
//! it does depends on the number of packages in the app: the signed index and its deltas are
//! built from the stored entries when devices first ask for them (`documents`).

use std::collections::BTreeMap;

use manifests::{
    AppId, Candidate, Channel, FULL_ROLLOUT, Index, PackageEntry, PackageId, ReleaseRef,
    ReleaseVersion, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta_store::{
    AuditEntry, ChannelCommit, ChannelPackage, HistoryEntry, PackageChange, ReleaseRecord,
};
use crate::service::{Service, now};

#[cfg(test)]
mod tests;

/// A change a release engineer asks of one package on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Make `version` the stable release (every device gets it). Drops a candidate of the same
    /// or a lower version.
    Promote {
        /// The release to promote.
        version: ReleaseVersion,
    },
    /// Start a staged rollout of `version` (or change the current candidate's share when
    /// `version` is omitted) to `basis_points` of devices (10 000 = 100 %).
    Rollout {
        /// The candidate; the current one when omitted.
        version: Option<ReleaseVersion>,
        /// Share of devices, 0 to 10 000.
        #[serde(deserialize_with = "crate::api::whole_number")]
        basis_points: u16,
    },
    /// Freeze the rollout's share: devices keep what they have, the share cannot change.
    Pause,
    /// Allow the share to change again.
    Resume,
    /// Make the candidate the stable release.
    Complete,
    /// Undo: with a candidate and no target, drop the candidate (devices in the rollout return
    /// to stable); otherwise make `to` (default: the previous stable release) stable again.
    Rollback {
        /// The release to return to.
        to: Option<ReleaseVersion>,
    },
    /// Restore the package's state before its last change on the channel (an undo of an undo
    /// redoes). The restored state is a new index sequence, signed like any other.
    Undo,
}

impl Action {
    /// The history name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Promote { .. } => "promote",
            Action::Rollout { .. } => "rollout",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Complete => "complete",
            Action::Rollback { .. } => "rollback",
            Action::Undo => "undo",
        }
    }
}

/// Applies `action` to a package's channel state.
///
/// `exists` tells whether a version of the package was published; `previous_stable` is the stable
/// release before the current one, from the channel's history; `last` is the package's newest
/// history entry on the channel, which an undo reverts.
///
/// # Errors
/// [`Error::NotFound`] for an unknown version, [`Error::Conflict`] for an action that does not
/// fit the state (no candidate to complete, a paused rollout's share, …), [`Error::BadRequest`]
/// for a share above 100 %.
pub fn apply(
    state: &ChannelPackage,
    action: &Action,
    exists: impl Fn(&ReleaseVersion) -> bool,
    previous_stable: Option<&ReleaseVersion>,
    last: Option<&HistoryEntry>,
) -> Result<ChannelPackage> {
    let known = |v: &ReleaseVersion| {
        if exists(v) {
            Ok(())
        } else {
            Err(Error::NotFound(format!("release {v}")))
        }
    };
    let mut next = state.clone();
    match action {
        Action::Promote { version } => {
            known(version)?;
            if state.stable.as_ref() == Some(version) {
                return Err(Error::Conflict(format!("{version} is already stable")));
            }
            next.stable = Some(version.clone());
            if state.candidate.as_ref().is_some_and(|c| c <= version) {
                next.candidate = None;
                next.rollout_basis_points = 0;
                next.paused = false;
            }
        }
        Action::Rollout {
            version,
            basis_points,
        } => {
            if *basis_points > FULL_ROLLOUT {
                return Err(Error::BadRequest(format!(
                    "rollout {basis_points} basis points is above 10000 (100 %)"
                )));
            }
            match version {
                Some(v) if state.candidate.as_ref() != Some(v) => {
                    known(v)?;
                    if state.stable.as_ref() == Some(v) {
                        return Err(Error::Conflict(format!("{v} is already stable")));
                    }
                    next.candidate = Some(v.clone());
                    next.paused = false;
                }
                _ => {
                    if state.candidate.is_none() {
                        return Err(Error::Conflict(
                            "no rollout in progress; name the version to roll out".into(),
                        ));
                    }
                    if state.paused {
                        return Err(Error::Conflict(
                            "the rollout is paused; resume it first".into(),
                        ));
                    }
                }
            }
            next.rollout_basis_points = *basis_points;
        }
        Action::Pause | Action::Resume => {
            let pause = matches!(action, Action::Pause);
            if state.candidate.is_none() {
                return Err(Error::Conflict("no rollout in progress".into()));
            }
            if state.paused == pause {
                return Err(Error::Conflict(format!(
                    "the rollout is already {}",
                    if pause { "paused" } else { "running" }
                )));
            }
            next.paused = pause;
        }
        Action::Complete => {
            let Some(candidate) = &state.candidate else {
                return Err(Error::Conflict("no rollout in progress".into()));
            };
            next.stable = Some(candidate.clone());
            next.candidate = None;
            next.rollout_basis_points = 0;
            next.paused = false;
        }
        Action::Rollback { to } => {
            if to.is_none() && state.candidate.is_some() {
                next.candidate = None;
                next.rollout_basis_points = 0;
                next.paused = false;
            } else {
                let target = match to {
                    Some(v) => v,
                    None => previous_stable.ok_or_else(|| {
                        Error::Conflict("no earlier stable release to roll back to".into())
                    })?,
                };
                known(target)?;
                if state.stable.as_ref() == Some(target) {
                    return Err(Error::Conflict(format!("{target} is already stable")));
                }
                next.stable = Some(target.clone());
                next.candidate = None;
                next.rollout_basis_points = 0;
                next.paused = false;
            }
        }
        Action::Undo => {
            let Some(last) = last else {
                return Err(Error::Conflict(
                    "nothing to undo: no change recorded".into(),
                ));
            };
            let Some(before) = &last.before else {
                return Err(Error::Conflict(format!(
                    "the last change ({} at {}) was recorded without the state before it, so it \
                     cannot be undone; name the action that restores it",
                    last.action, last.at
                )));
            };
            for version in [&before.stable, &before.candidate].into_iter().flatten() {
                known(version)?;
            }
            if before == state {
                return Err(Error::Conflict(format!(
                    "undoing the last change ({}) would change nothing",
                    last.action
                )));
            }
            next = before.clone();
        }
    }
    Ok(next)
}

/// The stable release before the current one: what was stable when the current one was last
/// promoted (rollbacks are skipped, so two rollbacks in a row keep going back, never forward).
pub(crate) fn previous_stable(
    history: &[HistoryEntry],
    current: Option<&ReleaseVersion>,
) -> Option<ReleaseVersion> {
    let current = current?;
    history
        .iter()
        .filter(|h| matches!(h.action.as_str(), "promote" | "complete"))
        .find(|h| h.to_version.as_ref() == Some(current))
        .and_then(|h| h.from_version.clone())
}

/// Whether a history entry made another release stable: its `from_version` and `to_version` are
/// then stable releases.
fn changes_stable(entry: &HistoryEntry) -> bool {
    match entry.action.as_str() {
        "promote" | "complete" | "rollback" => true,
        "undo" => entry
            .before
            .as_ref()
            .is_some_and(|b| b.stable == entry.from_version && b.stable != entry.to_version),
        _ => false,
    }
}

/// The outcome of a channel change.
#[derive(Clone, Debug)]
pub struct ChangeOutcome {
    /// The new index's sequence.
    pub sequence: u64,
    /// The package's new state on the channel.
    pub state: ChannelPackage,
}

impl Service {
    /// Applies a release engineer's action and commits the channel's next sequence with the
    /// package's new index entry.
    /// Checks that `app` has `channel`, unless `create` asks to make it.
    ///
    /// # Errors
    /// [`Error::UnknownChannel`] listing the app's channels.
    pub async fn check_channel(&self, app: &AppId, channel: &Channel, create: bool) -> Result<()> {
        if create {
            return Ok(());
        }
        let channels: Vec<Channel> = self
            .meta
            .channels()
            .await?
            .into_iter()
            .filter(|(a, _)| a == app)
            .map(|(_, c)| c)
            .collect();
        if channels.contains(channel) {
            return Ok(());
        }
        let names: Vec<String> = channels.iter().map(ToString::to_string).collect();
        Err(Error::UnknownChannel {
            app: app.to_string(),
            channel: channel.to_string(),
            existing: if names.is_empty() {
                "it has none yet".into()
            } else {
                format!("its channels: {}", names.join(", "))
            },
        })
    }

    pub async fn change_channel(
        &self,
        package: &PackageId,
        channel: &Channel,
        action: &Action,
        actor: &str,
        reason: &str,
    ) -> Result<ChangeOutcome> {
        let app = self
            .meta
            .package_app(package)
            .await?
            .ok_or_else(|| Error::NotFound(format!("package {package}")))?;
        let releases = self.meta.releases(package).await?;
        for _attempt in 0..8 {
            let (current_sequence, current) =
                self.meta.channel_package(&app, channel, package).await?;
            let history = self.meta.history(&app, channel, Some(package)).await?;
            let previous = previous_stable(&history, current.stable.as_ref());
            let next = apply(
                &current,
                action,
                |v| releases.iter().any(|r| &r.version == v),
                previous.as_ref(),
                history.first(),
            )?;
            for version in [&next.stable, &next.candidate].into_iter().flatten() {
                if current.stable.as_ref() == Some(version)
                    || current.candidate.as_ref() == Some(version)
                {
                    continue;
                }
                if let Some(r) = releases.iter().find(|r| &r.version == version) {
                    self.check_release_signed(&app, package, version, &r.manifest)
                        .await?;
                }
            }
            let at = now();
            let sequence = current_sequence + 1;
            let (from_version, to_version) = match action {
                Action::Rollout { .. } | Action::Pause | Action::Resume => {
                    (current.candidate.clone(), next.candidate.clone())
                }
                Action::Rollback { to: None } if current.candidate.is_some() => {
                    (current.candidate.clone(), next.stable.clone())
                }
                Action::Undo if current.stable == next.stable => {
                    (current.candidate.clone(), next.candidate.clone())
                }
                _ => (current.stable.clone(), next.stable.clone()),
            };
            let entry = HistoryEntry {
                at,
                package: package.clone(),
                action: action.name().to_owned(),
                from_version,
                to_version,
                rollout_basis_points: next.candidate.as_ref().map(|_| next.rollout_basis_points),
                actor: actor.to_owned(),
                reason: reason.to_owned(),
                sequence,
                before: Some(current.clone()),
            };
            let mut all_history = history;
            all_history.insert(0, entry.clone());
            let expires_at = at.plus_secs(self.settings.index_ttl_secs);
            let index_entry = listed_entry(
                &app,
                channel,
                package,
                &next,
                &releases,
                &all_history,
                (sequence, at, expires_at),
            )?;
            let commit = ChannelCommit {
                app: app.clone(),
                channel: channel.clone(),
                expected_sequence: current_sequence,
                sequence,
                issued_at: at,
                expires_at,
                package: Some(PackageChange {
                    package: package.clone(),
                    state: next.clone(),
                    entry: index_entry,
                }),
                history: vec![entry],
                audit: Some(AuditEntry {
                    at,
                    actor: actor.to_owned(),
                    action: action.name().to_owned(),
                    target: format!("{app}/{channel}/{package}"),
                    detail: serde_json::json!({ "action": action, "reason": reason, "sequence": sequence })
                        .to_string(),
                }),
            };
            if self.meta.commit_channel(&commit).await? {
                tracing::info!(%app, %channel, %package, action = action.name(), sequence, "channel changed");
                self.documents.advanced(&app, channel, sequence);
                return Ok(ChangeOutcome {
                    sequence,
                    state: next,
                });
            }
            tracing::debug!(%app, %channel, "channel changed under us; retrying");
        }
        Err(Error::Conflict(format!(
            "channel {app}/{channel} keeps changing; try again"
        )))
    }

    /// Moves every channel whose index has used up half its lifetime to a higher sequence with a
    /// fresh lifetime, so that devices never see an expired index from a healthy server. Touches
    /// no package: devices get the new expiry from a delta without changes.
    pub async fn refresh_indexes(&self) -> Result<usize> {
        let half = self.settings.index_ttl_secs / 2;
        self.bump_channels(|_, head| head.expires_at.unix_secs() <= now().unix_secs() + half)
            .await
    }

    /// Moves every channel of `app` to a new sequence, so that its index is signed again (under
    /// a new key list).
    pub(crate) async fn resign_indexes(&self, app: &AppId) -> Result<usize> {
        self.bump_channels(|a, _| a == app).await
    }

    /// Moves each channel `pick` chooses to a higher sequence with a fresh lifetime, touching no
    /// package.
    async fn bump_channels(
        &self,
        pick: impl Fn(&AppId, &crate::meta_store::ChannelHead) -> bool,
    ) -> Result<usize> {
        let mut moved = 0;
        for (app, channel) in self.meta.channels().await? {
            let Some(head) = self.meta.channel_head(&app, &channel).await? else {
                continue;
            };
            if !pick(&app, &head) {
                continue;
            }
            let issued_at = now();
            let commit = ChannelCommit {
                app: app.clone(),
                channel: channel.clone(),
                expected_sequence: head.sequence,
                sequence: head.sequence + 1,
                issued_at,
                expires_at: issued_at.plus_secs(self.settings.index_ttl_secs),
                package: None,
                history: Vec::new(),
                audit: None,
            };
            if self.meta.commit_channel(&commit).await? {
                self.documents.advanced(&app, &channel, commit.sequence);
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// The index entry of a package on a channel now, from its releases and history (for rows of
    /// a store upgraded from before entries were kept); none when it is not listed.
    pub(crate) async fn current_entry(
        &self,
        app: &AppId,
        channel: &Channel,
        package: &PackageId,
        state: &ChannelPackage,
    ) -> Result<Option<PackageEntry>> {
        if state.stable.is_none() && state.candidate.is_none() {
            return Ok(None);
        }
        let releases = self.meta.releases(package).await?;
        let history = self.meta.history(app, channel, Some(package)).await?;
        package_entry(state, &releases, &history).map(Some)
    }
}

/// The index entry of a package after a change, checked by the rules of an index now, since the
/// index is signed later; none when the package has neither a stable release nor a candidate.
fn listed_entry(
    app: &AppId,
    channel: &Channel,
    package: &PackageId,
    state: &ChannelPackage,
    releases: &[ReleaseRecord],
    history: &[HistoryEntry],
    (sequence, issued_at, expires_at): (u64, Timestamp, Timestamp),
) -> Result<Option<PackageEntry>> {
    if state.stable.is_none() && state.candidate.is_none() {
        return Ok(None);
    }
    let entry = package_entry(state, releases, history)?;
    Index {
        app: app.clone(),
        channel: channel.clone(),
        sequence,
        issued_at,
        expires_at,
        packages: BTreeMap::from([(package.clone(), entry.clone())]),
    }
    .validate()?;
    Ok(Some(entry))
}

fn release_ref(record: &ReleaseRecord) -> ReleaseRef {
    ReleaseRef {
        version: record.version.clone(),
        manifest: record.manifest_digest,
        requires: record.requires.clone(),
        size_bytes: record.size_bytes,
    }
}

/// The index entry of one package: stable, candidate, and the older releases that were stable on
/// this channel and that some host app too old for every newer listed release can still run.
///
/// The entry's `priority` and `prefetch` are the stable release's, even when a candidate set
/// others: the index has one policy per package, and devices in the rollout follow the stable
/// one until the candidate is completed or promoted. With no stable release, the candidate's.
fn package_entry(
    state: &ChannelPackage,
    releases: &[ReleaseRecord],
    history: &[HistoryEntry],
) -> Result<PackageEntry> {
    let find = |v: &ReleaseVersion| {
        releases
            .iter()
            .find(|r| &r.version == v)
            .ok_or_else(|| Error::Internal(format!("channel names unknown release {v}")))
    };
    let stable = state.stable.as_ref().map(find).transpose()?;
    let candidate = state.candidate.as_ref().map(find).transpose()?;
    let mut older = Vec::new();
    if let Some(stable) = stable {
        let mut seen_requires = vec![stable.requires.as_str().to_owned()];
        let mut was_stable: Vec<&ReleaseVersion> = history
            .iter()
            .filter(|h| changes_stable(h))
            .filter_map(|h| h.to_version.as_ref())
            .filter(|v| **v < stable.version)
            .collect();
        was_stable.sort();
        was_stable.dedup();
        for version in was_stable.into_iter().rev() {
            // A release a collection removed is no longer offered to older hosts.
            let Some(record) = releases.iter().find(|r| &r.version == version) else {
                continue;
            };
            if !seen_requires.iter().any(|r| r == record.requires.as_str()) {
                seen_requires.push(record.requires.as_str().to_owned());
                older.push(release_ref(record));
            }
            if older.len() == manifests::MAX_OLDER {
                break;
            }
        }
    }
    // One policy per package: the stable release's, which every device outside the rollout
    // runs; the candidate's only while there is no stable release.
    let policy = stable.or(candidate);
    Ok(PackageEntry {
        priority: policy.map_or(0, |r| r.priority),
        prefetch: policy.map(|r| r.prefetch).unwrap_or_default(),
        stable: stable.map(release_ref),
        candidate: candidate.map(|c| Candidate {
            release: release_ref(c),
            rollout_basis_points: state.rollout_basis_points,
        }),
        older,
    })
}
