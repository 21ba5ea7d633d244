//! The dashboard's reads: History pages by keyset cursor see every run exactly once, newest
//! first, even when runs share the timestamp at a page boundary; filters; one run and its
//! children; LLM spend per day and model.

use hlbot_engine::runlog::{RunFact, RunState};
use hlbot_store::browse::BrowseQuery;
use hlbot_store::library::UsageRow;
use hlbot_store::runs::write_batch;

use crate::both;
use crate::common::Db;

fn fact(id: &str, at: f64, state: RunState, parent: Option<&str>) -> RunFact {
    RunFact {
        task_id: id.into(),
        state,
        at,
        name: if id.ends_with('7') {
            "t.other"
        } else {
            "t.add"
        }
        .into(),
        queue: "celery".into(),
        worker: "w@h".into(),
        retries: 0,
        parent_id: parent.map(str::to_string),
        root_id: None,
        args: None,
        kwargs: None,
        runtime: Some(0.1),
        error_type: None,
        error_message: None,
    }
}

async fn pages(db: Db) {
    let s = &db.store;
    let base = hlbot_store::now() - 1000.0;
    let mut facts = Vec::new();
    for i in 0..10 {
        // r4, r5, r6 share one instant: whatever the page size, none is skipped.
        let at = if (4..=6).contains(&i) {
            base + 5.0
        } else {
            base + i as f64
        };
        let state = if i == 9 {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        let parent = (i == 2 || i == 3).then_some("r1");
        facts.push(fact(&format!("r{i}"), at, state, parent));
    }
    write_batch(s, &facts).await.unwrap();
    for limit in [1, 2, 3, 4] {
        let mut seen: Vec<(String, f64)> = Vec::new();
        let mut before = None;
        loop {
            let p = s
                .browse(&BrowseQuery {
                    before,
                    limit,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(p.runs.iter().map(|r| (r.task_id.clone(), r.updated_at)));
            match p.next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        let mut ids: Vec<&str> = seen.iter().map(|x| x.0.as_str()).collect();
        assert!(
            seen.windows(2).all(|w| w[0].1 >= w[1].1),
            "limit {limit}: not newest first: {seen:?}"
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "limit {limit}: {seen:?}");
        assert_eq!(seen.len(), 10, "limit {limit}: a run twice: {seen:?}");
    }
    let failed = s
        .browse(&BrowseQuery {
            state: Some("FAILURE".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.runs.len(), 1);
    assert_eq!(failed.runs[0].task_id, "r9");
    let other = s
        .browse(&BrowseQuery {
            name: Some("t.other".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(other.runs.len(), 1);
    assert!(other.next.is_none());
    assert_eq!(
        s.run("r3").await.unwrap().unwrap().parent_id.as_deref(),
        Some("r1")
    );
    let kids: Vec<String> = s
        .children("r1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.task_id)
        .collect();
    assert_eq!(kids.len(), 2, "{kids:?}");

    for (model, cost, hits, task) in [
        ("m1", 0.5, 0, "ta"),
        ("m1", 0.25, 1, "ta"),
        ("m2", 1.0, 2, "tb"),
    ] {
        s.save_usage(
            None,
            &UsageRow {
                task_id: Some(task.into()),
                provider: "p".into(),
                model: model.into(),
                input_tokens: 10,
                output_tokens: 5,
                calls: 1,
                cache_hits: hits,
                cost_usd: Some(cost),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let days = s.costs_by_day(30).await.unwrap();
    let m1 = days.iter().find(|d| d.model == "m1").unwrap();
    assert_eq!((m1.cost_usd, m1.calls, m1.input_tokens), (0.75, 2, 20));
    assert_eq!(m1.cache_hits, 1);
    let ta = s
        .task_cost("ta")
        .await
        .unwrap()
        .expect("task ta made calls");
    assert_eq!(
        (
            ta.cost_usd,
            ta.calls,
            ta.input_tokens,
            ta.output_tokens,
            ta.cache_hits
        ),
        (0.75, 2, 20, 10, 1)
    );
    assert_eq!(s.task_cost("none").await.unwrap(), None);
    assert_eq!(m1.day.len(), 10);
    let totals = s.cost_totals().await.unwrap();
    assert_eq!(totals.len(), 2);
}

both!(browse_sqlite, browse_postgres, pages);
