//! Site domain names: the registrable domain ("top private domain") a web origin counts as, and
//! the check that a domain listed for a site is one, shared by client-side generation (which
//! origins may generate tokens for a site) and site administration (what may be listed).

/// The registrable domain of a host, as the official operator computes it
/// (`DomainNameCheckUtil.getTopLevelDomainName`: Guava's "top private domain", ICANN and private
/// public suffixes alike): `www.example.co.uk` → `example.co.uk`, `foo.github.io` →
/// `foo.github.io`. `localhost` and `x.localhost` give `localhost` (for local testing). IP
/// literals, public suffixes themselves and names under no known public suffix give `None`.
pub fn registrable_domain(host: &str) -> Option<String> {
    if host == "localhost"
        || host
            .strip_suffix(".localhost")
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    {
        return Some("localhost".to_owned());
    }
    let domain = psl::domain(host.as_bytes())?;
    if !domain.suffix().is_known() {
        return None;
    }
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_owned)
}

/// A domain name as a site may list it: lower-cased, and itself a registrable domain (or
/// `localhost`), since client-side generation compares a page's registrable domain with the
/// listed names exactly. A subdomain would never match anything, so it is refused with the
/// name to list instead.
pub fn site_domain_name(listed: &str) -> Result<String, String> {
    let name = listed.trim().to_ascii_lowercase();
    let well_formed = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !well_formed {
        return Err(format!(
            "{listed:?} is not a domain name (give the bare name, e.g. example.com: no scheme, port or path)"
        ));
    }
    match registrable_domain(&name) {
        Some(domain) if domain == name => Ok(name),
        Some(domain) => Err(format!(
            "{listed:?} is a subdomain: list {domain:?}, which covers it and every other subdomain"
        )),
        None => Err(format!(
            "{listed:?} is not under a known public suffix (or localhost), so no page can match it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_list_registrable_domains_only() {
        for (listed, expected) in [
            ("example.com", "example.com"),
            ("Example.COM ", "example.com"),
            ("localhost", "localhost"),
            ("example.co.uk", "example.co.uk"),
            ("foo.github.io", "foo.github.io"),
        ] {
            assert_eq!(
                site_domain_name(listed).as_deref(),
                Ok(expected),
                "{listed}"
            );
        }
        for (listed, says) in [
            ("www.example.com", "list \"example.com\""),
            ("https://example.com/path", "not a domain name"),
            ("", "not a domain name"),
            ("not a domain!!", "not a domain name"),
            ("example..com", "not a domain name"),
            ("co.uk", "not under a known public suffix"),
            ("intranet.corp", "not under a known public suffix"),
        ] {
            let refused = site_domain_name(listed).unwrap_err();
            assert!(refused.contains(says), "{listed}: {refused}");
        }
    }
}
