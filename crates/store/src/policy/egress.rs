//! Outgoing HTTP rules: which origins a flavor may reach, and which resolved
//! addresses a request may go to.
//!
//! Two checks, in order. Before anything is resolved, the request's origin
//! (`scheme://host:port`) must match one of the step operator's allowed
//! origin patterns. After DNS, every address the name resolved to must be
//! public: a name that resolves to loopback, link-local or a cloud metadata
//! service is refused (DNS rebinding, SSRF), and private ranges need their
//! own grant. An IP-literal origin the step operator names exactly (a local
//! emulator on `http://127.0.0.1:5001`) is taken as meant, except a metadata
//! address, which no grant opens. Redirects are never followed by the host:
//! the guest gets the 3xx, and a request to where it points is checked like
//! any other.
//!
//! This module is policy only (pure functions, table-tested); the `wasi:http`
//! send hook in `stepbox_host::host::http` applies it.

use std::net::IpAddr;

use thiserror::Error;

/// A pattern an origin must match: `https://api.example.com`,
/// `https://*.amazonaws.com:443`, `http://127.0.0.1:5001`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// One host name or IP literal, lowercase.
    Exact(String),
    /// `*.suffix`: any host ending in `.suffix` (not `suffix` itself).
    Subdomains(String),
}

/// Why an origin pattern or a request was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("`{0}` is not an origin pattern such as https://api.example.com or https://*.example.com:443: {1}")]
    BadPattern(String, &'static str),
    #[error("`{0}` is not an http or https URL")]
    BadUrl(String),
    #[error(
        "{origin} is not an allowed origin of this step operator (allowed: {allowed}); grant it with `--grant http-origin={origin}`"
    )]
    OriginNotAllowed { origin: String, allowed: String },
    #[error("{host} resolved to {address}, a {class} address, which flavors may not reach{way_out}")]
    AddressRefused { host: String, address: IpAddr, class: AddressClass, way_out: &'static str },
    #[error("{host} did not resolve to any address")]
    NoAddress { host: String },
}

impl OriginPattern {
    /// Parse `scheme://host[:port]`, where host may start with `*.`.
    ///
    /// The pattern is stored and shown in its normal form, so that form must
    /// read back as the same pattern: the URL parser decodes `%2a` to `*` and
    /// drops tabs and line breaks, which could otherwise turn an exact host
    /// into a wildcard once stored (`https://%2a.example.com`; found by
    /// fuzzing the `grants` target).
    pub fn parse(text: &str) -> Result<Self, EgressError> {
        let pattern = Self::parse_once(text)?;
        match Self::parse_once(&pattern.to_string()) {
            Ok(again) if again == pattern => Ok(pattern),
            _ => Err(EgressError::BadPattern(
                text.to_owned(),
                "once normalized it reads back as another pattern; write the host plainly",
            )),
        }
    }

    fn parse_once(text: &str) -> Result<Self, EgressError> {
        let bad = |why| EgressError::BadPattern(text.to_owned(), why);
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("it has no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query, fragment or credentials"));
        }
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        if rest.contains('*') {
            return Err(bad("`*` may only stand for the leftmost labels, as in *.example.com"));
        }
        // Let the URL parser normalise the host (case, IDNA, IP literals) and the port.
        let url = url::Url::parse(&format!("{scheme}://{rest}")).map_err(|_| bad("the host is not valid"))?;
        let host = url.host_str().filter(|host| !host.is_empty()).ok_or_else(|| bad("it has no host"))?;
        if host.contains('*') {
            return Err(bad("`*` may only stand for the leftmost labels, as in *.example.com"));
        }
        let port = url.port().unwrap_or(default_port);
        if wildcard && (host.parse::<IpAddr>().is_ok() || host.starts_with('[')) {
            return Err(bad("an IP address cannot have a wildcard"));
        }
        if wildcard && !host.contains('.') {
            return Err(bad("a wildcard needs at least two labels after it, as in *.example.com"));
        }
        let host =
            if wildcard { HostPattern::Subdomains(host.to_owned()) } else { HostPattern::Exact(host.to_owned()) };
        Ok(Self { scheme, host, port })
    }

    /// Whether the origin of `url` matches.
    pub fn matches(&self, url: &url::Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        url.scheme() == self.scheme
            && port == self.port
            && match &self.host {
                HostPattern::Exact(exact) => host == exact,
                HostPattern::Subdomains(suffix) => {
                    host.strip_suffix(suffix.as_str()).is_some_and(|label| label.len() > 1 && label.ends_with('.'))
                }
            }
    }

    /// Whether this pattern names exactly the IP literal `address`.
    fn names_literal(&self, address: IpAddr) -> bool {
        match &self.host {
            HostPattern::Exact(host) => {
                host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip == address)
            }
            HostPattern::Subdomains(_) => false,
        }
    }
}

impl std::fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            HostPattern::Exact(host) => write!(f, "{}://{host}:{}", self.scheme, self.port),
            HostPattern::Subdomains(suffix) => write!(f, "{}://*.{suffix}:{}", self.scheme, self.port),
        }
    }
}

pub use stepbox_backends::addresses::{AddressClass, classify};

/// How the host authenticates requests to one origin. The flavor never sees
/// the credential: the host adds it after the guest has built the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialGrant {
    /// The origin pattern (as granted with `http-origin`) it applies to.
    pub origin: OriginPattern,
    pub scheme: CredentialScheme,
    /// The stored secret holding the credential.
    pub secret: String,
}

/// The ways the host can authenticate a request. Each names what the
/// secret holds; `stepbox_host::host::credentials` applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialScheme {
    /// `Authorization: Bearer <secret>`: the secret is the token.
    Bearer,
    /// AWS Signature Version 4: the secret is JSON with `access_key_id`,
    /// `secret_access_key` and optionally `session_token`.
    AwsSigV4,
    /// A Google service-account key (the JSON file Google hands out): the
    /// host exchanges a signed JWT for an OAuth2 access token at the key's
    /// `token_uri` and sends it as a bearer token.
    GoogleServiceAccount,
    /// Microsoft Entra ID client credentials: the secret is JSON with
    /// `tenant_id`, `client_id`, `client_secret` (optionally
    /// `authority_host` and `scope`); the host gets a token and sends it as
    /// a bearer token.
    AzureClientCredentials,
}

impl CredentialScheme {
    /// Every scheme, as granted.
    pub const ALL: [CredentialScheme; 4] = [
        CredentialScheme::Bearer,
        CredentialScheme::AwsSigV4,
        CredentialScheme::GoogleServiceAccount,
        CredentialScheme::AzureClientCredentials,
    ];

    /// The scheme's name in a grant.
    pub fn name(self) -> &'static str {
        match self {
            CredentialScheme::Bearer => "bearer",
            CredentialScheme::AwsSigV4 => "aws-sigv4",
            CredentialScheme::GoogleServiceAccount => "google-service-account",
            CredentialScheme::AzureClientCredentials => "azure-client-credentials",
        }
    }
}

impl CredentialGrant {
    /// Parse `ORIGIN=SCHEME:SECRET`, e.g. `https://api.example.com=bearer:example-token`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (origin, credential) =
            text.rsplit_once('=').ok_or_else(|| format!("`{text}` is not ORIGIN=SCHEME:SECRET"))?;
        let origin = OriginPattern::parse(origin).map_err(|error| error.to_string())?;
        let (scheme, secret) = credential
            .split_once(':')
            .ok_or_else(|| format!("`{credential}` is not SCHEME:SECRET, e.g. bearer:my-token"))?;
        let scheme = CredentialScheme::ALL.into_iter().find(|known| known.name() == scheme).ok_or_else(|| {
            let known: Vec<&str> = CredentialScheme::ALL.iter().map(|known| known.name()).collect();
            format!("`{scheme}` is not a credential scheme; the schemes are {}", known.join(", "))
        })?;
        stepbox_backends::secrets::check_name(secret).map_err(|error| error.to_string())?;
        Ok(Self { origin, scheme, secret: secret.to_owned() })
    }
}

impl std::str::FromStr for CredentialGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl std::str::FromStr for OriginPattern {
    type Err = EgressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

super::stored_as_text!(OriginPattern, CredentialGrant);

impl std::fmt::Display for CredentialGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}:{}", self.origin, self.scheme.name(), self.secret)
    }
}

/// A step operator's outgoing HTTP rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressRules {
    /// Origins requests may go to; none means no outgoing HTTP at all.
    pub origins: Vec<OriginPattern>,
    /// Whether names may resolve to private ranges (`http-private`).
    pub private_ranges: bool,
    /// Credentials the host applies, per origin pattern.
    pub credentials: Vec<CredentialGrant>,
}

impl EgressRules {
    /// The first check: is the URL's origin allowed? Returns the matching pattern.
    pub fn check_origin(&self, url: &url::Url) -> Result<&OriginPattern, EgressError> {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(EgressError::BadUrl(url.to_string()));
        }
        self.origins.iter().find(|pattern| pattern.matches(url)).ok_or_else(|| EgressError::OriginNotAllowed {
            origin: crate::policy::connections::origin(url.as_str()).unwrap_or_else(|_| url.to_string()),
            allowed: if self.origins.is_empty() {
                "none".to_owned()
            } else {
                self.origins.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// The credential the host applies to a request for `url` (whose origin
    /// was allowed): the first whose origin pattern matches it, so a
    /// credential for `https://api.example.com` applies under an allowed
    /// `https://*.example.com` too.
    pub fn credential_for(&self, url: &url::Url) -> Option<&CredentialGrant> {
        self.credentials.iter().find(|credential| credential.origin.matches(url))
    }

    /// The second check, after DNS: every address `host` resolved to must be
    /// one a request may reach through `pattern`. All must pass, not just
    /// one: an answer mixing a public address and 127.0.0.1 is an attack.
    pub fn check_addresses(
        &self,
        pattern: &OriginPattern,
        host: &str,
        addresses: &[IpAddr],
    ) -> Result<(), EgressError> {
        if addresses.is_empty() {
            return Err(EgressError::NoAddress { host: host.to_owned() });
        }
        for &address in addresses {
            let class = classify(address);
            let allowed = match class {
                AddressClass::Public => true,
                AddressClass::Metadata | AddressClass::Unroutable => false,
                AddressClass::Private => self.private_ranges || pattern.names_literal(address),
                AddressClass::Loopback | AddressClass::LinkLocal => pattern.names_literal(address),
            };
            if !allowed {
                let way_out = match class {
                    AddressClass::Private => {
                        "; grant `http-private` if the step operator should reach private networks"
                    }
                    AddressClass::Loopback | AddressClass::LinkLocal => {
                        "; grant the IP-literal origin itself (e.g. http-origin=http://127.0.0.1:PORT) for a local service"
                    }
                    _ => "",
                };
                return Err(EgressError::AddressRefused { host: host.to_owned(), address, class, way_out });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).expect(text)
    }

    fn rules(patterns: &[&str]) -> EgressRules {
        EgressRules {
            origins: patterns.iter().map(|p| OriginPattern::parse(p).expect(p)).collect(),
            private_ranges: false,
            credentials: Vec::new(),
        }
    }

    #[test]
    fn patterns_parse_and_normalise() {
        let cases = [
            ("https://API.SageMaker.us-east-1.amazonaws.com", "https://api.sagemaker.us-east-1.amazonaws.com:443"),
            ("https://*.amazonaws.com:443/", "https://*.amazonaws.com:443"),
            ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
            ("HTTP://[::1]:8080", "http://[::1]:8080"),
        ];
        for (text, normal) in cases {
            assert_eq!(OriginPattern::parse(text).expect(text).to_string(), normal, "{text}");
        }
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let cases = [
            ("api.example.com", "no scheme"),
            ("ftp://example.com", "http or https"),
            ("https://example.com/path", "no path"),
            ("https://user:pw@example.com", "credentials"),
            ("https://api.*.example.com", "leftmost"),
            ("https://*.com", "two labels"),
            ("https://*.10.0.0.1", "wildcard"),
            ("https://", "host"),
            // Found by fuzzing: decoded, `%2a` would make an exact host a wildcard once stored.
            ("https://%2a.example.com", "leftmost"),
            ("https://*.ex%2aample.com", "leftmost"),
        ];
        for (text, message) in cases {
            let error = OriginPattern::parse(text).expect_err(text).to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn origins_match_scheme_host_and_port_exactly() {
        let allowed = rules(&["https://*.amazonaws.com", "http://127.0.0.1:5001"]);
        let cases = [
            ("https://api.sagemaker.us-east-1.amazonaws.com/", true),
            ("https://logs.us-east-1.amazonaws.com/x?y=1", true),
            ("https://amazonaws.com/", false),     // the wildcard needs a label
            ("https://evilamazonaws.com/", false), // not a subdomain
            ("https://api.amazonaws.com.evil.example/", false), // suffix, not containment
            ("http://api.sagemaker.us-east-1.amazonaws.com/", false), // scheme
            ("https://api.amazonaws.com:8443/", false), // port
            ("http://127.0.0.1:5001/", true),
            ("http://127.0.0.1:5002/", false),
            ("http://localhost:5001/", false),
        ];
        for (text, expected) in cases {
            assert_eq!(allowed.check_origin(&url(text)).is_ok(), expected, "{text}");
        }
        let refused = rules(&[]).check_origin(&url("https://example.com/")).unwrap_err().to_string();
        assert!(refused.contains("allowed: none"), "{refused}");
        assert!(refused.contains("--grant http-origin=https://example.com:443"), "{refused}");
    }

    #[test]
    fn credentials_parse_and_name_what_is_wrong() {
        let grant = CredentialGrant::parse("https://API.example.com=bearer:api-token").expect("parses");
        assert_eq!(grant.to_string(), "https://api.example.com:443=bearer:api-token");
        for scheme in CredentialScheme::ALL {
            let text = format!("https://*.example.com={}:keys", scheme.name());
            assert_eq!(CredentialGrant::parse(&text).expect(&text).scheme, scheme);
        }
        for (text, message) in [
            ("https://api.example.com", "is not ORIGIN=SCHEME:SECRET"),
            ("https://api.example.com=api-token", "is not SCHEME:SECRET"),
            ("https://api.example.com=kerberos:keys", "the schemes are bearer, aws-sigv4"),
            ("https://api.example.com=bearer:../x", "secret"),
            ("ftp://x=bearer:t", "origin pattern"),
        ] {
            let error = CredentialGrant::parse(text).expect_err(text);
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn a_credential_applies_to_the_requests_its_origin_matches() {
        let mut allowed = rules(&["https://*.example.com"]);
        allowed.credentials.push(CredentialGrant::parse("https://api.example.com=bearer:api-token").expect("parses"));
        let credential = |text: &str| allowed.credential_for(&url(text)).map(|c| c.secret.clone());
        assert_eq!(credential("https://api.example.com/v1/jobs"), Some("api-token".to_owned()));
        assert_eq!(credential("https://logs.example.com/v1"), None);
        assert_eq!(credential("http://api.example.com/v1"), None, "not over plain http");
    }

    #[test]
    fn names_must_resolve_to_public_addresses_and_literals_are_taken_as_meant() {
        let allowed = rules(&["https://*.example.com", "http://127.0.0.1:5001", "http://169.254.169.254"]);
        let wildcard = &allowed.origins[0];
        let loopback_literal = &allowed.origins[1];
        let metadata_literal = &allowed.origins[2];
        let ip = |text: &str| -> IpAddr { text.parse().expect(text) };

        assert!(allowed.check_addresses(wildcard, "api.example.com", &[ip("93.184.216.34")]).is_ok());
        for (address, message) in [
            ("127.0.0.1", "a loopback address"),
            ("169.254.169.254", "a cloud metadata service address"),
            ("10.0.0.5", "grant `http-private`"),
        ] {
            let error = allowed.check_addresses(wildcard, "rebind.example.com", &[ip(address)]).unwrap_err();
            assert!(error.to_string().contains(message), "{address}: {error}");
        }
        // One bad address in the answer is enough to refuse.
        assert!(
            allowed.check_addresses(wildcard, "mixed.example.com", &[ip("93.184.216.34"), ip("127.0.0.1")]).is_err()
        );
        assert!(allowed.check_addresses(wildcard, "nothing.example.com", &[]).is_err());

        assert!(allowed.check_addresses(loopback_literal, "127.0.0.1", &[ip("127.0.0.1")]).is_ok());
        assert!(allowed.check_addresses(metadata_literal, "169.254.169.254", &[ip("169.254.169.254")]).is_err());

        let private = EgressRules { private_ranges: true, ..allowed.clone() };
        assert!(private.check_addresses(wildcard, "internal.example.com", &[ip("10.0.0.5")]).is_ok());
        assert!(private.check_addresses(wildcard, "internal.example.com", &[ip("127.0.0.1")]).is_err());
    }
}
