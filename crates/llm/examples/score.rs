//! Scores the offline `rules` extractor on the lesson fixtures (`tests/fixtures/lessons`):
//! precision and recall per field (name, instruments, timeframes, indicators, rules), rule-kind
//! accuracy and the share of rules that are whole sentences, for the tuning set, the held-out
//! set and both. `cargo run -p hlbot-llm --example score [-- -v]`; `tests/score.rs` asserts floors.
//!
//! Matching: sets compare exactly (case-insensitive); a name is right when every word of the
//! true name is in the predicted one; a predicted rule matches a true rule when their word sets
//! have F1 ≥ 0.5 (one-to-one, best first); it is a whole sentence when it holds ≥ 90% of the true
//! sentence's words and ≥ 75% of its own words are the true sentence's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hlbot_llm::{ContentType, LlmOptions, Strategy, extract_strategy};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Counts for one field: matched predictions / predictions, matched truths / truths.
#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub hit_pred: usize,
    pub pred: usize,
    pub hit_truth: usize,
    pub truth: usize,
}

impl Count {
    fn add(&mut self, o: Count) {
        self.hit_pred += o.hit_pred;
        self.pred += o.pred;
        self.hit_truth += o.hit_truth;
        self.truth += o.truth;
    }
    pub fn precision(&self) -> f64 {
        ratio(self.hit_pred, self.pred)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.hit_truth, self.truth)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores of a set of lessons.
#[derive(Debug, Default, Clone)]
pub struct Scores {
    pub lessons: usize,
    pub name: Count,
    pub instruments: Count,
    pub timeframes: Count,
    pub indicators: Count,
    pub rules: Count,
    /// Matched rules whose kind is right / matched rules.
    pub kind_ok: usize,
    /// Matched predicted rules that are whole sentences.
    pub whole: usize,
    pub matched: usize,
}

impl Scores {
    fn add(&mut self, o: &Scores) {
        self.lessons += o.lessons;
        self.name.add(o.name);
        self.instruments.add(o.instruments);
        self.timeframes.add(o.timeframes);
        self.indicators.add(o.indicators);
        self.rules.add(o.rules);
        self.kind_ok += o.kind_ok;
        self.whole += o.whole;
        self.matched += o.matched;
    }
    pub fn kind_accuracy(&self) -> f64 {
        ratio(self.kind_ok, self.matched)
    }
    pub fn whole_share(&self) -> f64 {
        ratio(self.whole, self.matched)
    }
    pub fn table(&self, label: &str) -> String {
        let mut s = format!("{label} ({} lessons)\n", self.lessons);
        for (f, c) in [
            ("name", self.name),
            ("instruments", self.instruments),
            ("timeframes", self.timeframes),
            ("indicators", self.indicators),
            ("rules", self.rules),
        ] {
            s.push_str(&format!(
                "  {f:<12} P {:.2}  R {:.2}  ({}/{} predicted, {}/{} true)\n",
                c.precision(),
                c.recall(),
                c.hit_pred,
                c.pred,
                c.hit_truth,
                c.truth
            ));
        }
        s.push_str(&format!(
            "  rule kind    {:.2}   whole sentences {:.2}\n",
            self.kind_accuracy(),
            self.whole_share()
        ));
        s
    }
}

/// The fixture directory.
pub fn lessons_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lessons")
}

/// Scores every lesson: (tuning, held-out).
pub async fn score_all(verbose: bool) -> (Scores, Scores) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(lessons_dir())
        .expect("lessons dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut tune, mut held) = (Scores::default(), Scores::default());
    for f in files {
        let truth: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let src = lessons_dir().join(truth["file"].as_str().unwrap());
        let text = std::fs::read_to_string(&src).unwrap();
        let ct = match src.extension().and_then(|e| e.to_str()) {
            Some("vtt" | "srt") => ContentType::Captions,
            Some("md") => ContentType::Document,
            _ => ContentType::Transcript,
        };
        let r = extract_strategy(
            &LlmOptions::default(),
            &text,
            ct,
            "rules",
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let s = score_lesson(&truth, &r.strategies, verbose);
        if verbose {
            println!("{}", s.table(&src.file_name().unwrap().to_string_lossy()));
        }
        if truth["held_out"].as_bool() == Some(true) {
            held.add(&s);
        } else {
            tune.add(&s);
        }
    }
    (tune, held)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn words(s: &str) -> BTreeSet<String> {
    // Auto-captions spell "1%" as "1 percent": the same words.
    s.to_lowercase()
        .replace(" percent", "%")
        .split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '%' || c == '/'))
        .map(|w| w.trim_matches('.').to_string())
        .filter(|w| !w.is_empty() && !["uh", "um", "like"].contains(&w.as_str()))
        .collect()
}

fn set_count(pred: &[String], truth: &[String]) -> Count {
    let p: BTreeSet<String> = pred.iter().map(|x| x.to_lowercase()).collect();
    let t: BTreeSet<String> = truth.iter().map(|x| x.to_lowercase()).collect();
    let hit = p.intersection(&t).count();
    Count {
        hit_pred: hit,
        pred: p.len(),
        hit_truth: hit,
        truth: t.len(),
    }
}

/// Predicted rules with the kinds each field stands for.
fn predicted_rules(s: &Strategy) -> Vec<(String, &'static [&'static str])> {
    let mut out: Vec<(String, &'static [&'static str])> = Vec::new();
    out.extend(s.entry_rules.iter().map(|r| (r.clone(), &["entry"][..])));
    out.extend(
        s.exit_rules
            .iter()
            .map(|r| (r.clone(), &["exit", "target"][..])),
    );
    out.extend(s.stop_loss.iter().map(|r| (r.clone(), &["stop"][..])));
    out.extend(s.take_profit.iter().map(|r| (r.clone(), &["target"][..])));
    out.extend(
        s.risk_management
            .iter()
            .map(|r| (r.clone(), &["sizing", "stop"][..])),
    );
    out.extend(s.filters.iter().map(|r| (r.clone(), &["filter"][..])));
    out
}

fn overlap(pred: &BTreeSet<String>, truth: &BTreeSet<String>) -> (f64, f64, f64) {
    let i = pred.intersection(truth).count() as f64;
    let p = if pred.is_empty() {
        0.0
    } else {
        i / pred.len() as f64
    };
    let r = if truth.is_empty() {
        0.0
    } else {
        i / truth.len() as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

fn score_lesson(truth: &Value, pred: &[Strategy], verbose: bool) -> Scores {
    let ts: Vec<&Value> = truth["strategies"].as_array().unwrap().iter().collect();
    let mut sc = Scores {
        lessons: 1,
        ..Default::default()
    };
    // Align each true strategy with a predicted one: by order when the counts agree, else the
    // one sharing the most rule words.
    let mut used = vec![false; pred.len()];
    let mut pairs: Vec<(&Value, Option<&Strategy>)> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let pick = if pred.len() == ts.len() {
            Some(i)
        } else {
            let tw: BTreeSet<String> = t["rules"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| words(r["text"].as_str().unwrap()))
                .collect();
            (0..pred.len()).filter(|j| !used[*j]).max_by_key(|j| {
                let pw: BTreeSet<String> = predicted_rules(&pred[*j])
                    .iter()
                    .flat_map(|(r, _)| words(r))
                    .collect();
                pw.intersection(&tw).count()
            })
        };
        if let Some(j) = pick {
            used[j] = true;
        }
        pairs.push((t, pick.map(|j| &pred[j])));
    }
    let empty = Strategy::default();
    let unmatched: Vec<&Strategy> = pred
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(s, _)| s)
        .collect();
    sc.name.pred = pred.len();
    for (t, p) in pairs
        .into_iter()
        .chain(unmatched.into_iter().map(|s| (&Value::Null, Some(s))))
    {
        let p = p.unwrap_or(&empty);
        if !t.is_null() {
            sc.name.truth += 1;
            let tn = words(t["name"].as_str().unwrap_or(""));
            if !p.name.is_empty() && tn.is_subset(&words(&p.name)) {
                sc.name.hit_pred += 1;
                sc.name.hit_truth += 1;
            } else if verbose {
                println!("  name: want {:?}, got {:?}", t["name"], p.name);
            }
        }
        sc.instruments
            .add(set_count(&p.instruments, &strs(&t["instruments"])));
        sc.timeframes
            .add(set_count(&p.timeframes, &strs(&t["timeframes"])));
        let inds: Vec<String> = p.indicators.iter().map(|i| i.name.clone()).collect();
        sc.indicators.add(set_count(&inds, &strs(&t["indicators"])));
        let truth_rules: Vec<(String, String)> = t["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let text = r["text"].as_str().unwrap().to_string();
                (text, r["kind"].as_str().unwrap().to_string())
            })
            .collect();
        let pr = predicted_rules(p);
        let mut cands: Vec<(f64, usize, usize)> = Vec::new();
        for (i, (ptext, _)) in pr.iter().enumerate() {
            for (j, (ttext, _)) in truth_rules.iter().enumerate() {
                let (_, _, f) = overlap(&words(ptext), &words(ttext));
                if f >= 0.5 {
                    cands.push((f, i, j));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut pu, mut tu) = (vec![false; pr.len()], vec![false; truth_rules.len()]);
        for (_, i, j) in cands {
            if pu[i] || tu[j] {
                continue;
            }
            pu[i] = true;
            tu[j] = true;
            sc.matched += 1;
            let (ptext, kinds) = &pr[i];
            let (ttext, tkind) = &truth_rules[j];
            if kinds.contains(&tkind.as_str()) {
                sc.kind_ok += 1;
            } else if verbose {
                println!("  kind: want {tkind}, got {kinds:?}: {ptext}");
            }
            let (prec, rec, _) = overlap(&words(ptext), &words(ttext));
            if rec >= 0.9 && prec >= 0.75 {
                sc.whole += 1;
            } else if verbose {
                println!("  not whole: {ptext:?}\n        want {ttext:?}");
            }
        }
        if verbose {
            for (i, (ptext, _)) in pr.iter().enumerate().filter(|(i, _)| !pu[*i]) {
                let _ = i;
                println!("  extra rule: {ptext:?}");
            }
            for (j, (ttext, k)) in truth_rules.iter().enumerate().filter(|(j, _)| !tu[*j]) {
                let _ = j;
                println!("  missed {k}: {ttext:?}");
            }
        }
        sc.rules.add(Count {
            hit_pred: pu.iter().filter(|x| **x).count(),
            pred: pr.len(),
            hit_truth: tu.iter().filter(|x| **x).count(),
            truth: truth_rules.len(),
        });
    }
    sc
}

/// Both sets together.
pub fn total(a: &Scores, b: &Scores) -> Scores {
    let mut t = a.clone();
    t.add(b);
    t
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let verbose = std::env::args().any(|a| a == "-v");
    let (tune, held) = score_all(verbose).await;
    println!("{}", tune.table("tuning set"));
    println!("{}", held.table("held-out set"));
    println!("{}", total(&tune, &held).table("all"));
}
