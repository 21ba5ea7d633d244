//! A tiny W3C WebDriver client (reqwest + JSON) for headless Chromium via chromedriver: new
//! session, navigate, run a script, screenshot. Enough for the dashboard's browser tests.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    _server: hlbot_testkit::Proc,
}

impl Driver {
    /// Start chromedriver on a free port and open a headless Chromium session.
    pub async fn start(chromedriver: &str, chromium: &str) -> Driver {
        let port = super::free_port();
        let server = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let server = hlbot_testkit::Proc(server);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(15);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < end, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900"]}}}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            http,
            base,
            session,
            _server: server,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method.clone(), url);
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        if v["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Run `script` (a function body; `arguments` are `args`) and return its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Poll `script` until it returns something truthy (its value), or panic after `within`.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            let v = self.js(script, args.clone()).await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(Instant::now() < end, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Save a PNG of the page to `target/test-artifacts/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let v = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot base64");
        let dir = hlbot_testkit::env::workspace().join("target/test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}
