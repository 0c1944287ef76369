//! Watches that stamp each event with the instant it arrived.

use super::*;

/// What a watch saw happen to one object.
pub(crate) enum Seen<K> {
    Applied(K),
    Deleted(K),
}

impl<K: ResourceExt> Seen<K> {
    pub(crate) fn applied(&self, name: &str) -> Option<&K> {
        match self {
            Seen::Applied(k) if k.name_any() == name => Some(k),
            _ => None,
        }
    }

    pub(crate) fn deleted(&self, name: &str) -> bool {
        matches!(self, Seen::Deleted(k) if k.name_any() == name)
    }
}

/// A watch running in a task of its own. The task stamps every event the
/// moment it arrives, so how late the benchmark reads the channel does not
/// move the measurement, and two watches can be read one after the other.
pub(crate) struct Watch<K> {
    pub(crate) what: String,
    pub(crate) rx: mpsc::UnboundedReceiver<(Instant, Seen<K>)>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Starts the watch and returns once its initial list is in (so no
    /// event of the measurement can precede it).
    pub(crate) async fn start(api: Api<K>, config: watcher::Config, what: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (listed_tx, listed_rx) = oneshot::channel();
        let label = what.to_string();
        let task = tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let stream = watcher(api, config).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let at = Instant::now();
                let seen = match event {
                    Ok(Event::Apply(k) | Event::InitApply(k)) => Seen::Applied(k),
                    Ok(Event::Delete(k)) => Seen::Deleted(k),
                    Ok(Event::InitDone) => {
                        if let Some(l) = listed.take() {
                            let _ = l.send(());
                        }
                        continue;
                    }
                    Ok(Event::Init) => continue,
                    // The backoff retries; a lasting failure shows as a
                    // timeout. (The first start of a watch on a fresh plane
                    // is often reset once; that is before any measurement,
                    // which waits for the initial list.)
                    Err(e) => {
                        eprintln!("watch {label}: start failed, retrying: {e}");
                        continue;
                    }
                };
                if tx.send((at, seen)).is_err() {
                    return;
                }
            }
        });
        tokio::time::timeout(WAIT, listed_rx)
            .await
            .unwrap_or_else(|_| panic!("watch {what}: no initial list within {WAIT:?}"))
            .unwrap_or_else(|_| panic!("watch {what} ended before its initial list"));
        Watch {
            what: what.to_string(),
            rx,
            task,
        }
    }

    /// Reads events until `done` holds for one that arrived at or after
    /// `since` (events before it cannot show the outcome of a change made
    /// at `since`); returns that event's arrival. Errs after [`WAIT`].
    pub(crate) async fn until(
        &mut self,
        since: Instant,
        outcome: &str,
        mut done: impl FnMut(&Seen<K>) -> bool,
    ) -> Result<Instant, String> {
        let deadline = tokio::time::Instant::from_std(since + WAIT);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((at, seen))) => {
                    if at >= since && done(&seen) {
                        return Ok(at);
                    }
                }
                Ok(None) => return Err(format!("watch {} ended", self.what)),
                Err(_) => {
                    return Err(format!(
                        "{outcome} not seen by watch {} within {WAIT:?}",
                        self.what
                    ));
                }
            }
        }
    }
}

/// A functional failure: say what, show the operator's log tail, stop.
pub(crate) fn fail(operator: &Operator, error: String) -> ! {
    panic!(
        "{error}\n--- operator log, last 40 lines ---\n{}",
        operator.log_tail(40)
    )
}
