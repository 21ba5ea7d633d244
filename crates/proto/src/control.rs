//! Remote-control ("pidbox") requests and replies (reference §4.2–4.3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Exchange of control broadcasts (fanout).
pub const CONTROL_EXCHANGE: &str = "celery.pidbox";
/// Exchange of replies (direct; routing key = the caller's oid).
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";

/// Where a caller wants its reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub exchange: String,
    pub routing_key: String,
}

/// The body of a control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    pub method: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
    #[serde(default)]
    pub destination: Option<Vec<String>>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub matcher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
}

impl ControlRequest {
    /// Does this request select node `name`? (destination list, or glob/pcre pattern, or all)
    pub fn selects(&self, name: &str) -> bool {
        if let Some(dest) = self.destination.as_ref().filter(|d| !d.is_empty()) {
            return dest.iter().any(|d| d == name);
        }
        match (self.pattern.as_deref(), self.matcher.as_deref()) {
            (Some(p), Some("pcre")) => regex_match_prefix(p, name),
            (Some(p), _) => glob_match(p, name),
            (None, _) => true,
        }
    }
}

/// fnmatch-style glob: `*`, `?`, `[abc]`.
pub fn glob_match(pat: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return s.first() == Some(&'[') && go(&p[1..], &s[1..]);
                };
                let set = &p[1..end];
                match s.first() {
                    Some(c) if set.contains(c) => go(&p[end + 1..], &s[1..]),
                    _ => false,
                }
            }
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// Python `re.match` subset: the pattern anchored at the start. Only literal prefixes plus `.*`
/// and `.` are understood; anything fancier falls back to a glob reading of the pattern.
fn regex_match_prefix(p: &str, s: &str) -> bool {
    let glob: String = p.replace(".*", "*").replace('.', "?");
    glob_match(&format!("{glob}*"), s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let mut r: ControlRequest =
            serde_json::from_str(r#"{"method":"ping","destination":["w1@vm"]}"#)
                .unwrap_or_else(|_| unreachable!());
        assert!(r.selects("w1@vm"));
        assert!(!r.selects("w2@vm"));
        r.destination = None;
        r.pattern = Some("w5*".into());
        r.matcher = Some("glob".into());
        assert!(r.selects("w5@vm"));
        assert!(!r.selects("zz@vm"));
        r.pattern = None;
        assert!(r.selects("anyone"));
    }
}
