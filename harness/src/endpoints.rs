//! `webq run --webdriver [BROWSER=]URL`: the W3C WebDriver endpoints (a Selenium Grid's hub or
//! standalone server, a driver on another machine) that open sessions instead of drivers webq
//! starts here. A URL without a browser serves every browser; one with a browser serves only it
//! (and wins over the unnamed ones for it). A browser no URL serves runs on local drivers.

use crate::browsers::BrowserKind;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    every: Vec<String>,
    named: Vec<(BrowserKind, String)>,
}

impl Endpoints {
    /// Parses the `--webdriver` values, saying which one is wrong and why.
    pub fn parse(values: &[String]) -> Result<Endpoints, String> {
        let mut out = Endpoints::default();
        for value in values {
            let (browser, url) = match value.split_once('=') {
                Some((name, url)) if !name.contains("://") => {
                    let kind = BrowserKind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
                        let names: Vec<&str> = BrowserKind::ALL.iter().map(|k| k.name()).collect();
                        format!("--webdriver {value}: no browser {name:?} (one of {})", names.join(", "))
                    })?;
                    (Some(kind), url)
                }
                _ => (None, value.as_str()),
            };
            let url = url.trim_end_matches('/');
            let scheme_ok = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
            if scheme_ok.is_none_or(|rest| rest.is_empty()) {
                return Err(format!("--webdriver {value}: {url:?} is not an http:// or https:// URL"));
            }
            match browser {
                Some(kind) => out.named.push((kind, url.to_string())),
                None => out.every.push(url.to_string()),
            }
        }
        Ok(out)
    }

    /// The endpoints that serve `kind`, in the order given; empty: local drivers.
    pub fn for_kind(&self, kind: BrowserKind) -> Vec<&str> {
        let named: Vec<&str> = self.named.iter().filter(|(k, _)| *k == kind).map(|(_, u)| u.as_str()).collect();
        if named.is_empty() {
            self.every.iter().map(String::as_str).collect()
        } else {
            named
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_serve_every_browser_or_the_one_they_name() {
        let e = Endpoints::parse(&[
            "http://grid:4444/".into(),
            "firefox=http://127.0.0.1:5555".into(),
            "firefox=https://other:1/wd/hub".into(),
        ])
        .unwrap();
        assert_eq!(e.for_kind(BrowserKind::Chromium), ["http://grid:4444"]);
        assert_eq!(e.for_kind(BrowserKind::Firefox), ["http://127.0.0.1:5555", "https://other:1/wd/hub"]);
        assert!(Endpoints::parse(&[]).unwrap().for_kind(BrowserKind::WebKitGtk).is_empty());
    }

    #[test]
    fn a_wrong_endpoint_is_named_with_what_is_wrong() {
        let err = Endpoints::parse(&["safari=http://x:1".into()]).unwrap_err();
        assert!(err.contains("safari=http://x:1") && err.contains("no browser \"safari\""), "{err}");
        let err = Endpoints::parse(&["grid:4444".into()]).unwrap_err();
        assert!(err.contains("not an http:// or https:// URL"), "{err}");
        let err = Endpoints::parse(&["chromium=".into()]).unwrap_err();
        assert!(err.contains("chromium="), "{err}");
    }
}
