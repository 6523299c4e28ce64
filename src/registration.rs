//! Who may create an account on this deployment (`REGISTRATION`). A fresh
//! deployment is a personal service, so the default is an allow-list, and
//! anything unreadable closes the door rather than opening it.

use crate::error::SyncError;
use crate::model::Email;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may sign up (local development and the tests).
    Open,
    /// Only these lower-cased addresses, or any address at a domain written
    /// as `@example.com`.
    Allowlist(Vec<String>),
    Closed,
}

impl Registration {
    /// `mode` is `open`, `allowlist` or `closed` (any case); unset means
    /// `allowlist`; an unknown mode means `closed`.
    pub fn parse(mode: Option<&str>, allowlist: &str) -> Self {
        match mode.map(|m| m.trim().to_ascii_lowercase()).as_deref() {
            Some("open") => Self::Open,
            None | Some("") | Some("allowlist") => Self::Allowlist(
                allowlist
                    .split(',')
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect(),
            ),
            _ => Self::Closed,
        }
    }

    pub fn permits(&self, email: &Email) -> Result<(), SyncError> {
        let email = email.as_str();
        let listed = |entry: &String| match entry.strip_prefix('@') {
            Some(domain) => email.rsplit_once('@').is_some_and(|(_, d)| d == domain),
            None => entry == email,
        };
        match self {
            Self::Open => Ok(()),
            Self::Allowlist(list) if list.iter().any(listed) => Ok(()),
            Self::Allowlist(_) => Err(SyncError::RegistrationClosed { allowlist: true }),
            Self::Closed => Err(SyncError::RegistrationClosed { allowlist: false }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn modes() {
        let r = Registration::parse(Some("open"), "");
        assert!(r.permits(&email("anyone@x.org")).is_ok());
        let r = Registration::parse(Some("Closed"), "me@x.org");
        assert_eq!(
            r.permits(&email("me@x.org")).unwrap_err().code(),
            "registration_closed"
        );
        // Unset is an allow-list; an empty one lets nobody in.
        let r = Registration::parse(None, "");
        assert_eq!(r, Registration::Allowlist(vec![]));
        assert!(r.permits(&email("me@x.org")).is_err());
        // A typo never opens the door.
        assert_eq!(Registration::parse(Some("opne"), ""), Registration::Closed);
    }

    #[test]
    fn allowlist_matches_addresses_and_domains() {
        let r = Registration::parse(Some("allowlist"), " Me@Home.org , @family.net,,");
        assert!(r.permits(&email("me@home.org")).is_ok());
        assert!(r.permits(&email("ME@HOME.ORG")).is_ok());
        assert!(r.permits(&email("kid@family.net")).is_ok());
        for stranger in ["you@home.org", "me@home.org.evil.com", "x@notfamily.net"] {
            let e = r.permits(&email(stranger)).unwrap_err();
            assert_eq!(e.status(), 403, "{stranger}");
        }
    }
}
