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
        self.permits_with(email, &[])
    }

    /// `permits` with the operator's changes from the database: `changes`
    /// holds the rows for this email's entries (the address, `@domain`),
    /// each allowed or not. A row decides for its entry, in both directions;
    /// an entry without one is as `REGISTRATION_ALLOWLIST` says (the
    /// variable seeds the list, the database changes it without a deploy).
    pub fn permits_with(&self, email: &Email, changes: &[(String, bool)]) -> Result<(), SyncError> {
        let list = match self {
            Self::Open => return Ok(()),
            Self::Closed => return Err(SyncError::RegistrationClosed { allowlist: false }),
            Self::Allowlist(list) => list,
        };
        // The address's own entry decides before its domain's, so one
        // address can be let in, or kept out, of a listed domain.
        let allowed = entries_for(email).into_iter().find_map(|entry| {
            match changes.iter().find(|(e, _)| *e == entry) {
                Some((_, allowed)) => Some(*allowed),
                None => list.contains(&entry).then_some(true),
            }
        }) == Some(true);
        if allowed {
            Ok(())
        } else {
            Err(SyncError::RegistrationClosed { allowlist: true })
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Allowlist(_) => "allowlist",
            Self::Closed => "closed",
        }
    }

    /// The entries of `REGISTRATION_ALLOWLIST` (empty unless `allowlist`).
    pub fn seed(&self) -> &[String] {
        match self {
            Self::Allowlist(list) => list,
            _ => &[],
        }
    }
}

/// The allow-list entries that would let `email` in: itself and its domain.
pub fn entries_for(email: &Email) -> Vec<String> {
    let email = email.as_str();
    let mut entries = vec![email.to_owned()];
    if let Some((_, domain)) = email.rsplit_once('@') {
        entries.push(format!("@{domain}"));
    }
    entries
}

/// An entry the operator adds or removes: an email address or `@domain`,
/// lower-cased.
pub fn parse_entry(raw: &str) -> Result<String, SyncError> {
    let raw = raw.trim();
    match raw.strip_prefix('@') {
        Some(domain) => {
            // A domain is what an address may have after its '@'.
            let probe = Email::parse(&format!("x@{domain}"))
                .map_err(|_| SyncError::InvalidRequest(format!("{raw:?} is not an @domain")))?;
            let (_, d) = probe.as_str().split_at(2);
            Ok(format!("@{d}"))
        }
        None => Email::parse(raw)
            .map(|e| e.as_str().to_owned())
            .map_err(|_| {
                SyncError::InvalidRequest(format!("{raw:?} is neither an email nor an @domain"))
            }),
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
    fn database_rows_change_the_seed_both_ways() {
        let r = Registration::parse(Some("allowlist"), "me@home.org, @family.net");
        let allow = |e: &str, rows: &[(&str, bool)]| {
            let rows: Vec<(String, bool)> = rows.iter().map(|(e, a)| (e.to_string(), *a)).collect();
            r.permits_with(&email(e), &rows).is_ok()
        };
        assert!(allow("me@home.org", &[]));
        // Disallowed in the database: the variable no longer lets it in.
        assert!(!allow("me@home.org", &[("me@home.org", false)]));
        assert!(!allow("kid@family.net", &[("@family.net", false)]));
        // An address allowed while its domain is not, and the reverse.
        assert!(!allow("kid@family.net", &[("kid@family.net", false)]));
        assert!(allow(
            "kid@family.net",
            &[("@family.net", false), ("kid@family.net", true)]
        ));
        // Allowed only in the database.
        assert!(allow("new@else.org", &[("new@else.org", true)]));
        assert!(allow("x@else.org", &[("@else.org", true)]));
        // Open and closed ignore the list.
        let open = Registration::parse(Some("open"), "");
        assert!(open
            .permits_with(&email("a@b.org"), &[("a@b.org".into(), false)])
            .is_ok());
        let closed = Registration::parse(Some("closed"), "");
        assert!(closed
            .permits_with(&email("a@b.org"), &[("a@b.org".into(), true)])
            .is_err());
    }

    #[test]
    fn entries() {
        assert_eq!(
            entries_for(&email("Me@Home.org")),
            ["me@home.org", "@home.org"]
        );
        assert_eq!(parse_entry(" Me@Home.org ").unwrap(), "me@home.org");
        assert_eq!(parse_entry("@Family.NET").unwrap(), "@family.net");
        for bad in ["", "@", "nobody", "a b@c.org", "@x y"] {
            assert_eq!(
                parse_entry(bad).unwrap_err().code(),
                "invalid_request",
                "{bad:?}"
            );
        }
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
