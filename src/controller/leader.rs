//! Leader election on a `coordination.k8s.io/v1` Lease, so several
//! replicas can run and exactly one of them reconciles.
//!
//! The Lease is kept by [`kube_lease_manager`]: it renews the Lease
//! `grace` seconds before it expires and lets a standby take an expired
//! Lease over. Each replica writes the Lease under its own field manager
//! (`dualmesh-leader-<identity>`): server-side apply only detects a
//! competing lock when the managers differ, so this is the one place
//! dualmesh does not write as `dualmesh`.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Error, Shutdown};

/// Which Lease, held by whom, for how long.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace (the operator's).
    pub namespace: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal; a standby takes over
    /// at most this long after the leader dies.
    pub duration: Duration,
}

impl LeaderConfig {
    fn seconds(&self) -> u64 {
        self.duration.as_secs().max(2)
    }

    /// How long before the Lease could expire this replica stops writing
    /// (see [`super::fence`]): half the renewal head start, so a healthy
    /// leader renews well before its fence closes.
    pub fn fence_margin(&self) -> Duration {
        Duration::from_millis(self.grace() * 500)
    }

    /// Renew this many seconds before the Lease expires: a third of its
    /// duration, at least one.
    fn grace(&self) -> u64 {
        (self.seconds() / 3).max(1)
    }
}

/// This replica holds the Lease.
pub struct Leadership {
    receiver: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

/// Waits until this replica holds the Lease, or `shutdown` comes first
/// (then `None`, and the Lease is left to the others).
pub async fn acquire(
    client: Client,
    config: &LeaderConfig,
    shutdown: Shutdown,
) -> Result<Option<Leadership>, Error> {
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.seconds())
        .with_grace(config.grace())
        .with_field_manager(format!("dualmesh-leader-{}", config.identity))
        .build()
        .await
        .map_err(Error::Leader)?;
    let (mut receiver, task) = manager.watch().await;
    tracing::info!(lease = %format!("{}/{}", config.namespace, config.lease_name), identity = %config.identity, "waiting for leadership");
    loop {
        if *receiver.borrow_and_update() {
            tracing::info!(identity = %config.identity, "acquired the leader Lease");
            return Ok(Some(Leadership { receiver, task }));
        }
        tokio::select! {
            changed = receiver.changed() => {
                if changed.is_err() {
                    return Err(match task.await {
                        Ok(Err(e)) => Error::Leader(e),
                        Ok(Ok(_)) | Err(_) => Error::LeaderWatchStopped,
                    });
                }
            }
            () = shutdown.clone() => {
                drop(receiver);
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                return Ok(None);
            }
        }
    }
}

impl Leadership {
    /// Resolves when this replica no longer holds the Lease (another took
    /// it over, or renewing failed past its expiry).
    pub async fn lost(&mut self) {
        loop {
            if !*self.receiver.borrow_and_update() {
                return;
            }
            if self.receiver.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up, so a standby need not wait for it to expire.
    pub async fn release(self) {
        drop(self.receiver);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader Lease task failed"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secs: u64) -> LeaderConfig {
        LeaderConfig {
            lease_name: "dualmesh".into(),
            namespace: "dualmesh-system".into(),
            identity: "a".into(),
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn renews_a_third_of_the_duration_early() {
        let pairs: Vec<(u64, u64)> = [0, 1, 2, 4, 15, 30]
            .into_iter()
            .map(|s| (config(s).seconds(), config(s).grace()))
            .collect();
        assert_eq!(
            pairs,
            vec![(2, 1), (2, 1), (2, 1), (4, 1), (15, 5), (30, 10)]
        );
    }
}
