//! Cost caps: a per-task budget (`LlmOptions::max_cost_usd`) and a per-day budget across the
//! fleet (`LlmOptions::max_daily_cost_usd`, summed in a [`SpendLedger`] the glue backs with
//! Redis). Every billed call is estimated before it is sent — prompt tokens plus the whole
//! `max_tokens` answer at the model's price — and refused when it could cross a cap; the actual
//! cost is booked after. Does not know where the ledger lives.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::options::LlmOptions;

/// Spend shared by every worker, per UTC day.
#[async_trait]
pub trait SpendLedger: Send + Sync {
    /// USD booked today so far.
    async fn spent_today(&self) -> Result<f64>;
    /// Book `usd` on today's total.
    async fn add(&self, usd: f64) -> Result<()>;
}

/// One task's running spend: booked cost plus what calls in flight may still cost.
pub(crate) struct Budget<'a> {
    opts: &'a LlmOptions,
    /// (booked, reserved) in USD, and whether a call was already refused (the run then stops:
    /// later, smaller calls are refused too, so the result is a prefix of the work).
    state: Mutex<(f64, f64, bool)>,
}

impl<'a> Budget<'a> {
    pub(crate) fn new(opts: &'a LlmOptions) -> Self {
        Budget {
            opts,
            state: Mutex::new((0.0, 0.0, false)),
        }
    }

    /// Reserves `estimate` (USD, `None` for an unpriced model) before a call; `BudgetExceeded`
    /// when the task's or the day's cap could be crossed.
    pub(crate) async fn reserve(&self, estimate: Option<f64>) -> Result<f64> {
        let est = estimate.unwrap_or(0.0);
        if self.lock().2 {
            return Err(Error::BudgetExceeded(
                "an earlier call of this task was refused".into(),
            ));
        }
        if let (Some(limit), Some(ledger)) = (self.opts.max_daily_cost_usd, &self.opts.spend) {
            let today = ledger.spent_today().await.unwrap_or_else(|e| {
                tracing::warn!("daily spend unavailable, counting it as 0: {e}");
                0.0
            });
            let reserved = self.lock().1;
            if today + reserved + est > limit {
                self.lock().2 = true;
                return Err(Error::BudgetExceeded(format!(
                    "the next call (estimated ${est:.4}) would take today's spend (${today:.4}) over llm.max_daily_cost_usd (${limit:.2})"
                )));
            }
        }
        let mut s = self.lock();
        if let Some(limit) = self.opts.max_cost_usd {
            if s.0 + s.1 + est > limit {
                s.2 = true;
                return Err(Error::BudgetExceeded(format!(
                    "the next call (estimated ${est:.4}) would take this task's spend (${:.4}) over llm.max_cost_usd (${limit:.2})",
                    s.0 + s.1
                )));
            }
        }
        s.1 += est;
        Ok(est)
    }

    /// Books the actual cost of a call whose estimate was `reserved`.
    pub(crate) async fn settle(&self, reserved: f64, actual: Option<f64>) {
        let actual = actual.unwrap_or(0.0);
        {
            let mut s = self.lock();
            s.1 = (s.1 - reserved).max(0.0);
            s.0 += actual;
        }
        if let (Some(ledger), true) = (&self.opts.spend, actual > 0.0) {
            if let Err(e) = ledger.add(actual).await {
                tracing::warn!("could not book ${actual:.4} on the daily spend: {e}");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (f64, f64, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reserves_until_the_task_cap() {
        let opts = LlmOptions {
            max_cost_usd: Some(1.0),
            ..LlmOptions::default()
        };
        let b = Budget::new(&opts);
        let r = b.reserve(Some(0.6)).await.expect("first fits");
        assert!(matches!(
            b.reserve(Some(0.6)).await,
            Err(Error::BudgetExceeded(_))
        ));
        b.settle(r, Some(0.1)).await;
        // Stopped for good once refused, even though 0.6 would now fit.
        assert!(b.reserve(Some(0.6)).await.is_err());
        let b = Budget::new(&opts);
        let r = b.reserve(Some(0.6)).await.expect("fits");
        b.settle(r, Some(0.1)).await;
        assert!(b.reserve(Some(0.6)).await.is_ok());
    }
}
