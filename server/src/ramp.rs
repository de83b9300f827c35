//! Health-gated rollouts: when a ramp policy drives a candidate's share, the next step is
//! decided here from device figures alone (pure, tested as a table); `Service::evaluate_ramps`
//! reads the figures, decides, and acts through the same channel changes a release engineer
//! makes.
//!
//! The measure is the failed-boot rate: devices that reported a failed boot among the devices
//! that activated the release, each device counted once (see `stats`). The candidate is compared
//! with the stable release of the same channel by the difference of the two rates, with a Newcombe
//! hybrid score interval built from each rate's Wilson interval: it behaves at rates near 0 and
//! with a few dozen devices, where the textbook normal interval says nothing true.
//!
//! A step advances when, at 95 %, the candidate is not worse than stable by more than the
//! policy's margin, it has at least `min_devices` activated devices, and the step has lasted
//! `min_step_secs`; the ramp pauses when, at 95 %, the candidate is worse by more than the
//! margin; it rolls back when that holds at 99.9 % and the policy allows; otherwise it holds.

use std::sync::Arc;
use std::time::Duration;

use manifests::{AppId, Channel, FULL_ROLLOUT, PackageId, ReleaseVersion, Timestamp};
use serde::{Deserialize, Serialize};

use crate::channel::Action;
use crate::error::{Error, Result};
use crate::meta_store::AuditEntry;
use crate::metrics::OutcomeLabels;
use crate::service::{Service, now};

#[cfg(test)]
mod tests;

/// The normal quantile of a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_964;

/// The normal quantile of a two-sided 99.9 % interval: "clearly worse".
pub const Z_999: f64 = 3.290_527;

/// Most steps a policy may have.
pub const MAX_STEPS: usize = 20;

/// Largest `min_devices` a policy may ask for.
pub const MAX_MIN_DEVICES: u64 = 1_000_000_000;

/// Longest `min_step_secs` a policy may ask for: a year.
pub const MAX_MIN_STEP_SECS: u64 = 365 * 24 * 3600;

/// A ramp policy, set per rollout (schema `RampPolicy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampPolicy {
    #[serde(deserialize_with = "crate::api::whole_numbers")]
    /// The shares to go through, in basis points (10 000 = 100 %), each once, 10 000 among them
    /// (the last, once sorted).
    pub steps: Vec<u16>,
    /// Activated candidate devices a step needs before it may advance.
    #[serde(deserialize_with = "crate::api::whole_number")]
    pub min_devices: u64,
    /// Seconds a step lasts at least.
    #[serde(deserialize_with = "crate::api::whole_number")]
    pub min_step_secs: u64,
    /// The largest acceptable increase of the failed-boot rate over stable's, in basis points of
    /// a rate (100 = one percentage point).
    #[serde(deserialize_with = "crate::api::whole_number")]
    pub margin_basis_points: u16,
    /// Whether a candidate clearly worse (at 99.9 %) is rolled back, not only paused.
    #[serde(default)]
    pub auto_rollback: bool,
}

impl RampPolicy {
    /// The policy with its steps in rising order (they may be given in any), checked.
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming what is wrong.
    pub fn checked(mut self) -> Result<RampPolicy> {
        self.steps.sort_unstable();
        self.check()?;
        Ok(self)
    }

    /// Checks the policy.
    ///
    /// # Errors
    /// [`Error::BadRequest`] naming what is wrong.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::BadRequest(format!("ramp policy: {what}")));
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return bad(format!(
                "{} steps; a policy has 1 to {MAX_STEPS}",
                self.steps.len()
            ));
        }
        if let Some(w) = self.steps.windows(2).find(|w| w[0] >= w[1]) {
            return bad(if w[0] == w[1] {
                format!("step {} is given twice", w[0])
            } else {
                format!("steps must rise: {} then {}", w[0], w[1])
            });
        }
        if self.steps[0] == 0 {
            return bad("the first step is 0 basis points; it must be above 0".into());
        }
        if self.steps.last() != Some(&FULL_ROLLOUT) {
            return bad(format!(
                "the last step is {} basis points; it must be {FULL_ROLLOUT} (100 %)",
                self.steps.last().copied().unwrap_or_default()
            ));
        }
        if self.min_devices > MAX_MIN_DEVICES {
            return bad(format!(
                "min_devices of {} is above {MAX_MIN_DEVICES}",
                self.min_devices
            ));
        }
        if self.min_step_secs > MAX_MIN_STEP_SECS {
            return bad(format!(
                "min_step_secs of {} is above a year ({MAX_MIN_STEP_SECS})",
                self.min_step_secs
            ));
        }
        if self.margin_basis_points > FULL_ROLLOUT {
            return bad(format!(
                "margin of {} basis points is above {FULL_ROLLOUT}",
                self.margin_basis_points
            ));
        }
        Ok(())
    }

    /// Activated devices a step needs, none of them failing, before the candidate's failed-boot
    /// rate is known at 95 % to be within the margin (stable at 0): the Wilson bound of 0 failures
    /// among n devices is z² / (n + z²). Fewer than this and a step holds however long it lasts.
    pub fn devices_to_conclude(&self) -> u64 {
        let margin = self.margin();
        if margin <= 0.0 {
            return u64::MAX;
        }
        let z2 = Z_95 * Z_95;
        // Positive and finite: the cast is exact enough for a count of devices.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (z2 * (1.0 - margin) / margin).ceil() as u64;
        n
    }

    fn margin(&self) -> f64 {
        f64::from(self.margin_basis_points) / f64::from(FULL_ROLLOUT)
    }
}

/// Where a ramp is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RampState {
    /// Evaluated on every pass.
    Active,
    /// Halted by the ramp itself (the candidate was worse) or by a release engineer's pause; a
    /// resume of the rollout makes it active again.
    Paused,
    /// The candidate became stable.
    Completed,
    /// The ramp dropped the candidate.
    RolledBack,
    /// The candidate changed or was dropped by a release engineer, or the ramp was stopped: the
    /// share stays where it is.
    Ended,
}

impl RampState {
    /// Its name, as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            RampState::Active => "active",
            RampState::Paused => "paused",
            RampState::Completed => "completed",
            RampState::RolledBack => "rolled_back",
            RampState::Ended => "ended",
        }
    }
}

/// A ramp's last evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// When.
    pub at: Timestamp,
    /// `advance`, `complete`, `hold`, `pause`, `rollback`.
    pub verdict: String,
    /// Why, with the figures.
    pub reason: String,
    /// The candidate's share when it was evaluated, in basis points.
    pub basis_points: u16,
    /// The candidate's boot health.
    pub candidate: Health,
    /// Stable's, when it had figures.
    pub stable: Option<Health>,
}

/// A ramp as stored: one per package and channel (schema `Ramp`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RampRecord {
    /// The app.
    pub app: AppId,
    /// The channel.
    pub channel: Channel,
    /// The package.
    pub package: PackageId,
    /// The candidate it drives.
    pub version: ReleaseVersion,
    /// Its policy.
    pub policy: RampPolicy,
    /// Where it is.
    pub state: RampState,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When the current step started (the ramp moved the share, or resumed).
    pub step_started_at: Timestamp,
    /// The last evaluation.
    pub last: Option<Evaluation>,
}

/// One release's boot health: distinct devices that activated it and that failed to boot it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Devices that activated the release.
    pub activated: u64,
    /// Of them, devices that reported a failed boot.
    pub failed: u64,
}

impl Health {
    /// Devices in the sample: every failing device activated first, so never fewer than those.
    pub fn devices(self) -> u64 {
        self.activated.max(self.failed)
    }

    /// The failed-boot rate, 0 with no device.
    pub fn rate(self) -> f64 {
        match self.devices() {
            0 => 0.0,
            n => self.failed as f64 / n as f64,
        }
    }

    /// The Wilson score interval of the failed-boot rate at quantile `z`; `(0, 1)` with no device.
    pub fn wilson(self, z: f64) -> (f64, f64) {
        let n = self.devices();
        if n == 0 {
            return (0.0, 1.0);
        }
        let (n, p) = (n as f64, self.rate());
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        // At the edges the bounds are exactly 0 and 1; the arithmetic leaves rounding dust.
        let low = if self.failed == 0 {
            0.0
        } else {
            (centre - half).max(0.0)
        };
        let high = if self.failed >= self.devices() {
            1.0
        } else {
            (centre + half).min(1.0)
        };
        (low, high)
    }
}

/// The interval of `candidate`'s failed-boot rate minus `stable`'s at quantile `z` (Newcombe's
/// hybrid score method, from the two Wilson intervals).
pub fn difference(candidate: Health, stable: Health, z: f64) -> (f64, f64) {
    let (p1, p2) = (candidate.rate(), stable.rate());
    let (l1, u1) = candidate.wilson(z);
    let (l2, u2) = stable.wilson(z);
    let d = p1 - p2;
    let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (low.max(-1.0), high.min(1.0))
}

/// What a ramp does next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Move the candidate to the next step's share.
    Advance {
        /// The next share, in basis points.
        basis_points: u16,
        /// Why.
        reason: String,
    },
    /// The last step passed: the candidate becomes stable.
    Complete {
        /// Why.
        reason: String,
    },
    /// Keep the share: too few devices, too little time, or no conclusion yet.
    Hold {
        /// Why.
        reason: String,
    },
    /// Freeze the rollout: the candidate is worse than stable by more than the margin.
    Pause {
        /// Why.
        reason: String,
    },
    /// Drop the candidate: clearly worse, and the policy allows it.
    Rollback {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// Its name: `advance`, `complete`, `hold`, `pause`, `rollback`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Advance { .. } => "advance",
            Verdict::Complete { .. } => "complete",
            Verdict::Hold { .. } => "hold",
            Verdict::Pause { .. } => "pause",
            Verdict::Rollback { .. } => "rollback",
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Advance { reason, .. }
            | Verdict::Complete { reason }
            | Verdict::Hold { reason }
            | Verdict::Pause { reason }
            | Verdict::Rollback { reason } => reason,
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// A difference of two rates, in percentage points.
fn points(x: f64) -> String {
    format!("{:.2} points", x * 100.0)
}

/// Decides a ramp's next move.
///
/// `basis_points` is the candidate's share now, `step_started` when the ramp last moved it, and
/// `stable` is `None` when the channel has no stable release with activated devices: then the
/// candidate's own failed-boot rate is held against the margin.
pub fn decide(
    policy: &RampPolicy,
    basis_points: u16,
    step_started: Timestamp,
    now: Timestamp,
    candidate: Health,
    stable: Option<Health>,
) -> Verdict {
    let margin = policy.margin();
    let stable = stable.filter(|s| s.devices() > 0);
    let against = if stable.is_some() { "stable" } else { "0" };
    let interval = |z| match stable {
        Some(s) => difference(candidate, s, z),
        None => candidate.wilson(z),
    };
    let figures = format!(
        "failed boots {}/{} ({}) against {}",
        candidate.failed,
        candidate.devices(),
        pct(candidate.rate()),
        stable.map_or_else(
            || "no stable figures".to_owned(),
            |s| format!("stable's {}/{} ({})", s.failed, s.devices(), pct(s.rate()))
        ),
    );
    let (low, high) = interval(Z_95);
    let (clear_low, _) = interval(Z_999);
    if clear_low > margin && policy.auto_rollback {
        return Verdict::Rollback {
            reason: format!(
                "clearly worse: {figures}; the increase is above {} at 99.9 % (at least {})",
                points(margin),
                points(clear_low)
            ),
        };
    }
    if low > margin {
        return Verdict::Pause {
            reason: format!(
                "worse: {figures}; the increase is above {} at 95 % (at least {})",
                points(margin),
                points(low)
            ),
        };
    }
    if candidate.devices() < policy.min_devices {
        return Verdict::Hold {
            reason: format!(
                "{} of {} devices needed ({figures})",
                candidate.devices(),
                policy.min_devices
            ),
        };
    }
    let elapsed = now.unix_secs().saturating_sub(step_started.unix_secs());
    if elapsed < policy.min_step_secs {
        return Verdict::Hold {
            reason: format!(
                "the step has lasted {elapsed} of {} s ({figures})",
                policy.min_step_secs
            ),
        };
    }
    if high > margin {
        return Verdict::Hold {
            reason: format!(
                "no conclusion yet: {figures}; the increase over {against} may be up to {} at \
                 95 %, above the margin of {}",
                points(high),
                points(margin)
            ),
        };
    }
    let healthy = format!(
        "not worse than {against} by more than {}: {figures}; at most {} at 95 %",
        points(margin),
        points(high)
    );
    match policy.steps.iter().find(|&&s| s > basis_points) {
        Some(&next) => Verdict::Advance {
            basis_points: next,
            reason: healthy,
        },
        None => Verdict::Complete { reason: healthy },
    }
}

/// The actor a ramp's channel changes are recorded under.
pub const RAMP_ACTOR: &str = "ramp";

/// The lease one replica holds while it evaluates the ramps.
const RAMPS_LEASE: &str = "ramps";

impl Service {
    /// Starts a ramp on `package`'s `channel`: the candidate `version` (the current candidate
    /// when `None`) goes to the policy's first step, unless its share is already there or above,
    /// and from then on [`Service::evaluate_ramps`] moves it. Replaces an earlier ramp of the
    /// package on the channel.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad policy, [`Error::Conflict`] with no candidate to drive or
    /// a paused rollout, and the errors of [`Service::change_channel`].
    pub async fn start_ramp(
        &self,
        package: &PackageId,
        channel: &Channel,
        version: Option<&ReleaseVersion>,
        policy: RampPolicy,
        actor: &str,
        reason: &str,
    ) -> Result<RampRecord> {
        let policy = policy.checked()?;
        let app = self.app_of(package).await?;
        let (_, current) = self.meta.channel_package(&app, channel, package).await?;
        let version = match version.or(current.candidate.as_ref()) {
            Some(v) => v.clone(),
            None => {
                return Err(Error::Conflict(format!(
                    "{package} has no candidate on {channel}: name the release to ramp"
                )));
            }
        };
        let first = policy.steps[0];
        if current.candidate.as_ref() != Some(&version) || current.rollout_basis_points < first {
            let start = Action::Rollout {
                version: Some(version.clone()),
                basis_points: first,
            };
            self.change_channel(package, channel, &start, actor, reason)
                .await?;
        }
        let at = now();
        let ramp = RampRecord {
            app: app.clone(),
            channel: channel.clone(),
            package: package.clone(),
            version,
            policy,
            state: RampState::Active,
            actor: actor.to_owned(),
            started_at: at,
            step_started_at: at,
            last: None,
        };
        let audit = ramp_audit(&ramp, at, actor, "ramp.start", reason);
        self.meta.put_ramp(&ramp, Some(&audit)).await?;
        Ok(ramp)
    }

    /// The ramp of `package` on `channel`, if one was ever started.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown package; the store's errors.
    pub async fn ramp(&self, package: &PackageId, channel: &Channel) -> Result<Option<RampRecord>> {
        let app = self.app_of(package).await?;
        Ok(self
            .meta
            .ramps()
            .await?
            .into_iter()
            .find(|r| r.app == app && &r.channel == channel && &r.package == package))
    }

    /// Stops the ramp of `package` on `channel`: the share stays where it is.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no ramp runs there.
    pub async fn stop_ramp(
        &self,
        package: &PackageId,
        channel: &Channel,
        actor: &str,
        reason: &str,
    ) -> Result<RampRecord> {
        let mut ramp = self
            .ramp(package, channel)
            .await?
            .filter(|r| matches!(r.state, RampState::Active | RampState::Paused))
            .ok_or_else(|| Error::NotFound(format!("a running ramp of {package} on {channel}")))?;
        ramp.state = RampState::Ended;
        let audit = ramp_audit(&ramp, now(), actor, "ramp.stop", reason);
        self.meta.put_ramp(&ramp, Some(&audit)).await?;
        Ok(ramp)
    }

    /// Evaluates every running ramp at `now` and acts on each verdict through a channel change
    /// recorded under [`RAMP_ACTOR`] with the verdict's reason (and so in the audit log). One
    /// replica at a time: while another holds the pass's lease, this does nothing and returns
    /// nothing. A ramp that fails (the database, a conflicting change) is logged and tried again
    /// on the next pass.
    ///
    /// # Errors
    /// The store's, reading the ramps.
    pub async fn evaluate_ramps(&self, now: Timestamp) -> Result<Vec<RampRecord>> {
        let Some(_lease) = self.meta.try_lock(RAMPS_LEASE).await? else {
            return Ok(Vec::new());
        };
        let mut evaluated = Vec::new();
        for mut ramp in self.meta.ramps().await? {
            if !matches!(ramp.state, RampState::Active | RampState::Paused) {
                continue;
            }
            match self.evaluate_ramp(&mut ramp, now).await {
                Ok(()) => evaluated.push(ramp),
                Err(e) => tracing::warn!(
                    app = %ramp.app, channel = %ramp.channel, package = %ramp.package,
                    error = %e, "evaluating a ramp failed"
                ),
            }
        }
        Ok(evaluated)
    }

    async fn evaluate_ramp(&self, ramp: &mut RampRecord, now: Timestamp) -> Result<()> {
        let (_, state) = self
            .meta
            .channel_package(&ramp.app, &ramp.channel, &ramp.package)
            .await?;
        if state.candidate.as_ref() != Some(&ramp.version) {
            let why = format!(
                "{} is no longer the candidate on {}: the ramp ends",
                ramp.version, ramp.channel
            );
            ramp.state = if state.stable.as_ref() == Some(&ramp.version) {
                RampState::Completed
            } else {
                RampState::Ended
            };
            let audit = ramp_audit(ramp, now, RAMP_ACTOR, "ramp.end", &why);
            return self.meta.put_ramp(ramp, Some(&audit)).await;
        }
        if state.paused {
            // Paused by the ramp or by hand: it waits for a resume.
            if ramp.state == RampState::Active {
                ramp.state = RampState::Paused;
                self.meta.put_ramp(ramp, None).await?;
            }
            return Ok(());
        }
        if ramp.state == RampState::Paused {
            // Resumed by hand: the step starts again.
            ramp.state = RampState::Active;
            ramp.step_started_at = now;
        }
        let stats = self.meta.stats(&ramp.app, &ramp.channel).await?;
        let health = |v: &ReleaseVersion| {
            stats
                .iter()
                .find(|s| {
                    s.package.as_ref() == Some(&ramp.package) && s.version.as_ref() == Some(v)
                })
                .map(|s| Health {
                    activated: s.activated,
                    failed: s.failed,
                })
        };
        let candidate = health(&ramp.version).unwrap_or_default();
        let stable = state.stable.as_ref().and_then(health);
        let verdict = decide(
            &ramp.policy,
            state.rollout_basis_points,
            ramp.step_started_at,
            now,
            candidate,
            stable,
        );
        self.metrics
            .ramp_verdicts
            .get_or_create(&OutcomeLabels {
                outcome: verdict.name().to_owned(),
            })
            .inc();
        let (action, next) = match &verdict {
            Verdict::Advance { basis_points, .. } => (
                Some(Action::Rollout {
                    version: None,
                    basis_points: *basis_points,
                }),
                RampState::Active,
            ),
            Verdict::Complete { .. } => (Some(Action::Complete), RampState::Completed),
            Verdict::Pause { .. } => (Some(Action::Pause), RampState::Paused),
            Verdict::Rollback { .. } => {
                (Some(Action::Rollback { to: None }), RampState::RolledBack)
            }
            Verdict::Hold { .. } => (None, ramp.state),
        };
        if let Some(action) = &action {
            let reason = format!("ramp: {}", verdict.reason());
            self.change_channel(&ramp.package, &ramp.channel, action, RAMP_ACTOR, &reason)
                .await?;
            tracing::info!(
                app = %ramp.app, channel = %ramp.channel, package = %ramp.package,
                verdict = verdict.name(), reason = verdict.reason(), "ramp acted"
            );
            if matches!(verdict, Verdict::Advance { .. }) {
                ramp.step_started_at = now;
            }
        }
        ramp.state = next;
        ramp.last = Some(Evaluation {
            at: now,
            verdict: verdict.name().to_owned(),
            reason: verdict.reason().to_owned(),
            basis_points: state.rollout_basis_points,
            candidate,
            stable,
        });
        self.meta.put_ramp(ramp, None).await
    }

    async fn app_of(&self, package: &PackageId) -> Result<AppId> {
        self.meta
            .package_app(package)
            .await?
            .ok_or_else(|| Error::NotFound(format!("package {package}")))
    }
}

fn ramp_audit(
    ramp: &RampRecord,
    at: Timestamp,
    actor: &str,
    action: &str,
    reason: &str,
) -> AuditEntry {
    AuditEntry {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("{}/{}/{}", ramp.app, ramp.channel, ramp.package),
        detail: serde_json::json!({
            "version": ramp.version,
            "policy": ramp.policy,
            "state": ramp.state,
            "reason": reason,
        })
        .to_string(),
    }
}

/// Evaluates the ramps every `every`, for as long as the server runs (`baleen serve`).
pub async fn evaluate_periodically(service: Arc<Service>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = service.evaluate_ramps(now()).await {
            tracing::error!(error = %e, "evaluating the ramps failed");
        }
    }
}
