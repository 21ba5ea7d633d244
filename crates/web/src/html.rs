//! HTML building blocks: escaping, the page frame with its navigation, time and size
//! formatting, and the two embedded assets (no CDN: the dashboard works offline).

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("../assets/style.css");
const JS: &str = include_str!("../assets/app.js");

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

pub async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const NAV: [(&str, &str); 7] = [
    ("/workers", "Workers"),
    ("/queues", "Queues"),
    ("/tasks", "Tasks"),
    ("/history", "History"),
    ("/library", "Library"),
    ("/costs", "Costs"),
    ("/beat", "Beat"),
];

/// A full page: navigation, `body`, the CSRF token for scripts, the live-update script.
pub fn page(title: &str, active: &str, csrf: &str, body: &str) -> String {
    let nav: String = NAV
        .iter()
        .map(|(href, name)| {
            let cls = if *href == active { " class=\"on\"" } else { "" };
            format!("<a href=\"{href}\"{cls}>{name}</a>")
        })
        .collect();
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}"><title>{t} · hlbot</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body data-page="{active}"><header><b>hlbot</b><nav>{nav}</nav>
<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{csrf}"><button>Log out</button></form>
<span id="live" title="live updates">●</span></header>
<main>{body}</main><script src="/static/app.js"></script></body></html>"#,
        t = esc(title),
        csrf = esc(csrf),
    )
}

/// A page without navigation (login).
pub fn page_bare(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{} · hlbot</title>
<link rel="stylesheet" href="/static/style.css"></head><body><main class="narrow">{body}</main></body></html>"#,
        esc(title)
    )
}

/// A small POST form with one button (and hidden fields).
pub fn action(url: &str, label: &str, csrf: &str, fields: &[(&str, &str)], class: &str) -> String {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                esc(k),
                esc(v)
            )
        })
        .collect();
    format!(
        r#"<form method="post" action="{}" class="inline"><input type="hidden" name="csrf" value="{}">{hidden}<button class="{class}">{}</button></form>"#,
        esc(url),
        esc(csrf),
        esc(label)
    )
}

/// A flash line from `?msg=`.
pub fn flash(msg: Option<&str>) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!(r#"<p class="flash">{}</p>"#, esc(m)),
        _ => String::new(),
    }
}

/// Unix seconds → `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(t: Option<f64>) -> String {
    let Some(t) = t.filter(|t| *t > 0.0) else {
        return "—".into();
    };
    chrono::DateTime::from_timestamp(t.floor() as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "—".into())
}

/// Seconds → `1.23 s` / `45 ms`.
pub fn secs(s: Option<f64>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A state badge.
pub fn state(s: &str) -> String {
    format!(
        r#"<span class="st st-{}">{}</span>"#,
        esc(&s.to_lowercase()),
        esc(s)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_and_times() {
        assert_eq!(
            super::esc("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
        assert_eq!(super::time(Some(86_400.5)), "1970-01-02 00:00:00");
    }
}
