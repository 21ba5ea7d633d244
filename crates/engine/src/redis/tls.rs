//! TLS to Redis (`rediss://`): Celery's URL options — `ssl_cert_reqs` (`required`/`optional`/
//! `none`, or `CERT_…`), `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` — turned into what
//! redis-rs takes, and the one process-wide rustls crypto provider it needs.

use std::path::PathBuf;

use redis::{Client, ClientTlsConfig, TlsCertificates};

use crate::error::{Error, Result};

/// The TLS options a `rediss://` URL carried (its query, in Celery's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `ssl_cert_reqs=none`: the server's certificate is not checked.
    pub insecure: bool,
    /// `ssl_ca_certs`: PEM file of the CA(s) to trust instead of the public roots.
    pub ca_certs: Option<PathBuf>,
    /// `ssl_certfile` + `ssl_keyfile`: a client certificate (mutual TLS).
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

/// Celery's `ssl_*` query parameters taken off `url` (the rest kept): the URL redis-rs opens
/// and the options.
pub fn split(url: &str) -> Result<(String, TlsOptions)> {
    let mut u =
        url::Url::parse(url).map_err(|e| Error::Config(format!("invalid Redis URL: {e}")))?;
    let mut o = TlsOptions::default();
    let mut rest = Vec::new();
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "ssl_cert_reqs" => {
                o.insecure = match v.to_ascii_lowercase().trim_start_matches("cert_") {
                    "none" => true,
                    "required" | "optional" => false,
                    other => {
                        return Err(Error::Config(format!(
                            "ssl_cert_reqs must be required, optional or none (or CERT_…), not \
                             {other:?}"
                        )));
                    }
                }
            }
            "ssl_ca_certs" => o.ca_certs = Some(v.into_owned().into()),
            "ssl_certfile" => o.certfile = Some(v.into_owned().into()),
            "ssl_keyfile" => o.keyfile = Some(v.into_owned().into()),
            _ => rest.push((k.into_owned(), v.into_owned())),
        }
    }
    if o.certfile.is_some() != o.keyfile.is_some() {
        return Err(Error::Config(
            "ssl_certfile and ssl_keyfile go together (a client certificate and its key)".into(),
        ));
    }
    u.set_query(None);
    if !rest.is_empty() {
        u.query_pairs_mut().extend_pairs(rest);
    }
    Ok((u.to_string(), o))
}

/// A client for `url` (already [`split`]) with `o` applied.
pub fn client(url: &str, o: &TlsOptions) -> Result<Client> {
    // More than one provider is compiled in (ring: sqlx, lapin; aws-lc-rs: reqwest), so rustls
    // cannot pick one itself: without this the first TLS connection to Redis panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| Error::Config(format!("{what} {}: {e}", p.display())))
    };
    let url = if o.insecure {
        format!("{url}#insecure")
    } else {
        url.to_string()
    };
    let bad = |e: redis::RedisError| Error::Config(format!("TLS to Redis: {e}"));
    if o.ca_certs.is_none() && o.certfile.is_none() {
        return Client::open(url.as_str()).map_err(bad);
    }
    let client_tls = match (&o.certfile, &o.keyfile) {
        (Some(c), Some(k)) => Some(ClientTlsConfig {
            client_cert: read(c, "ssl_certfile")?,
            client_key: read(k, "ssl_keyfile")?,
        }),
        _ => None,
    };
    let root_cert = o
        .ca_certs
        .as_ref()
        .map(|p| read(p, "ssl_ca_certs"))
        .transpose()?;
    Client::build_with_tls(
        url.as_str(),
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celerys_ssl_options_leave_the_url() {
        let (u, o) = split("rediss://:pw@h:6380/2?ssl_cert_reqs=CERT_NONE&protocol=3").expect("ok");
        assert_eq!(u, "rediss://:pw@h:6380/2?protocol=3");
        assert!(o.insecure);
        let (u, o) =
            split("rediss://h/0?ssl_cert_reqs=required&ssl_ca_certs=/c/ca.pem").expect("ok");
        assert_eq!(u, "rediss://h/0");
        assert_eq!((o.insecure, o.ca_certs), (false, Some("/c/ca.pem".into())));
        assert!(split("rediss://h/0?ssl_cert_reqs=maybe").is_err());
        assert!(split("rediss://h/0?ssl_certfile=/c.pem").is_err());
    }
}
