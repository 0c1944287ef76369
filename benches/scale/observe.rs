//! What the bench sees: the MeshCluster watch and the tail of the audit log.

use super::*;

/// What the MeshCluster watch saw of each MeshCluster.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) ready: HashMap<String, bool>,
    pub(crate) addresses: HashMap<String, String>,
    /// When the count of Ready ones first reached `want`.
    pub(crate) all_ready_at: Option<Instant>,
    pub(crate) want: usize,
    /// Modifications seen (not the initial list): an apply that changes
    /// nothing makes no new resourceVersion and so no event, which tells
    /// the operator's no-op writes from real ones.
    pub(crate) modified: usize,
}

impl View {
    pub(crate) fn ready_count(&self) -> usize {
        self.ready.values().filter(|r| **r).count()
    }
}

/// Watches the MeshClusters and keeps `view` current; notes the instant all
/// of them are first Ready, inside the event handler (no polling delay).
pub(crate) fn watch_meshclusters(
    client: Client,
    view: Arc<Mutex<View>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<MeshCluster> = Api::namespaced(client, NS);
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let mut v = view.lock().expect("view lock");
            if matches!(event, watcher::Event::Apply(_)) {
                v.modified += 1;
            }
            match event {
                watcher::Event::Apply(mc) | watcher::Event::InitApply(mc) => {
                    let name = mc.name_any();
                    let ready =
                        common::condition(&mc, "Ready").is_some_and(|(s, _, _)| s == "True");
                    let all = mc
                        .status
                        .as_ref()
                        .and_then(|s| s.gateway_addresses.as_ref())
                        .map(|g| g.all.clone())
                        .unwrap_or_default();
                    v.ready.insert(name.clone(), ready);
                    v.addresses.insert(name, all);
                }
                watcher::Event::Delete(mc) => {
                    v.ready.remove(&mc.name_any());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            if v.all_ready_at.is_none() && v.want > 0 && v.ready_count() == v.want {
                v.all_ready_at = Some(Instant::now());
            }
        }
    })
}

/// Reads the audit log from where it last stopped and counts the operator's
/// completed requests: cheap enough to ask twice a second, where
/// `ControlPlane::writes_by` parses the whole (by then large) log. A log that
/// cannot be opened or read is an error, never "no writes".
pub(crate) struct AuditTail {
    pub(crate) path: std::path::PathBuf,
    pub(crate) offset: u64,
}

impl AuditTail {
    pub(crate) fn new(path: std::path::PathBuf) -> Self {
        AuditTail { path, offset: 0 }
    }

    pub(crate) fn operator_writes(&mut self) -> std::io::Result<usize> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)?;
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(self.offset))?;
        f.read_to_end(&mut buf)?;
        // Only whole lines; a line being written is read next time.
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += end as u64;
        let user = format!("\"username\":\"{OPERATOR_USER}\"");
        Ok(String::from_utf8_lossy(&buf[..end])
            .lines()
            .filter(|l| l.contains("\"stage\":\"ResponseComplete\"") && l.contains(&user))
            .count())
    }
}
