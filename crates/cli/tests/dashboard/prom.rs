//! A small strict parser of the Prometheus text exposition format (0.0.4): every sample's
//! family declared by `# TYPE` first, names and label names by the grammar, label values
//! quoted with only `\\`, `\"`, `\n` escapes, no duplicate series, histogram buckets
//! cumulative with `+Inf` equal to `_count`. Panics with the offending line.

use std::collections::{BTreeMap, HashMap};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut ch = s.chars();
    let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    matches!(ch.next(), Some(c) if first_ok(c)) && ch.all(|c| first_ok(c) || c.is_ascii_digit())
}

fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, usize) {
    // `s` starts after '{'; returns labels and bytes consumed through '}'.
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = BTreeMap::new();
    loop {
        if b.get(i) == Some(&b'}') {
            return (out, i + 1);
        }
        let eq = s[i..]
            .find('=')
            .unwrap_or_else(|| panic!("label without '=': {line}"));
        let key = &s[i..i + eq];
        assert!(is_name(key, false), "bad label name {key:?}: {line}");
        i += eq + 1;
        assert_eq!(b.get(i), Some(&b'"'), "label value not quoted: {line}");
        i += 1;
        let mut val = String::new();
        loop {
            match b.get(i) {
                Some(b'\\') => {
                    match b.get(i + 1) {
                        Some(b'\\') => val.push('\\'),
                        Some(b'"') => val.push('"'),
                        Some(b'n') => val.push('\n'),
                        _ => panic!("bad escape in label value: {line}"),
                    }
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\n') | None => panic!("unterminated label value: {line}"),
                Some(_) => {
                    let c = s[i..].chars().next().unwrap_or_default();
                    val.push(c);
                    i += c.len_utf8();
                }
            }
        }
        assert!(
            out.insert(key.to_string(), val).is_none(),
            "duplicate label: {line}"
        );
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => panic!("expected ',' or '}}' after a label: {line}"),
        }
    }
}

fn parse_value(v: &str, line: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v
            .parse()
            .unwrap_or_else(|_| panic!("bad sample value {v:?}: {line}")),
    }
}

/// Parse and check `text`; the samples in order.
pub fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_name(name, true), "bad metric name: {line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type: {line}"
                    );
                    assert!(
                        types.insert(name.into(), kind.into()).is_none(),
                        "TYPE given twice: {line}"
                    );
                }
                (Some("HELP"), Some(name), _) => assert!(is_name(name, true), "{line}"),
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "comment without space: {line}");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("sample without value: {line}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "bad metric name {name:?}: {line}");
        let (labels, rest) = if line.as_bytes()[name_end] == b'{' {
            let (l, n) = parse_labels(&line[name_end + 1..], line);
            (l, &line[name_end + 1 + n..])
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut parts = rest.trim_start_matches(' ').split(' ');
        let value = parse_value(parts.next().unwrap_or(""), line);
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp: {line}"));
        }
        assert!(parts.next().is_none(), "trailing text: {line}");
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| types.contains_key(*f))
            .unwrap_or(name);
        let kind = types
            .get(family)
            .or(types.get(name))
            .unwrap_or_else(|| panic!("sample before its # TYPE: {line}"));
        if name.ends_with("_bucket") {
            assert_eq!(kind, "histogram", "{line}");
            assert!(labels.contains_key("le"), "bucket without le: {line}");
        }
        let s = Sample {
            name: name.into(),
            labels,
            value,
        };
        assert!(
            !out.iter()
                .any(|o: &Sample| o.name == s.name && o.labels == s.labels),
            "duplicate series: {line}"
        );
        out.push(s);
    }
    check_histograms(&out);
    out
}

fn check_histograms(samples: &[Sample]) {
    type Series = (String, BTreeMap<String, String>);
    let mut series: BTreeMap<Series, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        let mut l = s.labels.clone();
        let le = parse_value(&l.remove("le").unwrap_or_default(), &s.name);
        let base = s.name.trim_end_matches("_bucket").to_string();
        series.entry((base, l)).or_default().push((le, s.value));
    }
    for ((base, labels), mut buckets) in series {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{base} buckets not cumulative: {buckets:?}"
        );
        let inf = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
        let count = samples
            .iter()
            .find(|s| s.name == format!("{base}_count") && s.labels == labels)
            .map(|s| s.value);
        assert!(
            inf.is_some() && inf == count,
            "{base}: +Inf {inf:?} != _count {count:?}"
        );
    }
}

/// The value of the series `name` whose labels include all of `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn the_parser_is_strict() {
    let ok = "# TYPE a_total counter\na_total{x=\"q\\\"\"} 3\n# TYPE h histogram\n\
              h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let s = parse(ok);
    assert_eq!(value(&s, "a_total", &[("x", "q\"")]), Some(3.0));
    for bad in [
        "a 1\n",                                                    // no TYPE
        "# TYPE a gauge\na{x=y} 1\n",                               // unquoted
        "# TYPE a gauge\na 1\na 2\n",                               // duplicate
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n", // inf != count
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted: {bad}"
        );
    }
}
