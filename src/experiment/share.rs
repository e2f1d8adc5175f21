//! Share links: the whole experiment in a URL fragment — versioned and compact, like TensorFlow Playground's
//! hash — with the numbers of the run that made it, so that whoever opens the link re-runs the spec and sees
//! whether they get the same numbers.
//!
//! A link's fragment is `x1.` and the base64url (no padding) of the raw-deflated JSON `{"spec": …, "numbers": …}`:
//! `spec` is the experiment spec ([`Spec`], checked like any other), `numbers` the run's [`Fingerprint`] (absent in
//! a link made before running). Nothing in a link is ever run as code or written into the page as HTML: the spec
//! is parsed and validated, and the page shows its texts escaped.

use super::{without_timing, Results, Spec};
use crate::error::{Error, Result};
use base64::Engine as _;

/// The link format's version: the prefix of every fragment this build writes.
pub const VERSION: &str = "x1";
/// Longest fragment read (characters) and longest JSON it may inflate to (bytes): a crafted link cannot make the
/// page allocate more than this.
pub const MAX_FRAGMENT: usize = 32 * 1024;
pub const MAX_JSON: usize = 256 * 1024;
/// Decimals the link's numbers keep (the comparison rounds the re-run's numbers the same way).
pub const DECIMALS: i32 = 6;

/// What a run's numbers were, in a form small enough for a link.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// SHA-256 (hex, first 32 characters) of the results without `timing`, `provenance` and `status`: every
    /// prediction, probability and metric. Equal only when the re-run is bit-identical.
    pub digest: String,
    /// The backend that ran (`cpu`, `webgpu`): bit-identical numbers are expected only on the CPU path.
    pub backend: String,
    /// The headline numbers, `[label, value]`, rounded to [`DECIMALS`] decimals.
    pub numbers: Vec<(String, f64)>,
}

/// A decoded link.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub spec: Spec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numbers: Option<Fingerprint>,
}

fn round(x: f64) -> f64 {
    let p = 10f64.powi(DECIMALS);
    (x * p).round() / p
}

/// The run's headline numbers: every evaluation's metrics, every attack's accuracy under attack and success rate,
/// every hemorrhage row's accuracy drop, KL and agreement, every repair's per-input accuracy.
pub fn headline(r: &Results) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for u in &r.units {
        for m in &u.metrics {
            out.push((format!("{} · {} {} · {}", u.model, u.task, u.split, m.name), round(m.estimate.value)));
        }
    }
    for a in &r.attacks {
        let what = format!("{} · {} {} · {}", a.model, a.task, a.split, a.attack.recipe.name());
        out.push((format!("{what} · accuracy under attack"), round(a.summary.accuracy_under_attack)));
        if let Some(s) = a.summary.success_rate {
            out.push((format!("{what} · success rate"), round(s)));
        }
    }
    for h in &r.hemorrhage {
        let what = format!("{} · {} {}", h.model, h.task, h.split);
        out.push((format!("{what} · accuracy drop"), round(h.accuracy_drop.value)));
        out.push((format!("{what} · KL"), round(h.kl)));
        out.push((format!("{what} · agreement"), round(h.agreement)));
    }
    for rep in &r.repair {
        for s in &rep.splits {
            out.push((format!("{} · {} {} · repaired accuracy", rep.model, rep.task, s.split), round(s.accuracy_idp)));
        }
    }
    out
}

/// The fingerprint of finished results.
pub fn fingerprint(r: &Results) -> Result<Fingerprint> {
    let mut v: serde_json::Value = serde_json::from_str(&without_timing(&r.to_json())?).map_err(|e| Error::Invalid(format!("results JSON: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        for k in ["provenance", "status", "spec", "format"] {
            m.remove(k);
        }
    }
    let digest = super::sha256_hex(v.to_string().as_bytes());
    Ok(Fingerprint { digest: digest[..32].to_string(), backend: r.provenance.backend.kind.clone(), numbers: headline(r) })
}

/// The fragment (without `#`) of a link to `spec`, with the numbers of a run of it when given.
pub fn encode(spec: &Spec, numbers: Option<&Fingerprint>) -> Result<String> {
    let json = serde_json::to_vec(&Link { spec: spec.clone(), numbers: numbers.cloned() }).map_err(|e| Error::Invalid(format!("link JSON: {e}")))?;
    let packed = miniz_oxide::deflate::compress_to_vec(&json, 9);
    let fragment = format!("{VERSION}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(packed));
    if fragment.len() > MAX_FRAGMENT {
        return Err(Error::Invalid(format!("the link would be {} characters, more than the {MAX_FRAGMENT} a link may have: share the results file instead", fragment.len())));
    }
    Ok(fragment)
}

/// Reads a link's fragment (with or without `#`). `model_exists` checks the spec's models as [`Spec::from_json`] does.
/// Every way a link can be broken — another version, cut short, not base64, not deflate, not JSON, a bad spec, too
/// large — is a clear error.
pub fn decode(fragment: &str, model_exists: &dyn Fn(&str) -> std::result::Result<(), String>) -> Result<Link> {
    let bad = |why: String| Error::Invalid(format!("this link cannot be opened: {why}"));
    let f = fragment.trim().trim_start_matches('#');
    if f.len() > MAX_FRAGMENT {
        return Err(bad(format!("it is {} characters long, more than the {MAX_FRAGMENT} a link may have", f.len())));
    }
    let Some((version, body)) = f.split_once('.') else {
        return Err(bad("it has no version (it should start with x1.)".into()));
    };
    if version != VERSION {
        return Err(bad(format!("it is of version {:?}, and this page reads {VERSION}", version.chars().take(16).collect::<String>())));
    }
    let packed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|e| bad(format!("it is not base64url ({e}); was it cut short?")))?;
    let json = miniz_oxide::inflate::decompress_to_vec_with_limit(&packed, MAX_JSON).map_err(|e| bad(format!("it does not unpack ({e:?}); was it cut short?")))?;
    let v: serde_json::Value = serde_json::from_slice(&json).map_err(|e| bad(format!("it holds no valid JSON ({e})")))?;
    let mut link: Link = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
    // The spec through the same parser and checks as a typed one (field names in errors).
    let spec_json = serde_json::to_vec(&v["spec"]).map_err(|e| bad(e.to_string()))?;
    link.spec = Spec::from_json(&spec_json, model_exists).map_err(|e| bad(e.to_string()))?;
    if let Some(n) = &link.numbers {
        if n.digest.len() != 32 || !n.digest.bytes().all(|b| b.is_ascii_hexdigit()) || n.numbers.iter().any(|(_, x)| !x.is_finite()) {
            return Err(bad("its numbers are malformed".into()));
        }
    }
    Ok(link)
}

/// One number of a link against the re-run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    pub label: String,
    pub link: Option<f64>,
    pub now: Option<f64>,
    pub same: bool,
}

/// A link's numbers against a re-run of its spec.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Every headline number of both, in the link's order then the re-run's new ones.
    pub rows: Vec<Row>,
    /// All numbers equal (to [`DECIMALS`] decimals), none missing on either side.
    pub same: bool,
    /// The digests equal (bit-identical results); `None` when the two ran on different backends.
    pub bit_identical: Option<bool>,
    /// The backends that made the link's numbers and the re-run's.
    pub link_backend: String,
    pub backend: String,
}

pub fn compare(link: &Fingerprint, now: &Results) -> Result<Comparison> {
    let mine = fingerprint(now)?;
    let mut rows: Vec<Row> = link
        .numbers
        .iter()
        .map(|(label, x)| {
            let now = mine.numbers.iter().find(|(l, _)| l == label).map(|(_, y)| *y);
            Row { label: label.clone(), link: Some(*x), now, same: now == Some(*x) }
        })
        .collect();
    for (label, y) in &mine.numbers {
        if !link.numbers.iter().any(|(l, _)| l == label) {
            rows.push(Row { label: label.clone(), link: None, now: Some(*y), same: false });
        }
    }
    let same = !rows.is_empty() && rows.iter().all(|r| r.same);
    let bit_identical = (link.backend == mine.backend).then(|| link.digest == mine.digest);
    Ok(Comparison { rows, same, bit_identical, link_backend: link.backend.clone(), backend: mine.backend })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::from_json(br#"{"name": "a <b> & \"c\"", "models": ["gla"], "tasks": ["sst2"], "limit": 5, "seed": 9}"#, &|_| Ok(())).unwrap()
    }

    #[test]
    fn a_link_round_trips_and_is_compact() {
        let fp = Fingerprint { digest: "0123456789abcdef0123456789abcdef".into(), backend: "cpu".into(), numbers: vec![("gla · sst2 validation · accuracy".into(), 0.8125)] };
        let f = encode(&spec(), Some(&fp)).unwrap();
        assert!(f.starts_with("x1.") && f.len() < 400, "{f}");
        assert!(f[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "URL-safe: {f}");
        let link = decode(&format!("#{f}"), &|_| Ok(())).unwrap();
        assert_eq!(link, Link { spec: spec(), numbers: Some(fp) });
        assert_eq!(decode(&encode(&spec(), None).unwrap(), &|_| Ok(())).unwrap().numbers, None);
    }

    #[test]
    fn broken_links_are_clear_errors() {
        let ok = encode(&spec(), None).unwrap();
        let cut = &ok[..ok.len() - 5];
        let json_link = |json: &str| format!("x1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec(json.as_bytes(), 9)));
        let huge = format!("x1.{}", "A".repeat(MAX_FRAGMENT));
        let bomb = format!("x1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec(&vec![b' '; MAX_JSON + 10], 9)));
        for (f, needle) in [
            ("", "no version"),
            ("x2.abc", "version \"x2\""),
            ("x1.***", "not base64url"),
            (cut, "cut short"),
            ("x1.AAAA", "does not unpack"),
            (&json_link("{\"spec\": "), "no valid JSON"),
            (&json_link(r#"{"spec": {"models": ["gla"], "tasks": ["sst2"], "limit": 0}}"#), "`limit`"),
            (&json_link(r#"{"spec": {"models": ["gla"], "tasks": ["sst2"]}, "script": "alert(1)"}"#), "unknown field `script`"),
            (&json_link(r#"{"spec": {"models": ["gla"], "tasks": ["sst2"]}, "numbers": {"digest": "<img>", "backend": "cpu", "numbers": []}}"#), "malformed"),
            (&huge, "characters long"),
            (&bomb, "does not unpack"),
        ] {
            let e = decode(f, &|_| Ok(())).unwrap_err().to_string();
            assert!(e.contains("this link cannot be opened") && e.contains(needle), "{f:.40}: {e}");
        }
        // The model check of the place that opens it.
        let e = decode(&ok, &|m| Err(format!("no model {m} here"))).unwrap_err().to_string();
        assert!(e.contains("no model gla here"), "{e}");
    }
}
