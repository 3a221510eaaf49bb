//! Identifiers: budget ids, reservation ids, idempotency keys, and the injected id generator.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The longest budget id accepted, in bytes (all allowed characters are ASCII).
pub const MAX_BUDGET_ID_LEN: usize = 128;

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A validated budget id: 1–128 characters of `[A-Za-z0-9_.:-]`.
///
/// ```
/// use tokenbudget_core::BudgetId;
/// assert!(BudgetId::new("wf-42:plan").is_ok());
/// assert!(BudgetId::new("no spaces").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BudgetId(String);

impl BudgetId {
    /// Validates `id`, returning [`Error::InvalidBudgetId`] when it is empty, too long or has a
    /// character outside `[A-Za-z0-9_.:-]`.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_BUDGET_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if valid {
            Ok(Self(id))
        } else {
            Err(Error::InvalidBudgetId { id })
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BudgetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for BudgetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BudgetId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for BudgetId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for BudgetId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&String> for BudgetId {
    type Error = Error;
    fn try_from(s: &String) -> Result<Self> {
        Self::new(s.as_str())
    }
}

impl TryFrom<&BudgetId> for BudgetId {
    type Error = Error;
    fn try_from(id: &BudgetId) -> Result<Self> {
        Ok(id.clone())
    }
}

impl AsRef<str> for BudgetId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for BudgetId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A reservation id: a full UUID, never truncated.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(Uuid);

impl ReservationId {
    /// Wraps a UUID.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Debug for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for ReservationId {
    type Err = Error;
    /// Parses any UUID form `uuid` accepts; anything else is [`Error::InvalidReservationId`].
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| Error::InvalidReservationId { id: s.to_owned() })
    }
}

impl From<Uuid> for ReservationId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// A caller-chosen key that makes a retried `reserve` return the first answer.
///
/// 1–255 bytes of printable ASCII (space through `~`). Keys are unique per store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates `key`, returning [`Error::InvalidIdempotencyKey`] when it is empty, longer than
    /// 255 bytes or holds a byte outside printable ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        let valid = !key.is_empty()
            && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && key.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if valid {
            Ok(Self(key))
        } else {
            Err(Error::InvalidIdempotencyKey { key })
        }
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IdempotencyKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// Makes reservation ids. Injected into the tracker so tests are deterministic.
pub trait IdGenerator: Send + Sync + fmt::Debug {
    /// A new, never-before-returned reservation id.
    fn reservation_id(&self) -> ReservationId;
}

/// Random, time-ordered UUIDv7 ids (good index locality in SQL stores). The default.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn reservation_id(&self) -> ReservationId {
        ReservationId(Uuid::now_v7())
    }
}

/// Deterministic ids `00000000-0000-4000-8000-<counter>` for tests.
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: std::sync::atomic::AtomicU64,
}

impl IdGenerator for SequentialIds {
    fn reservation_id(&self) -> ReservationId {
        let n = self
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        ReservationId(Uuid::from_u128(
            0x0000_0000_0000_4000_8000_0000_0000_0000 | u128::from(n),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_id_accepts_exactly_the_documented_alphabet() {
        assert!(BudgetId::new("a").is_ok());
        assert!(BudgetId::new("A-z_0.9:x").is_ok());
        assert!(BudgetId::new("x".repeat(128)).is_ok());
        for bad in ["", " ", "a b", "é", "a/b", "a\0", "a\n"] {
            assert!(
                matches!(BudgetId::new(bad), Err(Error::InvalidBudgetId { .. })),
                "{bad:?}"
            );
        }
        assert!(BudgetId::new("x".repeat(129)).is_err());
    }

    #[test]
    fn reservation_id_round_trips_in_full() {
        let id = SequentialIds::default().reservation_id();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<ReservationId>().unwrap(), id);
        assert!(matches!(
            "not-a-uuid".parse::<ReservationId>(),
            Err(Error::InvalidReservationId { .. })
        ));
    }

    #[test]
    fn idempotency_key_rejects_control_bytes_and_length() {
        assert!(IdempotencyKey::new("req-1 retry").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("a\tb").is_err());
        assert!(IdempotencyKey::new("k".repeat(256)).is_err());
    }
}
