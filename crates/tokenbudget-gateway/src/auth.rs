//! Who is calling and which budget pays: the key, a narrowing header, a session's phase.

use axum::http::HeaderMap;
use serde_json::Value;
use tokenbudget::{BudgetId, CoreError, MAX_DEPTH};

use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::keys::{self, KeyRecord};

/// The caller, authenticated.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub key: KeyRecord,
    /// The budget that pays (the key's, a descendant, or the session's phase).
    pub budget: BudgetId,
    pub session: Option<String>,
    /// True when the client sent its own upstream credential (key in `x-tokenbudget-key`).
    pub forwards_credential: bool,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The tokenbudget key and whether the client's own credential is to be forwarded.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<(&str, bool)> {
    if let Some(key) = header(headers, "x-tokenbudget-key") {
        return Some((key, true));
    }
    if let Some(key) = header(headers, "x-api-key") {
        return Some((key, false));
    }
    header(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|k| (k.trim(), false))
}

/// The Claude Code session: its header, else `metadata.user_id`'s session part
/// (`user_…_account_…_session_<uuid>`, or a JSON object with `session_id`).
pub(crate) fn session_id(headers: &HeaderMap, body: &Value) -> Option<String> {
    let raw = header(headers, "x-claude-code-session-id")
        .map(str::to_owned)
        .or_else(|| {
            let user = body.pointer("/metadata/user_id")?.as_str()?;
            if let Some((_, session)) = user.rsplit_once("_session_") {
                return Some(session.to_owned());
            }
            let parsed: Value = serde_json::from_str(user).ok()?;
            parsed.get("session_id")?.as_str().map(str::to_owned)
        })?;
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// The phase id of `session` under `budget`: `<budget>:session:<id>`, or a hash of it when
/// that would pass the 128-character limit.
pub(crate) fn session_phase(budget: &BudgetId, session: &str) -> Result<BudgetId> {
    let id = format!("{budget}:session:{session}");
    let id = if id.len() <= tokenbudget::id::MAX_BUDGET_ID_LEN {
        id
    } else {
        format!("session:{}", &keys::hash(&id)[..32])
    };
    BudgetId::new(id).map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// What identifies an authorization: the key's hash, the budget asked for, the session.
type CallerKey = (String, Option<String>, Option<String>);

/// Callers authorized while the store answered, for `on_store_error = "open"` to serve while
/// it does not. Bounded: past [`CallerCache::CAPACITY`] entries it starts over (a caller
/// then needs the store once more), so a week of sessions cannot grow it.
///
/// # Note
/// A key revoked while the store is unreachable is still served from here until the store
/// is back: revocations live in the store.
#[derive(Debug, Default)]
pub(crate) struct CallerCache {
    entries: std::sync::Mutex<std::collections::HashMap<CallerKey, Caller>>,
}

impl CallerCache {
    /// The most callers remembered.
    pub const CAPACITY: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<CallerKey, Caller>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn remember(&self, key: CallerKey, caller: &Caller) {
        let mut entries = self.lock();
        if entries.len() >= Self::CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, caller.clone());
    }

    fn recall(&self, key: &CallerKey) -> Option<Caller> {
        self.lock().get(key).cloned()
    }
}

impl Gateway {
    /// Authenticates the request and picks the budget that pays for it, each store call
    /// within `timeouts.store`. With `on_store_error = "open"`, a caller authorized before
    /// is served from memory while the store is unreachable.
    pub(crate) async fn authorize(&self, headers: &HeaderMap, body: &Value) -> Result<Caller> {
        let settings = &self.inner.settings;
        let fresh =
            tokio::time::timeout(settings.timeouts.store, self.authorize_fresh(headers, body))
                .await
                .unwrap_or_else(|_| Err(Error::Store("timed out".into())));
        if settings.on_store_error != crate::config::OnStoreError::Open {
            return fresh;
        }
        let Some((presented, _)) = presented_key(headers) else {
            return fresh;
        };
        let key = (
            keys::hash(presented),
            header(headers, "x-tokenbudget-budget").map(str::to_owned),
            session_id(headers, body),
        );
        match fresh {
            Ok(caller) => {
                self.inner.callers.remember(key, &caller);
                Ok(caller)
            }
            Err(Error::Store(reason)) => {
                self.inner.callers.recall(&key).ok_or(Error::Store(reason))
            }
            Err(e) => Err(e),
        }
    }

    async fn authorize_fresh(&self, headers: &HeaderMap, body: &Value) -> Result<Caller> {
        let (presented, forwards_credential) = presented_key(headers).ok_or(Error::MissingKey)?;
        if !presented.starts_with(keys::PREFIX) {
            return Err(Error::UnknownKey);
        }
        let key = self
            .inner
            .keys
            .by_hash(&keys::hash(presented))
            .await?
            .ok_or(Error::UnknownKey)?;
        if key.revoked_at.is_some() {
            return Err(Error::RevokedKey { id: key.id });
        }
        let mut budget = key.budget_id.clone();
        if let Some(asked) = header(headers, "x-tokenbudget-budget") {
            let asked = BudgetId::new(asked).map_err(|e| Error::InvalidRequest(e.to_string()))?;
            if !self.is_within(&asked, &key.budget_id).await? {
                return Err(Error::ForbiddenBudget {
                    budget: asked.to_string(),
                    key_budget: key.budget_id.to_string(),
                });
            }
            budget = asked;
        }
        let session = session_id(headers, body);
        if let (Some(limit), Some(session)) = (key.session_limit, session.as_deref()) {
            budget = self.session_budget(&budget, session, limit).await?;
        }
        Ok(Caller {
            key,
            budget,
            session,
            forwards_credential,
        })
    }

    /// True when `id` is `ancestor` or one of its descendants.
    async fn is_within(&self, id: &BudgetId, ancestor: &BudgetId) -> Result<bool> {
        let store = self.inner.budgets.store();
        let mut current = id.clone();
        for _ in 0..=MAX_DEPTH {
            if &current == ancestor {
                return Ok(true);
            }
            match store.budget(&current).await?.and_then(|b| b.parent) {
                Some(parent) => current = parent,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// The session's phase under `budget`, created on first use with `limit`.
    async fn session_budget(
        &self,
        budget: &BudgetId,
        session: &str,
        limit: u64,
    ) -> Result<BudgetId> {
        let phase = session_phase(budget, session)?;
        let budgets = &self.inner.budgets;
        if budgets.store().budget(&phase).await?.is_none() {
            // A phase counts what its parent counts: the session limit is in that unit.
            let unit = budgets
                .store()
                .budget(budget)
                .await?
                .map_or(tokenbudget::Unit::Tokens, |b| b.unit);
            let new =
                tokenbudget::NewBudget::child(phase.clone(), budget.clone(), limit).with_unit(unit);
            match budgets.create_budget(new).await {
                Ok(_) | Err(tokenbudget::Error::Core(CoreError::BudgetExists { .. })) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn key_from_each_header_and_the_forwarding_mode() {
        let mut h = HeaderMap::new();
        assert!(presented_key(&h).is_none());
        h.insert("authorization", HeaderValue::from_static("Bearer tbk_a"));
        assert_eq!(presented_key(&h), Some(("tbk_a", false)));
        h.insert("x-api-key", HeaderValue::from_static("tbk_b"));
        assert_eq!(presented_key(&h), Some(("tbk_b", false)));
        h.insert("x-tokenbudget-key", HeaderValue::from_static("tbk_c"));
        assert_eq!(presented_key(&h), Some(("tbk_c", true)));
    }

    #[test]
    fn session_from_header_or_metadata() {
        let mut h = HeaderMap::new();
        let body = json!({"metadata": {"user_id": "user_abc_account_def_session_1234-5678"}});
        assert_eq!(session_id(&h, &body).as_deref(), Some("1234-5678"));
        let json_form =
            json!({"metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"s-9\"}"}});
        assert_eq!(session_id(&h, &json_form).as_deref(), Some("s-9"));
        h.insert(
            "x-claude-code-session-id",
            HeaderValue::from_static("hdr/../1"),
        );
        assert_eq!(session_id(&h, &body).as_deref(), Some("hdr1"));
        assert_eq!(session_id(&HeaderMap::new(), &json!({})), None);
    }

    #[test]
    fn session_phase_ids_stay_valid() {
        let short = BudgetId::new("team").unwrap();
        assert_eq!(
            session_phase(&short, "abc").unwrap().as_str(),
            "team:session:abc"
        );
        let long = BudgetId::new("x".repeat(120)).unwrap();
        let phase = session_phase(&long, "abc").unwrap();
        assert!(phase.as_str().starts_with("session:") && phase.as_str().len() <= 128);
    }
}
