//! The cross-instance lease (`Policy::lease`): one instance loads a cold key while the others
//! wait a bounded time for its value.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Cache;
use crate::codec::{now_ms, Freshness, Header};
use crate::key::CacheKey;

pub(crate) enum LeaseOutcome {
    /// No lease (not asked for, or the backend failed): load without one.
    NotUsed,
    /// Held with this token: load, store, release.
    Held(String),
    /// Another instance stored a fresh value meanwhile.
    FilledByOther(Bytes, Header),
}

impl Cache {
    fn lock_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.inner.lock_prefix, key.as_str())
    }

    /// A fresh entry under `key`, if the backend has one.
    async fn fresh_entry(&self, key: &CacheKey) -> Result<Option<(Bytes, Header)>, ()> {
        let backend = &self.inner.backend;
        match self
            .call(self.deadline(), || backend.get(key.as_str()))
            .await
        {
            Ok(Some(bytes)) => {
                let found = Header::parse(&bytes)
                    .ok()
                    .filter(|h| h.freshness(now_ms()).0 == Freshness::Fresh)
                    .filter(|h| !self.withheld(key, &bytes, h));
                match found {
                    Some(h)
                        if self.verifying().await && !self.verify_entry(key, &bytes, &h).await =>
                    {
                        Ok(None)
                    }
                    Some(h) => Ok(Some((bytes, h))),
                    None => Ok(None),
                }
            }
            Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }

    pub(crate) async fn acquire_lease(&self, key: &CacheKey) -> LeaseOutcome {
        let lock_key = self.lock_key(key);
        let token = format!("{:016x}", fastrand::u64(..));
        let backend = &self.inner.backend;
        let s = &self.inner.settings;
        match self
            .call(self.deadline(), || {
                backend.try_lock(&lock_key, &token, s.lease_ttl)
            })
            .await
        {
            Ok(true) => {
                // Double-check: the previous holder may have stored the value and released the
                // lease between our miss and our lock.
                if let Ok(Some((bytes, header))) = self.fresh_entry(key).await {
                    let _ = self
                        .call(self.deadline(), || backend.unlock(&lock_key, &token))
                        .await;
                    return LeaseOutcome::FilledByOther(bytes, header);
                }
                return LeaseOutcome::Held(token);
            }
            Ok(false) => {}
            Err(_) => return LeaseOutcome::NotUsed,
        }
        // Another instance loads: wait a bounded time for its value.
        let until = Instant::now() + s.lease_wait;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < until {
            tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            match self.fresh_entry(key).await {
                Ok(Some((bytes, header))) => return LeaseOutcome::FilledByOther(bytes, header),
                Ok(None) => {
                    // The holder may have crashed: try to take over its expired lease.
                    if let Ok(true) = self
                        .call(self.deadline(), || {
                            backend.try_lock(&lock_key, &token, s.lease_ttl)
                        })
                        .await
                    {
                        return LeaseOutcome::Held(token);
                    }
                }
                Err(()) => return LeaseOutcome::NotUsed,
            }
        }
        LeaseOutcome::NotUsed
    }

    pub(crate) async fn release_lease(&self, key: &CacheKey, token: &str) {
        let lock_key = self.lock_key(key);
        let backend = &self.inner.backend;
        let _ = self
            .call(self.deadline(), || backend.unlock(&lock_key, token))
            .await;
    }
}
