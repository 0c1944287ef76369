//! Waiting for watch caches to fill.

use std::time::Duration;

use kube::runtime::reflector::Store;

use super::Error;

/// Waits for a store's first list.
///
/// `Store::wait_until_ready` keeps a single waker (a one-shot channel), so
/// of several tasks waiting on one store at once only the last one polled
/// is woken; the others would wait forever. Asking again every 20 ms bounds
/// a lost wakeup to that. Fails when the store's writer is gone.
pub async fn filled<K>(store: &Store<K>, cache: &'static str) -> Result<(), Error>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(20), store.wait_until_ready()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) => return Err(Error::CacheGone { cache }),
            Err(_) => {}
        }
    }
}

/// Waits until a store has its first list, at most `timeout`. The Node
/// store is shared by every MeshCluster of a cluster, so several reconciles
/// wait on it at once: [`filled`] does not lose their wakeups.
pub async fn synced<K>(
    store: &Store<K>,
    cache: &'static str,
    timeout: Duration,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    match tokio::time::timeout(timeout, filled(store, cache)).await {
        Ok(result) => result,
        Err(_) => Err(Error::CacheNotFilled {
            cache,
            waited: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher;

    /// Several tasks waiting on one store all wake when it is filled (a
    /// bare `wait_until_ready` wakes only the last one polled).
    #[tokio::test]
    async fn every_waiter_sees_the_store_filled() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { filled(&store, "test").await.is_ok() })
            })
            .collect();
        // Let every waiter register before the store fills.
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for w in waiters {
            // A lost wakeup would hang here; 5 s is only the test's guard.
            let done = tokio::time::timeout(Duration::from_secs(5), w).await;
            assert!(matches!(done, Ok(Ok(true))), "{done:?}");
        }
    }

    #[tokio::test]
    async fn a_store_that_never_fills_is_a_typed_error() {
        use k8s_openapi::api::core::v1::Pod;
        let (store, _writer) = kube::runtime::reflector::store::<Pod>();
        let e = synced(&store, "gateway Pod", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::CacheNotFilled {
                    cache: "gateway Pod",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_transient());
    }
}
